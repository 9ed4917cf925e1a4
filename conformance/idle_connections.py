"""Connections that open and then say little or nothing: the traffic of the connection rules.

:class:`IdleConnections` holds many connections open to a target without a complete request
(``ROBUST-IDLE-CONNECTIONS``); :func:`stalled_requests` opens two whose request stops halfway
and times how long the target takes to close them (``ROBUST-STALLED-CLOSED``).

Why sockets and not httpx: an HTTP client sends whole requests, and its pool would reuse a
connection rather than hold two thousand. These are raw TCP connections, opened all at once
without blocking (two thousand connects one after the other would take minutes to a distant
target). On an ``https`` target the partial request is the first byte of a TLS record, which
stalls the handshake the way one byte of a head stalls HTTP.
"""

from __future__ import annotations

import errno
import resource
import selectors
import shlex
import socket
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from conformance.curl import printf_command

__all__ = [
    "IdleConnections",
    "Stalled",
    "connections_allowed",
    "stalled_requests",
]

_FILES_KEPT_FREE = 200
"""Open files this process keeps for itself (its own transport, reports, logs)."""
_CONNECTING = (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN)


def _address(base_url: str) -> tuple[tuple[str, int], bool, str]:
    """(host, port), whether the target speaks TLS, and the Host header value."""
    parts = urlsplit(base_url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or "localhost"
    return (host, port), tls, parts.netloc


def connections_allowed(wanted: int) -> int:
    """How many connections this process may hold on top of its own files, up to ``wanted``.

    Raises the soft limit on open files toward the hard limit first, as far as ``wanted``
    needs (a process may always do that for itself).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _FILES_KEPT_FREE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(0, min(wanted, soft - _FILES_KEPT_FREE))


def _open_all(
    address: tuple[str, int], count: int, timeout: float
) -> tuple[list[socket.socket], list[str]]:
    """Open ``count`` TCP connections at once; return the open ones and why others failed."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
    opened: list[socket.socket] = []
    errors: list[str] = []
    selector = selectors.DefaultSelector()
    try:
        for _ in range(count):
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as error:
                errors.append(str(error))
                break
            sock.setblocking(False)
            code = sock.connect_ex(sockaddr)
            if code == 0:
                opened.append(sock)
            elif code in _CONNECTING:
                selector.register(sock, selectors.EVENT_WRITE)
            else:
                errors.append(errno.errorcode.get(code, str(code)))
                sock.close()
        deadline = time.monotonic() + timeout
        while selector.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                sock = key.fileobj  # type: ignore[assignment]
                selector.unregister(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    opened.append(sock)
                else:
                    errors.append(errno.errorcode.get(code, str(code)))
                    sock.close()
        for key in list(selector.get_map().values()):
            errors.append(f"not connected within {timeout:g} s")
            selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
    finally:
        selector.close()
    return opened, errors


class IdleConnections:
    """``count`` connections to a target, half silent and half holding one byte of a request.

    Use as a context manager: the connections open on entry and close on exit. :attr:`opened`
    says how many did open, :attr:`errors` why the others did not.
    """

    def __init__(self, base_url: str, count: int, *, connect_timeout: float = 5.0) -> None:
        self.base_url = base_url
        self.count = count
        self.connect_timeout = connect_timeout
        self.errors: list[str] = []
        self._sockets: list[socket.socket] = []

    @property
    def opened(self) -> int:
        """How many connections opened."""
        return len(self._sockets)

    def __enter__(self) -> IdleConnections:
        address, tls, _ = _address(self.base_url)
        self._sockets, self.errors = _open_all(address, self.count, self.connect_timeout)
        first_byte = b"\x16" if tls else b"G"
        for sock in self._sockets[1::2]:
            with suppress(OSError):  # the target closed it already: it still counts as opened
                sock.send(first_byte)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection."""
        for sock in self._sockets:
            sock.close()
        self._sockets = []


@dataclass(frozen=True)
class Stalled:
    """A request that stopped halfway, and what the target did about it.

    ``closed_after`` is the seconds until the target closed the connection or answered (``None``
    if it did neither in time); ``status`` the status of the answer, if one came.
    """

    what: str
    closed_after: float | None
    status: int | None
    command: str
    """A bash command that sends the same bytes and prints what the target answers, if anything."""


def _stall_command(address: tuple[str, int], data: bytes) -> str:
    """Send ``data`` on a new connection with bash's ``/dev/tcp``, then print the answer."""
    host, port = address
    script = f"exec 3<>/dev/tcp/{host}/{port}; {printf_command(data)} >&3; time cat <&3"
    return f"bash -c {shlex.quote(script)}"


def _status_of(data: bytes) -> int | None:
    parts = data.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


def stalled_requests(base_url: str, path: str, bound: float) -> Sequence[Stalled]:
    """Send two requests that stop halfway; wait up to ``bound`` seconds for each to end.

    One is a head cut off after its first line, one a head whose body stops after 10 of its
    1,000 declared bytes. Raises ConnectionError if the connections cannot be opened at all.
    """
    address, tls, host = _address(base_url)
    heads = {
        "a request head cut off after its first line": (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n".encode()
        ),
        "a body that stops after 10 of its 1,000 declared bytes": (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
            + b'{"model":"'
        ),
    }
    if tls:  # a TLS record cut short stalls the handshake: the same stall, a layer down
        heads = {"a TLS handshake that stops after its first bytes": b"\x16\x03\x01\x02\x00\x01"}
    commands = {what: _stall_command(address, data) for what, data in heads.items()}
    opened, errors = _open_all(address, len(heads), min(bound, 10.0))
    if len(opened) < len(heads):
        for sock in opened:
            sock.close()
        reason = errors[0] if errors else "unknown"
        raise ConnectionError(f"could not connect to {address[0]}:{address[1]}: {reason}")
    started = time.monotonic()
    ends: dict[str, Stalled] = {}
    selector = selectors.DefaultSelector()
    try:
        for sock, (what, data) in zip(opened, heads.items(), strict=True):
            sock.settimeout(5.0)
            try:
                sock.sendall(data)
            except OSError:
                ends[what] = Stalled(what, 0.0, None, commands[what])
                continue
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, what)
        while selector.get_map() and (left := started + bound - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                what = key.data
                try:
                    data = key.fileobj.recv(4096)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                selector.unregister(key.fileobj)
                closed_after = time.monotonic() - started
                ends[what] = Stalled(what, closed_after, _status_of(data), commands[what])
        for what in heads:
            ends.setdefault(what, Stalled(what, None, None, commands[what]))
    finally:
        selector.close()
        for sock in opened:
            sock.close()
    return [ends[what] for what in heads]
