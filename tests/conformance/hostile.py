"""Small hostile (and a few well-behaved) HTTP servers, for testing that the suite never hangs.

Usage::

    with hostile_server("trickle") as base_url:
        ...  # any request to base_url gets a body that arrives one byte every 100 ms, forever

Each connection is served by its own thread and handles one request. A mode is a name from
:data:`MODES` or any ``handler(conn, stop)`` callable: ``conn`` is the accepted socket, ``stop`` an
event set when the server shuts down. Handlers must return soon after ``stop`` is set; the
helpers below (``read_request``, ``wait_for_close``) poll it.

:func:`recording_server` is a plain echo-style server that records every request it receives,
byte for byte, for tests that check what a client really sent.
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

Handler = Callable[[socket.socket, threading.Event], None]

_POLL = 0.05


def read_request(conn: socket.socket, stop: threading.Event) -> bytes:
    """Read one request (head and Content-Length body); return b"" if the client went away."""
    conn.settimeout(_POLL)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(conn, stop)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = _recv(conn, stop)
        if not chunk:
            return b""
        body += chunk
    return head + b"\r\n\r\n" + body


def _recv(conn: socket.socket, stop: threading.Event) -> bytes:
    while not stop.is_set():
        try:
            return conn.recv(65536)
        except TimeoutError:
            continue
    return b""


def wait_for_close(conn: socket.socket, stop: threading.Event) -> None:
    """Say nothing until the client closes the connection or the server stops."""
    conn.settimeout(_POLL)
    while not stop.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue


def send_forever(conn: socket.socket, stop: threading.Event, piece: bytes, interval: float) -> None:
    """Send ``piece`` every ``interval`` seconds until the client leaves or the server stops."""
    conn.settimeout(1.0)
    while not stop.is_set():
        conn.sendall(piece)
        if interval:
            stop.wait(interval)


def reset(conn: socket.socket) -> None:
    """Abort the connection with a TCP RST (SO_LINGER with a zero timeout, then close)."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _head(content_type: str, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_SSE_HEAD = _head("text/event-stream", "Cache-Control: no-cache", "Connection: close")


def _chunk_event(number: int) -> bytes:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "n": number}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn, stop)
    wait_for_close(conn, stop)


def _headers_then_stall(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_SSE_HEAD)
        wait_for_close(conn, stop)


def _sse_forever(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_SSE_HEAD)
        number = 0
        conn.settimeout(1.0)
        while not stop.is_set():
            number += 1
            conn.sendall(_chunk_event(number))
            stop.wait(0.05)


def _trickle(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_head("application/json", "Content-Length: 1000000"))
        send_forever(conn, stop, b" ", 0.1)


def _trickle_head(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        send_forever(conn, stop, b"a", 0.1)


def _endless_body(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_head("application/octet-stream", "Connection: close"))
        send_forever(conn, stop, b"\x00" * 65536, 0)


def _garbage(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage \x1b[31m\r\n")
        wait_for_close(conn, stop)


def _reset(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        reset(conn)


def _close_mid_body(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_head("application/json", "Content-Length: 1000") + b'{"object": "list"')
        conn.shutdown(socket.SHUT_WR)
        wait_for_close(conn, stop)


def _reset_mid_stream(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_SSE_HEAD + _chunk_event(1) + _chunk_event(2))
        time.sleep(0.05)
        reset(conn)


def _json(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        _answer_json(conn)


def _sse(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_SSE_HEAD)
        for number in (1, 2, 3):
            conn.sendall(_chunk_event(number))
            time.sleep(0.02)
        conn.sendall(b"data: [DONE]\n\n")


def _sse_done_then_hang(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_SSE_HEAD + _chunk_event(1) + b"data: [DONE]\n\n")
        wait_for_close(conn, stop)


def _gigabyte(conn: socket.socket, stop: threading.Event) -> None:
    if read_request(conn, stop):
        conn.sendall(_head("application/json", f"Content-Length: {1 << 30}"))
        send_forever(conn, stop, b"\x00" * 65536, 0)


def _asks_for_a_stream(request: bytes) -> bool:
    body = request.partition(b"\r\n\r\n")[2]
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("stream") is True


def _stalls_streams(conn: socket.socket, stop: threading.Event) -> None:
    request = read_request(conn, stop)
    if not request:
        return
    if _asks_for_a_stream(request):
        conn.sendall(_SSE_HEAD + _chunk_event(1) + _chunk_event(2) + _chunk_event(3))
        wait_for_close(conn, stop)
    else:
        _answer_json(conn)


def _lists_models_then_silent(conn: socket.socket, stop: threading.Event) -> None:
    request = read_request(conn, stop)
    if request.startswith(b"GET ") and b"/models " in request.partition(b"\r\n")[0]:
        _answer_json(conn)
    elif request:
        wait_for_close(conn, stop)


def _answer_json(conn: socket.socket) -> None:
    body = b'{"object": "list", "data": []}'
    conn.sendall(
        _head("application/json", f"Content-Length: {len(body)}", "Connection: close") + body
    )


MODES: dict[str, Handler] = {
    "silent": _silent,  # accepts, reads the request, never answers
    "headers-then-stall": _headers_then_stall,  # a 200 event-stream head, then nothing
    "sse-forever": _sse_forever,  # an event every 50 ms, never [DONE], never ends
    "trickle": _trickle,  # a 200 head, then one body byte every 100 ms, forever
    "trickle-head": _trickle_head,  # the response head itself, one byte every 100 ms
    "endless-body": _endless_body,  # a body of zeros as fast as the socket takes them
    "garbage": _garbage,  # an SSH banner and binary junk instead of HTTP
    "reset": _reset,  # reads the request, then resets the connection (RST)
    "close-mid-body": _close_mid_body,  # promises 1000 bytes, sends 17, closes
    "reset-mid-stream": _reset_mid_stream,  # two events, then RST
    "json": _json,  # well-behaved: a small JSON 200
    "sse": _sse,  # well-behaved: three events and [DONE], then closes
    "sse-done-then-hang": _sse_done_then_hang,  # [DONE], then keeps the connection open
    "gigabyte": _gigabyte,  # a 200 that promises a 1 GiB body, and sends it as fast as it can
    "stalls-streams": _stalls_streams,  # small JSON 200s, but streams stall after three events
    "lists-models-then-silent": _lists_models_then_silent,  # answers GET .../models, nothing else
}


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False  # so that server_close() joins every handler thread
    block_on_close = True

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _RequestHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that leaves mid-answer is the normal case here, not an error.
        pass


class _RequestHandler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        with suppress(OSError):  # the client leaving mid-answer is what these servers provoke
            self.server.handler(self.request, self.server.stop)


@contextmanager
def hostile_server(mode: str | Handler) -> Iterator[str]:
    """Run a server that behaves as ``mode`` on a free local port; yield its base URL."""
    if isinstance(mode, str):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {sorted(MODES)}")
        handler = MODES[mode]
    else:
        handler = mode
    server = _Server(handler)
    thread = threading.Thread(target=server.serve_forever, args=(_POLL,), daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as it arrived on the wire: method, target, headers in order and case, body."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (any case), or ``None``."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def _parse(raw: bytes) -> ReceivedRequest:
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ", 2)
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return ReceivedRequest(method, target, headers, body)


@contextmanager
def recording_server() -> Iterator[tuple[str, list[ReceivedRequest]]]:
    """Run a server that answers 204 to everything; yield its base URL and what it received."""
    received: list[ReceivedRequest] = []

    def record(conn: socket.socket, stop: threading.Event) -> None:
        raw = read_request(conn, stop)
        if raw:
            received.append(_parse(raw))
            conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    with hostile_server(record) as base_url:
        yield base_url, received
