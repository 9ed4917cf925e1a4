"""A local HTTP server as a child process: a free port, the start, the wait until it is ready.

The plugin starts the reference server this way when a run has no ``--target``
(:class:`conformance._reference_process.ReferenceServer`); the project's tests and benchmarks
start theirs with the same helpers::

    port = free_port()
    process = launch([*command, "--port", str(port)], log_path=log)
    try:
        wait_until_ready(process, f"http://{LOCALHOST}:{port}", timeout=180.0)
        ...
    finally:
        stop(process)

or, all in one, ``with running(command, base_url, log_path=log, timeout=180.0) as process:``.

A server may take long to become ready: the reference server proves its engine in a child
process before it opens its port, and answers ``/health`` only after a warm-up, which on a
loaded two-core machine takes tens of seconds. Give it a generous ``timeout``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

__all__ = [
    "LOCALHOST",
    "ServerExitedError",
    "ServerNotReadyError",
    "ServerStartError",
    "free_port",
    "launch",
    "running",
    "stop",
    "wait_until_ready",
]

LOCALHOST = "127.0.0.1"


class ServerStartError(RuntimeError):
    """The server did not become ready."""


class ServerExitedError(ServerStartError):
    """The server's process ended before it was ready; ``returncode`` says how."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"the server exited with status {returncode}")
        self.returncode = returncode


class ServerNotReadyError(ServerStartError):
    """The server was still running but not ready when the time allowed ran out."""


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on ``host`` that nothing listens on now (the system picks it)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def launch(
    command: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output (stdout and stderr) written to ``log_path``.

    The log's directory is created if need be; the process reads nothing (stdin is
    ``/dev/null``); ``env`` replaces the environment if given.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
        )


def wait_until_ready(
    process: subprocess.Popen[bytes],
    base_url: str,
    *,
    timeout: float,
    paths: Sequence[str] = ("/health",),
    headers: Mapping[str, str] | None = None,
    interval: float = 0.2,
) -> None:
    """Return once ``GET base_url + path`` answers 200 for one of ``paths``.

    Each poll tries the paths in order, each with a 1 s timeout, then sleeps ``interval``.
    Raise :class:`ServerExitedError` as soon as the process has ended, and
    :class:`ServerNotReadyError` once ``timeout`` seconds have passed (the process is left
    running: see :func:`stop`).
    """
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServerExitedError(code)
        if _answers(base_url, paths, headers):
            return
        if time.monotonic() > deadline:
            raise ServerNotReadyError(f"{base_url} was not ready within {timeout:g} s")
        time.sleep(interval)


def _answers(base_url: str, paths: Sequence[str], headers: Mapping[str, str] | None) -> bool:
    for path in paths:
        try:
            if httpx.get(base_url + path, timeout=1.0, headers=headers).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
    return False


def stop(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> int:
    """End the process (SIGTERM, then SIGKILL after ``grace`` seconds); return its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    return process.returncode


@contextlib.contextmanager
def running(
    command: Sequence[str],
    base_url: str,
    *,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str] | None = None,
    paths: Sequence[str] = ("/health",),
    headers: Mapping[str, str] | None = None,
    interval: float = 0.2,
    grace: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Launch ``command``, wait until ``base_url`` is ready, yield the process, then stop it.

    The arguments are those of :func:`launch`, :func:`wait_until_ready` and :func:`stop`. The
    process is stopped however the block ends, and also when it never became ready.
    """
    process = launch(command, log_path=log_path, env=env)
    try:
        wait_until_ready(
            process, base_url, timeout=timeout, paths=paths, headers=headers, interval=interval
        )
        yield process
    finally:
        stop(process, grace=grace)
