"""Starting the real reference server (with the real model) for the broken-server tests."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT = 60.0


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def reference_server(api_key: str | None = None) -> Iterator[str]:
    """Run `reference.cli` on a free port (``MIMIC_MODELS_DIR`` honoured); yield its base URL."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the reference server's extra is not installed")
    port = _free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in ("MIMIC_PORT", "MIMIC_HOST", "MIMIC_CONFIG")
    }
    if api_key:
        env["MIMIC_API_KEYS"] = api_key
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "reference.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "reference.cli", "--host", "127.0.0.1", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait(process, base_url, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the reference server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base_url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the reference server did not start: {log.read_text()[-2000:]}")
