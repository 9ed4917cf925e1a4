from __future__ import annotations

from pathlib import Path

import pytest

import spec
from reference.config import APIKey, Config, ConfigError, ModelConfig, ServerConfig
from reference.model_install import default_model_path

SIX = spec.contract().resolve("/components/schemas/ModelName/enum")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mimic.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_serves_the_six_names_on_one_default_model() -> None:
    config = Config.load(env={})
    assert list(config.models) == SIX
    assert config.server == ServerConfig()
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8000
    assert config.server.max_waiting == 8
    assert not config.auth_enabled
    keys = {model.engine_key() for model in config.models.values()}
    assert keys == {(str(default_model_path()), 2048, 4, None, None, False, True)}
    assert not config.models["mythomax"].extra_buffer_types
    assert config.models["mythomax"].flash_attention


def test_a_dataclass_default_equals_the_packaged_default() -> None:
    assert Config() == Config.default()


def test_file_layers_over_the_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [server]
        port = 9001
        max_waiting = 0
        request_timeout = 2.5

        [models.mythomax]
        path = "models/big.gguf"
        context_size = 4096
        parallel = 2
        threads = 2
        chat_format = "chatml"
        extra_buffer_types = true
        flash_attention = false

        [models.extra]
        """,
    )
    config = Config.load(path, env={})
    assert config.server.port == 9001
    assert config.server.host == "127.0.0.1"  # untouched keys keep their defaults
    assert config.server.max_waiting == 0
    assert config.server.request_timeout == 2.5
    assert list(config.models) == [*SIX, "extra"]
    mythomax = config.models["mythomax"]
    assert mythomax.path == tmp_path / "models" / "big.gguf"  # relative to the file
    assert (mythomax.context_size, mythomax.threads, mythomax.chat_format) == (4096, 2, "chatml")
    assert (mythomax.parallel, config.models["asha"].parallel) == (2, 4)
    assert mythomax.extra_buffer_types
    assert not mythomax.flash_attention
    assert mythomax.engine_key() != config.models["asha"].engine_key()
    assert config.models["extra"] == ModelConfig(name="extra")


def test_environment_names_the_file_and_overrides_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9001\n")
    config = Config.load(
        env={
            "MIMIC_CONFIG": str(path),
            "MIMIC_PORT": "9002",
            "MIMIC_HOST": "0.0.0.0",
            "MIMIC_API_KEYS": " k1, ,k2 ",
        }
    )
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9002)
    assert [key.key for key in config.keys] == ["k1", "k2"]
    assert all(key.models == ("*",) for key in config.keys)
    assert config.auth_enabled


def test_keys_from_the_file_and_from_named_variables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[keys]]
        key = "plain"
        models = ["asha"]

        [[keys]]
        key_env = "SECRET_KEY_VAR"
        """,
    )
    config = Config.load(path, env={"SECRET_KEY_VAR": "from-env"})
    assert config.keys == (APIKey("plain", ("asha",)), APIKey("from-env", ("*",)))
    assert config.keys[0].allows("asha") and not config.keys[0].allows("soji")
    assert "plain" not in repr(config)  # keys never show in logs of the config


def test_the_contract_served_is_chosen_in_the_file(tmp_path: Path) -> None:
    assert Config.load(env={}).server.contract == "mimic"
    path = write(tmp_path, "[server]\ncontract = 'openai'\n")
    assert Config.load(path, env={}).server.contract == "openai"


def test_command_line_values_win() -> None:
    config = Config.load(env={"MIMIC_PORT": "9002"}).with_server(port=9003, host="::1")
    assert (config.server.host, config.server.port) == ("::1", 9003)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'eighty'\n", "server.port: must be an integer"),
        ("[server]\nport = 70000\n", "between 0 and 65535"),
        ("[server]\nmax_waiting = -1\n", "server.max_waiting"),
        ("[server]\nmax_waiting = true\n", "must be an integer"),
        ("[server]\nrequest_timeout = 0\n", "positive number of seconds"),
        ("[server]\nprot = 1\n", "unknown key(s) prot"),
        ("[server]\ncontract = 'gpt'\n", "server.contract: must be one of mimic, openai"),
        ("[models.asha]\ncontext = 1\n", "unknown key(s) context"),
        ("[models.asha]\ncontext_size = 4\n", "context_size: must be >= 16"),
        ("[models.asha]\nthreads = 0\n", "threads: must be >= 1"),
        ("[models.asha]\nparallel = 0\n", "parallel: must be between 1 and 256"),
        ("[models.asha]\nparallel = 257\n", "parallel: must be between 1 and 256"),
        ("[models.asha]\nparallel = 2.0\n", "parallel: must be an integer"),
        ("[models.asha]\nextra_buffer_types = 1\n", "extra_buffer_types: must be true or false"),
        ("[models.asha]\nflash_attention = 'on'\n", "flash_attention: must be true or false"),
        ("[[keys]]\nmodels = ['*']\n", "exactly one of key or key_env"),
        ("[[keys]]\nkey_env = 'UNSET_VARIABLE_FOR_TEST'\n", "is not set"),
        ("[[keys]]\nkey = 'k'\nmodels = ['gpt-9']\n", "names no configured model: gpt-9"),
        ("[[keys]]\nkey = 'k'\nmodels = []\n", "non-empty array"),
        ("keys = 'k'\n", "array of tables"),
        ("[surprise]\n", "unknown key(s) surprise"),
        ("not toml at all = = =\n", "is not valid TOML"),
    ],
)
def test_bad_values_fail_with_the_file_and_key_named(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"mimic\.toml") as failure:
        Config.load(path, env={})
    assert message in str(failure.value)


def test_missing_file_and_bad_port_variable_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "absent.toml", env={})
    with pytest.raises(ConfigError, match="MIMIC_PORT"):
        Config.load(env={"MIMIC_PORT": "http"})


def test_a_config_needs_models() -> None:
    with pytest.raises(ConfigError, match="no models"):
        Config(models={})
    with pytest.raises(ConfigError, match="configured under the name"):
        Config(models={"a": ModelConfig(name="b")})
