"""Fixtures for the HTTP layer's tests: the app in-process, and the real server as a subprocess.

Imported by `conftest.py`. In-process tests share one `ModelRunner` over the session's real
engine; every call goes through Falcon's module-wide event loop (`falcon.util.async_to_sync`),
the loop the runner's asyncio primitives belong to.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.asgi
import httpx
import pytest
from falcon import testing
from falcon.util import async_to_sync

from conformance.server_process import (
    LOCALHOST,
    ServerExitedError,
    ServerNotReadyError,
    free_port,
    launch,
    wait_until_ready,
)
from reference import Config, create_app
from reference.engine import Engine
from reference.scheduler import ModelRunner

__all__ = [
    "Reply",
    "ServerProcess",
    "app",
    "call",
    "client",
    "runner",
    "runners_for",
    "server",
    "start_server",
]


# ---------------------------------------------------------------- in-process


@pytest.fixture(scope="session")
def runner(engine: Engine) -> ModelRunner:
    """One runner over the session's engine, shared by every in-process app."""
    return ModelRunner(engine, max_waiting=8)


def runners_for(config: Config, runner: ModelRunner) -> dict[str, ModelRunner]:
    """Every configured name served by `runner`."""
    return dict.fromkeys(config.models, runner)


@pytest.fixture(scope="session")
def app(runner: ModelRunner) -> falcon.asgi.App:
    """The app with the default configuration (no keys) on the session's runner."""
    config = Config()
    return create_app(config, runners=runners_for(config, runner))


@pytest.fixture
def client(app: falcon.asgi.App) -> testing.TestClient:
    """Falcon's test client. It disconnects as soon as a response starts: streams end early."""
    return testing.TestClient(app)


@dataclass(frozen=True)
class Reply:
    """A whole response: status, lower-cased headers, body text."""

    status: int
    headers: Mapping[str, str]
    text: str


async def _call(app: Any, method: str, path: str, **kwargs: Any) -> Reply:
    # httpx's ASGI transport keeps the connection until the response is complete, so streams
    # are read to their end (Falcon's simulate_request disconnects at once).
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.request(method, path, **kwargs)
        return Reply(response.status_code, dict(response.headers), response.text)


def call(app: Any, method: str, path: str, **kwargs: Any) -> Reply:
    """One request to the in-process app, read to the end (streams included)."""
    return async_to_sync(_call, app, method, path, **kwargs)


# ---------------------------------------------------------------- subprocess


def _command() -> list[str]:
    script = Path(sys.executable).with_name("mimic-reference")
    if script.exists():
        return [str(script)]
    found = shutil.which("mimic-reference")
    return [found] if found else [sys.executable, "-m", "reference.cli"]


@dataclass
class ServerProcess:
    """A running `mimic-reference`: its URL, process and log file."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """What the server has logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; return the exit code (SIGKILL and fail if it will not stop)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the server ignored SIGTERM for {timeout} s") from None
        return self.process.returncode


@contextlib.contextmanager
def start_server(
    workdir: Path,
    *,
    config_toml: str | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout: float = 120.0,
) -> Iterator[ServerProcess]:
    """Start `mimic-reference --port <free>` and wait until /health says ok; kill it after."""
    port = free_port()
    command = [*_command(), "--port", str(port), "--log-level", "info"]
    if config_toml is not None:
        config_path = workdir / "config.toml"
        config_path.write_text(config_toml, encoding="utf-8")
        command += ["--config", str(config_path)]
    log_path = workdir / "server.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MIMIC_API_KEYS")}
    full_env.update(env or {})
    process = launch(command, log_path=log_path, env=full_env)
    server = ServerProcess(f"http://{LOCALHOST}:{port}", process, log_path)
    try:
        try:
            wait_until_ready(process, server.base_url, timeout=ready_timeout, interval=0.05)
        except ServerExitedError as error:
            raise AssertionError(
                f"the server exited with {error.returncode}:\n{server.log()}"
            ) from None
        except ServerNotReadyError:
            raise AssertionError(
                f"the server was not ready in {ready_timeout} s:\n{server.log()}"
            ) from None
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with the default configuration for the session's integration tests."""
    with start_server(tmp_path_factory.mktemp("server")) as running:
        yield running
        assert running.stop() == 0, running.log()
