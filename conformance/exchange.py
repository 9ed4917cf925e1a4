"""The values of one HTTP exchange: the request, what came back, and why it stopped.

Plain data, kept apart from :mod:`conformance.transport` (the module that does the HTTP) so
that whatever reads exchanges (the checks, the evidence of :mod:`conformance.results`, curl
commands, the run's liveness and patience) depends on these values only. A
:class:`RequestSpec` is one request as sent and recorded; an :class:`Exchange` is that request
and whatever came back (or the :class:`TransportFailure` that says why nothing complete did); a
:class:`StreamResult` is a streamed answer read event by event; a :class:`BodyChunk` one piece
of a body as it arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from conformance.sse import Deviation, Event

__all__ = [
    "BodyChunk",
    "EndReason",
    "Exchange",
    "FailureKind",
    "HeaderPairs",
    "RequestSpec",
    "ResponseNotJSONError",
    "StreamResult",
    "TransportFailure",
    "find_header",
    "header_pairs",
]

FailureKind: TypeAlias = Literal["connect", "timeout", "reset", "too-large", "protocol", "other"]
"""Why a request got no complete answer: see :class:`TransportFailure`."""
EndReason: TypeAlias = Literal["eof", "deadline", "stalled", "too-large", "error", "stopped"]
"""What ended the reading of a body: see :class:`StreamResult`."""
HeaderPairs: TypeAlias = tuple[tuple[str, str], ...]
"""Headers as (name, value) pairs, in order, duplicates kept."""

_STREAM_MEDIA_TYPE = "text/event-stream"


def header_pairs(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> HeaderPairs:
    """``headers`` as pairs of strings, in order; ValueError for a name or value HTTP forbids."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs = tuple((str(name), str(value)) for name, value in items)
    for name, value in pairs:
        if not name or any(char in name for char in "\r\n:") or name != name.strip():
            raise ValueError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} has a line break in its value")
    return pairs


def find_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case) among ``headers``, or ``None``."""
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, as sent and as recorded in evidence and curl commands.

    ``url`` is absolute, or a path that a :class:`~conformance.transport.Transport` resolves
    against its base URL. ``headers`` may be given as a mapping or pairs; it is stored as a tuple
    of pairs, in order, duplicates kept.
    """

    method: str
    url: str
    headers: HeaderPairs = ()
    body: bytes | None = None
    body_source: str | None = None
    """A short shell command that writes ``body`` to its standard output, for a body too large
    to quote (a flood of a million items): the request's curl command then reads it from there."""

    def __post_init__(self) -> None:
        if not self.method or not self.method.isascii() or not self.method.isalpha():
            raise ValueError(f"invalid HTTP method {self.method!r}")
        if not self.url:
            raise ValueError("a request needs a URL or a path")
        object.__setattr__(self, "headers", header_pairs(self.headers))
        if self.body is not None and not isinstance(self.body, bytes):
            if not isinstance(self.body, bytearray | memoryview):
                raise TypeError(f"body must be bytes or None, not {type(self.body).__name__}")
            object.__setattr__(self, "body", bytes(self.body))
        if self.body_source is not None and self.body is None:
            raise ValueError("body_source describes a body, and the request has none")

    @classmethod
    def json(
        cls,
        method: str,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> RequestSpec:
        """Build a request with ``payload`` as compact UTF-8 JSON and a JSON ``Content-Type``."""
        pairs = header_pairs(headers)
        if find_header(pairs, "content-type") is None:
            pairs = (("Content-Type", "application/json"), *pairs)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(method, url, pairs, body)

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (any case), or ``None``."""
        return find_header(self.headers, name)

    def with_default_headers(
        self, defaults: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> RequestSpec:
        """Return a copy with each default header added unless the request already has it."""
        extra = tuple(pair for pair in header_pairs(defaults) if self.header(pair[0]) is None)
        return self if not extra else replace(self, headers=(*self.headers, *extra))

    def json_body(self) -> Any:
        """Return the body parsed as JSON, or ``None`` if there is none or it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def expects_stream(self) -> bool:
        """Whether the request asks for an event stream (``"stream": true`` or its ``Accept``)."""
        payload = self.json_body()
        if isinstance(payload, dict) and payload.get("stream") is True:
            return True
        return _STREAM_MEDIA_TYPE in (self.header("accept") or "")


@dataclass(frozen=True)
class TransportFailure:
    """Why a request got no complete answer: ``kind`` is a stable code, ``message`` is for people.

    Kinds: ``connect`` (no connection), ``timeout`` (the overall deadline passed), ``reset``
    (the connection dropped: reset, or closed before the response was complete),
    ``too-large`` (the body passed the size cap), ``protocol`` (the answer is not HTTP, or is
    broken HTTP), ``other`` (anything else, including a bad URL).
    """

    kind: FailureKind
    message: str


class ResponseNotJSONError(ValueError):
    """Raised by :meth:`Exchange.json` when the response has no complete JSON body."""


@dataclass
class Exchange:
    """A request and whatever came back: status and headers if they arrived, the body (capped).

    ``headers`` keeps the server's order and spelling. ``truncated`` says the body was cut (size
    cap). ``elapsed`` is seconds from the start of the request to the end of the body,
    ``head_elapsed`` to the response head, and ``longest_silence`` the longest wait for a piece
    of the body that did arrive. ``failure`` is ``None`` exactly when a complete response
    arrived.
    """

    request: RequestSpec
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    truncated: bool = False
    elapsed: float = 0.0
    failure: TransportFailure | None = None
    head_elapsed: float | None = None
    longest_silence: float = 0.0

    def header(self, name: str) -> str | None:
        """Return the first value of response header ``name`` (any case), or ``None``."""
        return find_header(self.headers, name)

    @property
    def media_type(self) -> str | None:
        """The response's media type, lower-cased and without parameters (``None`` if absent)."""
        content_type = self.header("content-type")
        return content_type.split(";", 1)[0].strip().lower() if content_type else None

    def json(self) -> Any:
        """Return the body parsed as JSON; raise :class:`ResponseNotJSONError` saying why not."""
        where = f"{self.request.method} {self.request.url}"
        if self.failure is not None:
            raise ResponseNotJSONError(f"{where}: no complete response ({self.failure.message})")
        try:
            return json.loads(self.body)
        except ValueError as error:
            excerpt = self.body[:200].decode("utf-8", "replace")
            raise ResponseNotJSONError(
                f"{where}: the body of the {self.status} response is not JSON "
                f"(Content-Type {self.header('content-type')!r}; {error}): {excerpt!r}"
            ) from None


@dataclass(frozen=True)
class BodyChunk:
    """A piece of a response body and when it arrived (seconds since the request started)."""

    data: bytes
    received_at: float


@dataclass
class StreamResult:
    """A streamed response read event by event (see ``Transport.stream_events``).

    ``events`` are numbered in arrival order and stamped with their arrival time;
    ``deviations`` come from :class:`conformance.sse.SSEParser`; ``ended_by`` says whether the
    server ended the stream (``eof``) or the deadline, the bound on silence (``stalled``), the
    size cap or an error did.
    """

    exchange: Exchange
    events: list[Event]
    deviations: list[Deviation]
    ended_by: EndReason
    parsed: bool
    """Whether the body was parsed as an event stream at all (only 2xx responses are)."""
    deviations_dropped: int = 0
    """Deviations found beyond the parser's cap and not kept in ``deviations``."""

    @property
    def raw(self) -> bytes:
        """The body as received (capped)."""
        return self.exchange.body
