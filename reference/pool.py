"""The served model names and the runners behind them, loaded once and shared.

Names whose file and llama.cpp settings are equal share one engine and one `ModelRunner`, so
that the six default names cost one model in memory and queue behind one another. Loading runs
in a thread once the server has started, so that it answers (the health route says "loading")
while the model loads; requests for a model still loading wait for it.

The pool is also the app's lifespan middleware: Falcon calls `process_startup` and
`process_shutdown`. Runners handed in ready-made (tests) are the caller's: the pool neither
loads nor closes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from reference.auth import Grant
from reference.config import Config, ModelConfig
from reference.errors import APIError, model_not_served
from reference.scheduler import ModelRunner

__all__ = ["ModelPool"]

logger = logging.getLogger("mimic.reference")

Status = Literal["loading", "ok", "error"]


class ModelPool:
    """Served names → runners. Build with the config; Falcon drives the lifespan."""

    def __init__(
        self,
        config: Config,
        runners: Mapping[str, ModelRunner] | None = None,
        *,
        shutdown_grace: float = 5.0,
    ) -> None:
        self._config = config
        self._models: dict[str, ModelConfig] = dict(config.models)
        self._owned = runners is None
        self._grace = shutdown_grace
        self.created = int(time.time())
        """When the models were first offered, for the `created` field of the model list."""
        self._runners: dict[str, ModelRunner] = dict(runners or {})
        if runners is not None:
            missing = sorted(set(self._models) - set(runners))
            if missing:
                raise ValueError(f"no runner given for model(s): {', '.join(missing)}")
        self._errors: dict[str, str] = {}
        self._loaded = asyncio.Event() if self._owned else None
        self._load_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[Any] | None = None

    # ---------------------------------------------------------------- what is served

    @property
    def names(self) -> tuple[str, ...]:
        """Every served name, in the configuration's order."""
        return tuple(self._models)

    def serves(self, name: str) -> bool:
        """Whether `name` is served here."""
        return name in self._models

    def status(self) -> dict[str, Status]:
        """Each name's state: loading, ok, or error (its model failed to load)."""
        return {
            name: "error" if name in self._errors else "ok" if name in self._runners else "loading"
            for name in self._models
        }

    async def runner_for(self, name: str, grant: Grant) -> ModelRunner:
        """The runner serving `name`: 404 if it is not served, 403 if the grant lacks it."""
        if not self.serves(name):
            raise model_not_served(name)
        grant.check(name)
        if self._owned and self._load_task is None:
            self.start_loading()  # served without an ASGI lifespan: load on first use
        runner = self._runners.get(name)
        if runner is None and self._loaded is not None:
            await self._loaded.wait()
            runner = self._runners.get(name)
        if runner is None:
            raise APIError(500, f"model {name!r} failed to load: {self._errors.get(name, '?')}")
        return runner

    # ---------------------------------------------------------------- lifespan

    async def process_startup(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """Check the model files now (a clear failure at start-up), load them in the background."""
        self.start_loading()

    def missing_files(self) -> list[str]:
        """A line for each configured model whose GGUF file is not there (none: all are)."""
        if not self._owned:
            return []
        return [
            f"model {model.name!r}: no GGUF file at {model.model_path()} "
            "(run mimic-reference-install-model for the default model)"
            for model in self._models.values()
            if not model.model_path().is_file()
        ]

    def start_loading(self) -> None:
        """Start loading the models unless it has started; call it on the event loop."""
        self._loop = asyncio.get_running_loop()
        if not self._owned or self._load_task is not None:
            return
        problems = self.missing_files()
        if problems:
            raise FileNotFoundError("; ".join(problems))
        assert self._loaded is not None
        self._loaded.clear()
        self._load_task = asyncio.create_task(self._load_all(), name="load-models")

    def begin_drain(self) -> None:
        """Stop taking requests and give running ones the grace period; safe from a signal handler.

        The server calls this when it is told to stop, before it waits for open connections:
        a stream still running when the grace period ends is stopped and ends with an error
        event and `[DONE]`, rather than being cut when the server gives up waiting.
        """
        if self._loop is not None and self._owned:
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._close_runners())

    async def _close_runners(self) -> None:
        runners = {id(runner): runner for runner in self._runners.values()}
        await asyncio.gather(*(runner.close(grace=self._grace) for runner in runners.values()))

    async def process_shutdown(self, scope: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """Let running generations finish (up to the grace period), then free the models."""
        if not self._owned:
            return
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
            self._load_task = None
        self._drain()
        assert self._draining is not None
        await self._draining
        self._draining = None
        engines = {id(runner.engine): runner.engine for runner in self._runners.values()}
        self._runners.clear()
        self._errors.clear()
        for engine in engines.values():
            await asyncio.to_thread(engine.close)

    async def _load_all(self) -> None:
        from reference.engine import load_engine
        from reference.preflight import exercise

        groups: dict[tuple[Any, ...], list[ModelConfig]] = {}
        for model in self._models.values():
            groups.setdefault(model.engine_key(), []).append(model)
        try:
            for models in groups.values():
                first = models[0]
                names = [m.name for m in models]
                started = time.perf_counter()
                try:
                    engine = await asyncio.to_thread(
                        load_engine,
                        first.model_path(),
                        context_size=first.context_size,
                        parallel=first.parallel,
                        threads=first.threads,
                        chat_format=first.chat_format,
                        extra_buffer_types=first.extra_buffer_types,
                        flash_attention=first.flash_attention,
                    )
                    runner = ModelRunner(engine, max_waiting=self._config.server.max_waiting)
                    try:
                        # Every decode shape once, in this process, before health says ok.
                        await runner.warm_up(exercise)
                    except BaseException:
                        await runner.close()
                        await asyncio.to_thread(engine.close)
                        raise
                except Exception as error:
                    logger.exception("cannot load the model for %s", ", ".join(names))
                    self._errors.update(dict.fromkeys(names, str(error)))
                    continue
                self._runners.update(dict.fromkeys(names, runner))
                logger.info(
                    "loaded %s for %s in %.2f s",
                    engine.name,
                    ", ".join(names),
                    time.perf_counter() - started,
                )
        finally:
            assert self._loaded is not None
            self._loaded.set()
