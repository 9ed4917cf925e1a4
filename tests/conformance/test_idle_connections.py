"""Idle and stalled connections, against small socket servers that do one thing each."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest

from conformance.idle_connections import IdleConnections, connections_allowed, stalled_requests

Behaviour = Callable[[socket.socket, list[bytes]], None]


@contextmanager
def listening(behaviour: Behaviour) -> Iterator[tuple[str, list[bytes]]]:
    """A server that runs ``behaviour(conn, received)`` on each connection, in a thread."""
    server = socket.create_server(("127.0.0.1", 0), backlog=4096)
    received: list[bytes] = []
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            threading.Thread(target=behaviour, args=(conn, received), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join()
        for conn in conns:
            conn.close()
        server.close()


def read_a_little(conn: socket.socket, received: list[bytes]) -> None:
    conn.settimeout(2)
    with suppress(OSError):
        received.append(conn.recv(100))


def read_everything(conn: socket.socket, received: list[bytes]) -> None:
    conn.settimeout(5)
    with suppress(OSError):
        while chunk := conn.recv(100):
            received.append(chunk)


def close_after(seconds: float) -> Behaviour:
    def behaviour(conn: socket.socket, received: list[bytes]) -> None:
        time.sleep(seconds)
        conn.close()

    return behaviour


def answer_408(conn: socket.socket, received: list[bytes]) -> None:
    time.sleep(0.2)
    conn.sendall(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")


def never_close(conn: socket.socket, received: list[bytes]) -> None:
    time.sleep(3)


def test_idle_connections_open_at_once_half_with_one_byte() -> None:
    with listening(read_a_little) as (url, received), IdleConnections(url, 40) as idle:
        assert idle.opened == 40 and idle.errors == []
        deadline = time.monotonic() + 5
        while received.count(b"G") < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert received.count(b"G") == 20


def test_connections_nobody_accepts_are_counted_as_errors() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    with IdleConnections(f"http://127.0.0.1:{port}", 3, connect_timeout=1) as idle:
        assert idle.opened == 0 and len(idle.errors) == 3
        assert "ECONNREFUSED" in idle.errors[0]


def test_the_open_file_limit_bounds_the_connections() -> None:
    allowed = connections_allowed(500)
    assert 0 < allowed <= 500


@pytest.mark.parametrize(
    ("behaviour", "closed", "status"),
    [(close_after(0.3), True, None), (answer_408, True, 408), (never_close, False, None)],
    ids=["closes", "answers-408", "keeps-open"],
)
def test_stalled_requests_are_timed(behaviour: Behaviour, closed: bool, status: int | None) -> None:
    with listening(behaviour) as (url, _):
        ends = stalled_requests(url, "/v1/chat/completions", 1.5)
    assert [end.what for end in ends] == [
        "a request head cut off after its first line",
        "a body that stops after 10 of its 1,000 declared bytes",
    ]
    for end in ends:
        assert (end.closed_after is not None) == closed
        assert end.status == status
        assert end.command.startswith("bash -c ") and "/dev/tcp/127.0.0.1/" in end.command
    if closed:
        assert all(end.closed_after is not None and end.closed_after < 1.5 for end in ends)


def test_a_stall_command_sends_the_same_bytes() -> None:
    with listening(read_everything) as (url, received):
        (head, _) = stalled_requests(url, "/x", 0.2)
        received.clear()
        expected = f"POST /x HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\n".encode()
        # The command waits for the server to close; this server does not: stop it once sent.
        shell = subprocess.Popen(
            head.command, shell=True, start_new_session=True, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 5
            while b"".join(received) != expected and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
    assert b"".join(received) == expected


def test_no_target_is_a_connection_error() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ConnectionError, match="could not connect"):
        stalled_requests(f"http://127.0.0.1:{port}", "/x", 1)
