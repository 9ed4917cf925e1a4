"""The reference server's configuration: frozen dataclasses read from TOML and the environment.

Layers, each over the one before: the packaged `default.toml`, the file named by `--config` or
`$MIMIC_CONFIG`, then `$MIMIC_HOST`, `$MIMIC_PORT` and `$MIMIC_API_KEYS`; the command line's
`--host` and `--port` win over all of them. Every value is checked when it is read, so that a typo
fails at start-up with a message that names the file and the key, never later inside a request.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import spec

__all__ = ["MAX_PARALLEL", "APIKey", "Config", "ConfigError", "ModelConfig", "ServerConfig"]

_DEFAULT_TOML = "default.toml"

MAX_PARALLEL = 256
"""The most sequences llama.cpp decodes together (``llama_max_parallel_sequences``)."""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the source and the key."""


@dataclass(frozen=True)
class ServerConfig:
    """`[server]`: where to listen and how much to accept."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_waiting: int = 8
    """Requests that may wait while a model serves its ``parallel``; one more is answered 429."""
    request_timeout: float | None = None
    """Seconds a request may wait for its turn before it is answered 429; None waits."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Request bodies larger than this are a 422 with loc ["body"]."""
    shutdown_grace: float = 5.0
    """Seconds running generations get to finish after SIGTERM before they are stopped."""
    head_timeout: float = 10.0
    """Seconds a connection may take to send a request's head; then it is closed."""
    body_timeout: float = 30.0
    """Seconds a request body may go without a byte; then its connection is closed."""
    max_connections: int = 1000
    """Open connections; one more closes the one idle longest (`reference.connections`)."""
    contract: str = "mimic"
    """The contract served: `mimic` (`spec/openapi.yaml`) or `openai` (`spec/openai.yaml`)."""


@dataclass(frozen=True)
class ModelConfig:
    """`[models.<name>]`: one served name, the GGUF file behind it and its llama.cpp settings."""

    name: str
    path: Path | None = None
    """The GGUF file; None is the installed default model."""
    context_size: int = 2048
    """Tokens each sequence may hold, prompt and completion together."""
    parallel: int = 4
    """Sequences decoded together (requests served at once; a request's ``n`` choices count).

    Each holds ``context_size`` tokens of KV cache of its own (47 MB for SmolLM2 at 2,048), so
    the model's memory grows with ``parallel x context_size``. 1 decodes one at a time.
    """
    threads: int | None = None
    """llama.cpp threads; None: one per physical core the process may use (`host_cpus`)."""
    chat_format: str | None = None
    """A llama-cpp-python chat format name; None uses the GGUF's own template."""
    extra_buffer_types: bool = False
    """llama.cpp's extra CPU buffer types: weights repacked at load for AMX or other kernels.

    Off by default. On Xeons with AMX, llama.cpp's AMX kernels die with an illegal instruction
    (SIGILL) on batched decodes, and so does llama.cpp's own ``llama-bench`` unless given
    ``--repack 0`` (an upstream fault: the AMX tile permission is asked for on one thread only;
    llama.cpp PR #26954 proposes the fix). The portable build this project installs has no AMX
    kernels; with them off it streamed 1.010 times the tokens/s of a native build with them on,
    side by side (README, "Hosts").
    Turn them on for a model whose quantization has repacked kernels on a host that runs them.
    """
    flash_attention: bool = True
    """llama.cpp's fused attention kernel, where attention is otherwise two matrix products.

    On by default: measured side by side on 2 cores, it decoded SmolLM2 11 % faster alone and
    16 % faster four sequences together, and batching stays exact with it (a sequence beside
    others gets the logits it gets alone). It computes other roundings, so a seed gives other
    texts than with it off; ``false`` gives the texts of the releases before it was on.
    """

    def model_path(self) -> Path:
        """The file to load: `path`, or where the default model is installed."""
        if self.path is not None:
            return self.path
        from reference.model_install import default_model_path

        return default_model_path()

    def engine_key(self) -> tuple[str, int, int, int | None, str | None, bool, bool]:
        """Names with equal keys share one loaded engine."""
        return (
            str(self.model_path()),
            self.context_size,
            self.parallel,
            self.threads,
            self.chat_format,
            self.extra_buffer_types,
            self.flash_attention,
        )


@dataclass(frozen=True)
class APIKey:
    """`[[keys]]`: one API key and the model names it may use (`"*"`: all)."""

    key: str = field(repr=False)
    models: tuple[str, ...] = ("*",)

    def allows(self, model: str) -> bool:
        """Whether this key may use `model`."""
        return "*" in self.models or model in self.models


def _default_models() -> Mapping[str, ModelConfig]:
    return Config.default().models


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build it with `Config.load()`; tests may construct it directly."""

    server: ServerConfig = field(default_factory=ServerConfig)
    models: Mapping[str, ModelConfig] = field(default_factory=_default_models)
    keys: tuple[APIKey, ...] = ()

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("the configuration serves no models")
        for name, model in self.models.items():
            if name != model.name:
                raise ConfigError(f"model {name!r} is configured under the name {model.name!r}")
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self.keys)

    @classmethod
    def default(cls) -> Config:
        """The packaged `default.toml` alone: the six names on the default model, no keys."""
        return cls.from_mapping(_read_default(), source=_DEFAULT_TOML)

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, env: Mapping[str, str] | None = None
    ) -> Config:
        """Read the layers: `default.toml`, `path` (or `$MIMIC_CONFIG`), then the environment."""
        env = os.environ if env is None else env
        document = _read_default()
        path = path or env.get("MIMIC_CONFIG") or None
        base_dir = None
        if path is not None:
            path = Path(path)
            base_dir = path.parent
            document = _merge(document, _read_toml(path))
        config = cls.from_mapping(
            document, source=str(path or _DEFAULT_TOML), base_dir=base_dir, env=env
        )
        return config.with_environment(env)

    @classmethod
    def from_mapping(
        cls,
        document: Mapping[str, Any],
        *,
        source: str = "<config>",
        base_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Config:
        """Build a Config from a parsed TOML document, checking every key and value."""
        reader = _Reader(source, base_dir, os.environ if env is None else env)
        return reader.config(document)

    def with_environment(self, env: Mapping[str, str]) -> Config:
        """Apply `$MIMIC_HOST`, `$MIMIC_PORT` and `$MIMIC_API_KEYS` (keys allowed every model)."""
        server = self.server
        if env.get("MIMIC_HOST"):
            server = dataclasses.replace(server, host=env["MIMIC_HOST"])
        if env.get("MIMIC_PORT"):
            server = dataclasses.replace(server, port=_parse_port(env["MIMIC_PORT"], "MIMIC_PORT"))
        extra = tuple(
            APIKey(key=key.strip())
            for key in env.get("MIMIC_API_KEYS", "").split(",")
            if key.strip()
        )
        return dataclasses.replace(self, server=server, keys=self.keys + extra)

    def with_server(self, **changes: Any) -> Config:
        """A copy with some `[server]` values replaced (the command line's `--host`, `--port`)."""
        return dataclasses.replace(self, server=dataclasses.replace(self.server, **changes))


def _parse_port(text: str, source: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{source}: port must be an integer, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{source}: port must be between 0 and 65535, got {port}")
    return port


def _read_default() -> dict[str, Any]:
    text = resources.files("reference").joinpath(_DEFAULT_TOML).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Layer `override` over `base`: [server] key by key, [models] name by name, keys replaced."""
    merged = dict(base)
    for key, value in override.items():
        if key in ("server", "models") and isinstance(value, Mapping):
            merged[key] = {**base.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


class _Reader:
    """Checks one document, naming `source` and the key in every error."""

    def __init__(self, source: str, base_dir: Path | None, env: Mapping[str, str]) -> None:
        self.source = source
        self.base_dir = base_dir
        self.env = env

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    def table(self, value: Any, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, "must be a table")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(unknown)}")
        return value

    def integer(self, value: Any, where: str, *, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be an integer, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise self.fail(where, f"must be {bound}, got {value}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"must be true or false, got {value!r}")
        return value

    def seconds(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise self.fail(where, f"must be a positive number of seconds, got {value!r}")
        return float(value)

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"must be a non-empty string, got {value!r}")
        return value

    def config(self, document: Mapping[str, Any]) -> Config:
        document = self.table(document, "top level", frozenset({"server", "models", "keys"}))
        server = self.server(document.get("server", {}))
        models_table = document.get("models", {})
        if not isinstance(models_table, Mapping):
            raise self.fail("[models]", "must be a table of [models.<name>] tables")
        models = {name: self.model(name, raw) for name, raw in models_table.items()}
        if not models:
            raise self.fail("[models]", "no models are configured")
        keys_raw = document.get("keys", [])
        if not isinstance(keys_raw, list):
            raise self.fail("keys", "must be an array of tables ([[keys]])")
        keys = tuple(self.key(i, raw, frozenset(models)) for i, raw in enumerate(keys_raw))
        return Config(server=server, models=models, keys=keys)

    def server(self, raw: Any) -> ServerConfig:
        fields = frozenset(f.name for f in dataclasses.fields(ServerConfig))
        table = self.table(raw, "[server]", fields)
        values: dict[str, Any] = {}
        if "host" in table:
            values["host"] = self.string(table["host"], "server.host")
        if "port" in table:
            values["port"] = self.integer(table["port"], "server.port", minimum=0, maximum=65535)
        if "max_waiting" in table:
            values["max_waiting"] = self.integer(
                table["max_waiting"], "server.max_waiting", minimum=0
            )
        if "max_body_bytes" in table:
            values["max_body_bytes"] = self.integer(
                table["max_body_bytes"], "server.max_body_bytes", minimum=1024
            )
        if "max_connections" in table:
            values["max_connections"] = self.integer(
                table["max_connections"], "server.max_connections", minimum=1
            )
        for name in ("request_timeout", "shutdown_grace", "head_timeout", "body_timeout"):
            if name in table:
                values[name] = self.seconds(table[name], f"server.{name}")
        if "contract" in table:
            contract = self.string(table["contract"], "server.contract")
            if contract not in spec.CONTRACTS:
                raise self.fail("server.contract", f"must be one of {', '.join(spec.CONTRACTS)}")
            values["contract"] = contract
        return ServerConfig(**values)

    def model(self, name: str, raw: Any) -> ModelConfig:
        where = f"[models.{name}]"
        if not name or any(c.isspace() for c in name):
            raise self.fail(where, "a model name must be non-empty and without spaces")
        allowed = frozenset(
            {
                "path",
                "context_size",
                "parallel",
                "threads",
                "chat_format",
                "extra_buffer_types",
                "flash_attention",
            }
        )
        table = self.table(raw, where, allowed)
        values: dict[str, Any] = {"name": name}
        if "path" in table:
            path = Path(self.string(table["path"], f"{where} path")).expanduser()
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            values["path"] = path
        if "context_size" in table:
            values["context_size"] = self.integer(
                table["context_size"], f"{where} context_size", minimum=16
            )
        if "parallel" in table:
            values["parallel"] = self.integer(
                table["parallel"], f"{where} parallel", minimum=1, maximum=MAX_PARALLEL
            )
        if "threads" in table:
            values["threads"] = self.integer(table["threads"], f"{where} threads", minimum=1)
        if "chat_format" in table:
            values["chat_format"] = self.string(table["chat_format"], f"{where} chat_format")
        if "extra_buffer_types" in table:
            values["extra_buffer_types"] = self.boolean(
                table["extra_buffer_types"], f"{where} extra_buffer_types"
            )
        if "flash_attention" in table:
            values["flash_attention"] = self.boolean(
                table["flash_attention"], f"{where} flash_attention"
            )
        return ModelConfig(**values)

    def key(self, index: int, raw: Any, served: frozenset[str]) -> APIKey:
        where = f"keys[{index}]"
        table = self.table(raw, where, frozenset({"key", "key_env", "models"}))
        if ("key" in table) == ("key_env" in table):
            raise self.fail(where, "give exactly one of key or key_env")
        if "key" in table:
            key = self.string(table["key"], f"{where}.key")
        else:
            variable = self.string(table["key_env"], f"{where}.key_env")
            key = self.env.get(variable, "")
            if not key:
                raise self.fail(where, f"environment variable {variable} is not set or empty")
        models_raw = table.get("models", ["*"])
        if not isinstance(models_raw, list) or not models_raw:
            raise self.fail(f"{where}.models", "must be a non-empty array of model names")
        models = tuple(self.string(m, f"{where}.models") for m in models_raw)
        unknown = sorted(set(models) - served - {"*"})
        if unknown:
            raise self.fail(f"{where}.models", f"names no configured model: {', '.join(unknown)}")
        return APIKey(key=key, models=models)
