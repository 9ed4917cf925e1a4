"""Connection hygiene for uvicorn: time limits on a request's head and body, a connection cap.

Why not uvicorn's own settings: uvicorn closes a connection that idles between requests
(``timeout_keep_alive``), but a connection that never sends a request, sends its head one byte
at a time, or stops in the middle of its body is kept forever; 20,000 connections that sent
only ``G`` used every file descriptor of the reference, after which no request was served and
asyncio logged a traceback per refused accept. Its ``limit_concurrency`` answers a complete
request with 503 once the limit is reached, which does nothing against connections that never
complete one. So `guarded_protocol` extends uvicorn's h11 protocol with:

- a head deadline: a request's head must be complete `ConnectionLimits.head_timeout` seconds
  after the connection opened, or after the first byte of a following request;
- a body deadline: a request body may go `ConnectionLimits.body_timeout` seconds without a
  byte (unless the server itself paused reading);
- a cap on open connections, `ConnectionLimits.max_connections`: one more closes the connection
  that has waited longest for a request head, or, if every connection is busy with a request,
  the new one. Silent connections cannot lock out a client that sends a request.

A connection past a deadline is closed without an answer: its client is not speaking HTTP at
a useful pace, and an answer would be one more write to a peer that does not read.
`RateLimitFilter` keeps such events (and asyncio's accept errors) from flooding the log. The
server speaks HTTP/1.1 through h11 alone, with or without httptools installed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "RateLimitFilter", "guarded_protocol", "limits_for"]

logger = logging.getLogger("mimic.reference.connections")

#: File descriptors kept free of connections: model files, logs, the proof's pipes.
_SPARE_DESCRIPTORS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """The `[server]` limits on connections (seconds, and a count)."""

    head_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000


def limits_for(head_timeout: float, body_timeout: float, max_connections: int) -> ConnectionLimits:
    """The limits as configured, with fewer connections if the process may open fewer files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = max_connections
    if soft != resource.RLIM_INFINITY:
        usable = max(1, min(max_connections, soft - _SPARE_DESCRIPTORS))
    if usable < max_connections:
        logger.warning(
            "max_connections %d: this process may open fewer files; using %d",
            max_connections,
            usable,
        )
    return ConnectionLimits(head_timeout, body_timeout, usable)


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The h11 protocol of uvicorn with ``limits`` applied, for ``uvicorn.Config(http=...)``."""
    #: Connections waiting for a request's head, longest-waiting first (dicts keep order).
    waiting: dict[GuardedH11Protocol, None] = {}

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline: asyncio.TimerHandle | None = None
            waiting[self] = None
            self._arm(limits.head_timeout, "its request head")
            if len(self.connections) > limits.max_connections:
                self._shed()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self._waiting_for_head():
                if self._deadline is None:  # the first byte of a next request
                    self._arm(limits.head_timeout, "its request head")
            else:
                waiting.pop(self, None)
                if self._in_body():
                    self._arm(limits.body_timeout, "the next byte of its body")
                else:
                    self._disarm()

        def on_response_complete(self) -> None:
            # Between requests, uvicorn's keep-alive timeout applies until the next byte.
            self._disarm()
            super().on_response_complete()
            if self._waiting_for_head() and not self.transport.is_closing():
                waiting.pop(self, None)
                waiting[self] = None  # waits again, from now: to the end of the line

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            waiting.pop(self, None)
            super().connection_lost(exc)

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _in_body(self) -> bool:
            return self.conn.their_state is h11.SEND_BODY

        def _arm(self, seconds: float, awaited: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire, seconds, awaited)

        def _disarm(self) -> None:
            if getattr(self, "_deadline", None) is not None:
                self._deadline.cancel()  # type: ignore[union-attr]
                self._deadline = None

        def _expire(self, seconds: float, awaited: str) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self._in_body() and self.flow.read_paused:
                self._arm(seconds, awaited)  # the server is not reading: not the client's fault
                return
            if not (self._waiting_for_head() or self._in_body()):
                return
            logger.info("closed a connection that waited %g s for %s", seconds, awaited)
            self.transport.close()

        def _shed(self) -> None:
            victim = next((c for c in waiting if c is not self), self)
            waiting.pop(victim, None)
            logger.warning(
                "more than %d connections: closed %s",
                limits.max_connections,
                "the new one" if victim is self else "the one that waited longest for a request",
            )
            victim.transport.close()

    return GuardedH11Protocol


class RateLimitFilter(logging.Filter):
    """Lets through one record per message template per ``interval`` seconds.

    The next record let through says how many were held back. Attach it to a logger whose
    records an attacker can cause at will.
    """

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[Any, float] = {}
        self._held: dict[Any, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` goes out; it carries the count held back before it, if any."""
        # The first line only: asyncio's error messages go on with the socket's own details.
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self._interval:g} s)"
        return True
