"""Connections that stall or flood are closed; clients that speak HTTP at a normal pace are served.

One real server with short limits (1 s for a head, 1 s of body silence, 20 connections).
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference.connections import RateLimitFilter
from tests.reference._server import ServerProcess, start_server

model = pytest.mark.model

LIMITS = """
[server]
head_timeout = 1
body_timeout = 1
max_connections = 20
"""
#: How long a test waits for the server to close a connection before it calls that a failure.
PATIENCE = 15.0


@pytest.fixture(scope="module")
def guarded(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server(tmp_path_factory.mktemp("guarded"), config_toml=LIMITS) as running:
        yield running
        assert running.stop() == 0, running.log()


#: The file descriptors the cramped server may open: fewer than the connections a test opens.
CRAMPED_FILES = 300


@pytest.fixture(scope="module")
def cramped(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with default limits in a process that may open only `CRAMPED_FILES` files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.ExitStack() as stack:
        resource.setrlimit(resource.RLIMIT_NOFILE, (CRAMPED_FILES, hard))  # inherited by the child
        try:
            running = stack.enter_context(start_server(tmp_path_factory.mktemp("cramped")))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        yield running
        assert running.stop() == 0, running.log()


def _connect(server: ServerProcess) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=PATIENCE)
    return connection


def _closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closes ``connection`` (EOF or reset) within `PATIENCE` seconds."""
    try:
        while True:
            data = connection.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _serves(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/health", timeout=PATIENCE)
    assert response.status_code == 200, response.text


@model
def test_a_connection_that_sends_nothing_is_closed(guarded: ServerProcess) -> None:
    with _connect(guarded) as connection:
        assert _closed_by_server(connection)
    _serves(guarded)


@model
def test_a_request_head_that_stops_is_closed(guarded: ServerProcess) -> None:
    with _connect(guarded) as connection:
        connection.sendall(b"G")
        assert _closed_by_server(connection)


@model
def test_a_head_that_trickles_past_the_limit_is_closed(guarded: ServerProcess) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 50
    with _connect(guarded) as connection:
        started = time.monotonic()
        try:
            for byte in head:
                connection.sendall(bytes([byte]))
                time.sleep(0.1)
                if time.monotonic() - started > PATIENCE:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _closed_by_server(connection)


@model
def test_a_body_that_stops_is_closed_and_leaves_no_traceback(guarded: ServerProcess) -> None:
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    with _connect(guarded) as connection:
        connection.sendall(head + b'{"model": ')
        assert _closed_by_server(connection)
    _serves(guarded)
    assert "Traceback" not in guarded.log()


@model
def test_a_body_sent_slowly_but_steadily_is_served(guarded: ServerProcess) -> None:
    body = json.dumps(
        {"model": "mythomax", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with _connect(guarded) as connection:
        connection.sendall(head)
        for start in range(0, len(body), 20):  # 0.3 s apart: under the 1 s body limit
            connection.sendall(body[start : start + 20])
            time.sleep(0.3)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


@model
def test_keep_alive_requests_and_a_long_stream_are_not_cut(guarded: ServerProcess) -> None:
    with httpx.Client(base_url=guarded.base_url, timeout=PATIENCE) as client:
        for _ in range(2):
            assert client.get("/health").status_code == 200
            time.sleep(0.5)
        body = {
            "model": "mythomax",
            "max_tokens": 150,
            "stream": True,
            "messages": [{"role": "user", "content": "Tell a long story."}],
        }
        # 150 tokens take longer than either limit: a request being answered has no deadline.
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            text = "".join(response.iter_text())
        assert response.status_code == 200
        assert text.rstrip().endswith("data: [DONE]")


@model
def test_silent_connections_beyond_the_cap_do_not_lock_out_a_request(
    guarded: ServerProcess,
) -> None:
    silent = [_connect(guarded) for _ in range(60)]
    try:
        _serves(guarded)
    finally:
        for connection in silent:
            connection.close()
    shed = [line for line in guarded.log().splitlines() if "more than 20 connections" in line]
    assert 1 <= len(shed) <= 3, shed  # rate-limited: at most one such line per 10 s


@model
def test_more_silent_connections_than_files_do_not_stop_a_request(cramped: ServerProcess) -> None:
    # Before connections were capped, the server ran out of file descriptors: it accepted
    # nothing more, and logged a traceback per refused accept.
    silent = [_connect(cramped) for _ in range(CRAMPED_FILES + 100)]
    try:
        _serves(cramped)
    finally:
        for connection in silent:
            connection.close()
    assert "using 236" in cramped.log()  # max_connections lowered to what the process may open
    assert len(cramped.log().splitlines()) < 100


def test_the_rate_limit_filter_holds_back_repeats_and_counts_them() -> None:
    limiter = RateLimitFilter(interval=60.0)

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("x", logging.ERROR, __file__, 1, message, None, None)

    assert limiter.filter(record("accept failed\nsocket fd=7"))
    assert not limiter.filter(record("accept failed\nsocket fd=8"))
    assert not limiter.filter(record("accept failed\nsocket fd=9"))
    assert limiter.filter(record("another problem"))
    limiter._last.clear()  # the interval has passed
    repeat = record("accept failed\nsocket fd=10")
    assert limiter.filter(repeat)
    assert "(and 2 more like it in the last 60 s)" in repeat.getMessage()
