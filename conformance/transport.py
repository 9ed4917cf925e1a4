"""Bounded HTTP against any target, hostile ones included.

Against a target that never answers, never ends a stream, sends gigabytes or sends garbage, the
suite reports and moves on within bounded time. :class:`Transport` makes that a property of
every request: one overall deadline covers connecting, sending, the response head and the whole
body, streams included, and the body is capped in size. Two optional, tighter bounds serve a
target already seen to hang: ``head_timeout`` (seconds until the response head) and
``idle_timeout`` (seconds of silence allowed between two pieces of the body; a body cut by it
ends ``stalled``). Transport problems never raise; they come back as a
:class:`TransportFailure` on the :class:`Exchange`. Those values (requests, exchanges, failures,
stream results) live in :mod:`conformance.exchange`; this module re-exports them.

Why not httpx's own timeouts: they bound each network operation, not the request. A server that
trickles one byte every 100 ms never trips a 1 s read timeout and keeps a reader busy forever.
So the network layer (an ``httpcore`` network backend, httpcore's public extension point) clamps
every connect, read and write to the time left before the deadline, and refuses to start one
once it has passed. httpx does not let a ``Client`` choose its network backend (encode/httpx
PR #3749 is still open), which is why :class:`_BoundedTransport` builds the ``httpcore``
connection pool itself.

The request sent is exactly the :class:`RequestSpec`'s headers and body, plus ``Host`` and
``Content-Length``: no ``Accept-Encoding``, ``User-Agent`` or other client defaults, so that the
curl command in a report reproduces what the server saw, and bodies arrive as the server sent
them (never decompressed: nobody asked for compression).
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

import httpcore
import httpx

from conformance.exchange import (
    BodyChunk,
    EndReason,
    Exchange,
    FailureKind,
    HeaderPairs,
    RequestSpec,
    ResponseNotJSONError,
    StreamResult,
    TransportFailure,
    header_pairs,
)
from conformance.sse import Event, SSEParser

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_TIMEOUT",
    "BodyChunk",
    "BodyStream",
    "EndReason",
    "Exchange",
    "FailureKind",
    "HeaderPairs",
    "ProbeResult",
    "RequestSpec",
    "ResponseNotJSONError",
    "StreamResult",
    "Transport",
    "TransportFailure",
    "probe",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds allowed for one whole request, body included."""
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
"""Bytes of body kept before the response is cut off as too large."""
DEFAULT_MAX_EVENTS = 10_000
"""Events parsed from one stream before it is cut off as too large."""

_KEEPALIVE_EXPIRY = 1.0


# -- the deadline, enforced in the network layer ------------------------------------------

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "mimic_conformance_deadline", default=None
)


def _clamp(timeout: float | None, expired: type[Exception]) -> float | None:
    """Shorten one network operation's timeout to the time left before the deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise expired("the request's overall deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


_STATUS_LINE_PREFIX = b"HTTP/"


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose operations end by the deadline, and which spots non-HTTP answers.

    h11 buffers a response head until its blank line, so a server that answers with anything
    but HTTP (an SSH banner, say) and then waits would look like a timeout. Every HTTP/1.x
    response starts with ``HTTP/``, so the first bytes read after a request settle it at once.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._answer_start: bytes | None = None  # first bytes of an answer not yet seen as HTTP

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._stream.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))
        if self._answer_start is not None and data:
            start = (self._answer_start + data)[: len(_STATUS_LINE_PREFIX)]
            if not _STATUS_LINE_PREFIX.startswith(start):
                raise httpcore.RemoteProtocolError(
                    f"the answer does not start with 'HTTP/': {(self._answer_start + data)[:60]!r}"
                )
            self._answer_start = None if start == _STATUS_LINE_PREFIX else start
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout, httpcore.WriteTimeout))
        self._answer_start = b""

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _BoundedTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool whose network layer honours the deadline.

    httpcore's exceptions are not mapped to httpx's: :func:`_classify` reads both families.
    """

    def __init__(self, *, verify: bool) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            network_backend=_DeadlineBackend(),
            # A server may close an idle connection just as a request goes out on it, which
            # would look like its fault. Servers' idle timeouts go down to 2 s (gunicorn), so
            # only connections idle for less than 1 s are reused.
            keepalive_expiry=_KEEPALIVE_EXPIRY,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._pool.handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=cast(Iterable[bytes], request.stream),
                extensions=request.extensions,
            )
        )
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(cast(Iterable[bytes], response.stream)),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


_RESET_ERRORS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
_DISCONNECT_PHRASES = ("peer closed connection", "server disconnected")


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _classify(error: Exception, timeout: float) -> TransportFailure:
    """Turn an httpx or httpcore exception into a failure kind and a message for people."""
    detail = str(error) or type(error).__name__
    if isinstance(error, httpcore.ConnectTimeout | httpx.ConnectTimeout):
        return TransportFailure("connect", f"could not connect within {timeout:g} s")
    if isinstance(error, httpcore.ConnectError | httpx.ConnectError):
        return TransportFailure("connect", f"could not connect: {detail}")
    if isinstance(error, httpcore.TimeoutException | httpx.TimeoutException):
        return TransportFailure("timeout", f"no complete response within {timeout:g} s")
    if any(isinstance(cause, _RESET_ERRORS) for cause in _causes(error)):
        return TransportFailure("reset", f"the connection was reset: {detail}")
    if isinstance(error, httpcore.RemoteProtocolError | httpx.RemoteProtocolError):
        if any(phrase in detail.lower() for phrase in _DISCONNECT_PHRASES):
            return TransportFailure("reset", f"the connection closed early: {detail}")
        return TransportFailure("protocol", f"the response is not valid HTTP/1.1: {detail}")
    if isinstance(error, httpcore.NetworkError | httpx.NetworkError):
        return TransportFailure("reset", f"the connection broke: {detail}")
    if isinstance(error, httpcore.ProtocolError | httpx.ProtocolError | httpx.DecodingError):
        return TransportFailure("protocol", f"the response is not valid HTTP: {detail}")
    return TransportFailure("other", f"{type(error).__name__}: {detail}")


def _end_reason(failure: TransportFailure | None) -> EndReason:
    if failure is None:
        return "eof"
    if failure.kind == "timeout":
        return "deadline"
    if failure.kind == "too-large":
        return "too-large"
    return "error"


# -- the public client ----------------------------------------------------------------------


class BodyStream:
    """An open response whose body is read chunk by chunk, all within the request's deadline.

    Get one from :meth:`Transport.stream`. ``exchange`` carries the status and headers as soon
    as the response head has arrived (or the failure, if it did not); iterating yields
    :class:`BodyChunk` objects and never raises for transport problems. When iteration ends,
    ``ended_by`` says why and ``exchange`` holds the (capped) body and the elapsed time.
    ``head_timeout`` bounds the wait for the response head and ``idle_timeout`` the silence
    between two pieces of the body, both within the overall ``timeout``.
    """

    def __init__(
        self,
        client: httpx.Client,
        request: RequestSpec,
        timeout: float,
        max_body_bytes: int,
        *,
        head_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self.exchange = Exchange(request=request)
        self.ended_by: EndReason | None = None
        self._timeout = timeout
        self._head_timeout = head_timeout
        self._idle_timeout = idle_timeout
        self._max_body_bytes = max_body_bytes
        self._started = time.monotonic()
        self._deadline = self._started + timeout
        self._body = bytearray()
        self._response: httpx.Response | None = None
        self._open(client)

    @property
    def received(self) -> bytes:
        """The body bytes received so far (capped)."""
        return bytes(self._body)

    def elapsed(self) -> float:
        """Seconds since the request started."""
        return time.monotonic() - self._started

    def _open(self, client: httpx.Client) -> None:
        request = self.exchange.request
        head_deadline = self._deadline
        if self._head_timeout is not None:
            head_deadline = min(head_deadline, self._started + self._head_timeout)
        token = _deadline.set(head_deadline)
        try:
            http_request = httpx.Request(
                request.method,
                request.url,
                headers=list(request.headers),
                content=request.body,
                extensions={"timeout": httpx.Timeout(self._timeout).as_dict()},
            )
            self._response = client.send(http_request, stream=True)
        except Exception as error:
            head_bound = self._head_timeout if head_deadline < self._deadline else None
            failure = _classify(error, head_bound or self._timeout)
            if failure.kind == "timeout" and head_bound is not None:
                failure = TransportFailure("timeout", f"no response head within {head_bound:g} s")
            self._finish(failure)
            return
        finally:
            _deadline.reset(token)
        self.exchange.status = self._response.status_code
        self.exchange.head_elapsed = self.elapsed()
        self.exchange.headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in self._response.headers.raw
        ]

    def __iter__(self) -> Iterator[BodyChunk]:
        if self._response is None or self.ended_by is not None:
            return
        chunks = self._response.iter_raw()
        while self.ended_by is None:
            deadline = self._deadline
            if self._idle_timeout is not None:
                deadline = min(deadline, time.monotonic() + self._idle_timeout)
            token = _deadline.set(deadline)
            waiting_since = time.monotonic()
            try:
                data = next(chunks)
            except StopIteration:
                self._finish(None)
                return
            except Exception as error:
                failure = _classify(error, self._timeout)
                if failure.kind == "timeout" and deadline < self._deadline:
                    failure = TransportFailure(
                        "timeout", f"nothing arrived for {self._idle_timeout:g} s"
                    )
                    self._finish(failure, stalled=True)
                else:
                    self._finish(failure)
                return
            finally:
                _deadline.reset(token)
            received_at = self.elapsed()
            silence = time.monotonic() - waiting_since
            self.exchange.longest_silence = max(self.exchange.longest_silence, silence)
            room = self._max_body_bytes - len(self._body)
            if len(data) > room:
                self._body += data[:room]
                if room:
                    yield BodyChunk(data[:room], received_at)
                self.cut_off(f"the body passed the {self._max_body_bytes} byte cap")
                return
            self._body += data
            if data:
                yield BodyChunk(data, received_at)

    def cut_off(self, message: str) -> None:
        """Stop reading because the response is too large; record a ``too-large`` failure."""
        self.exchange.truncated = True
        self._finish(TransportFailure("too-large", message))

    def close(self) -> None:
        """Release the connection; if the body was not read to its end, ``ended_by`` is "stopped".

        A stopped exchange has no ``failure`` but an incomplete body.
        """
        if self.ended_by is None:
            self._finish(None, stopped=True)

    def _finish(
        self, failure: TransportFailure | None, *, stopped: bool = False, stalled: bool = False
    ) -> None:
        if self.ended_by is not None:
            return
        self.ended_by = "stopped" if stopped else "stalled" if stalled else _end_reason(failure)
        self.exchange.failure = failure
        self.exchange.body = bytes(self._body)
        self.exchange.elapsed = self.elapsed()
        if self._response is not None:
            self._response.close()


class Transport:
    """A synchronous HTTP client whose every request ends within ``timeout`` seconds.

    ``base_url`` resolves requests given as paths; ``headers`` (authentication, say) are added
    to every request that lacks them, and recorded with it. Use it as a context manager, or
    call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_events: int = DEFAULT_MAX_EVENTS,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        verify: bool = True,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an absolute http(s) URL, not {base_url!r}")
        _check_timeout(timeout)
        if max_body_bytes < 1 or max_events < 1:
            raise ValueError("max_body_bytes and max_events must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.max_events = max_events
        self.headers = header_pairs(headers)
        self._client = httpx.Client(transport=_BoundedTransport(verify=verify))

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def prepare(self, request: RequestSpec) -> RequestSpec:
        """Return ``request`` with an absolute URL and the default headers, as it will be sent."""
        url = request.url
        if not url.startswith(("http://", "https://")):
            url = self.base_url + ("" if url.startswith("/") else "/") + url
        return replace(request, url=url).with_default_headers(self.headers)

    def send(
        self,
        request: RequestSpec,
        *,
        timeout: float | None = None,
        head_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> Exchange:
        """Send ``request`` and read the whole response; never raises for transport problems.

        ``timeout`` (default the transport's) bounds the whole exchange; ``head_timeout`` and
        ``idle_timeout``, if given, bound the wait for the response head and the silence between
        two pieces of the body.
        """
        with self.stream(
            request, timeout=timeout, head_timeout=head_timeout, idle_timeout=idle_timeout
        ) as body:
            for _ in body:
                pass
        return body.exchange

    @contextmanager
    def stream(
        self,
        request: RequestSpec,
        *,
        timeout: float | None = None,
        head_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> Iterator[BodyStream]:
        """Open ``request`` and yield a :class:`BodyStream` to read its body chunk by chunk.

        The deadline (``timeout``, default the transport's) covers the whole exchange, so a
        server that never ends a stream, or trickles it, is cut off at the deadline. A body
        silent for ``idle_timeout`` seconds is cut off as ``stalled`` sooner.
        """
        effective = self.timeout if timeout is None else _check_timeout(timeout)
        body = BodyStream(
            self._client,
            self.prepare(request),
            effective,
            self.max_body_bytes,
            head_timeout=None if head_timeout is None else _check_timeout(head_timeout),
            idle_timeout=None if idle_timeout is None else _check_timeout(idle_timeout),
        )
        try:
            yield body
        finally:
            body.close()

    def stream_events(
        self,
        request: RequestSpec,
        *,
        timeout: float | None = None,
        head_timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> StreamResult:
        """Send ``request`` and parse a 2xx body as server-sent events as they arrive.

        A non-2xx response is read whole and not parsed (``parsed`` is False). The stream is
        read until the server ends it, the deadline passes, the body stays silent for
        ``idle_timeout``, the body or the event count passes its cap, or the connection fails.
        An event left unterminated is reported as a deviation only when the server ended the
        stream, not when the suite cut it off.
        """
        parser = SSEParser()
        events: list[Event] = []
        with self.stream(
            request, timeout=timeout, head_timeout=head_timeout, idle_timeout=idle_timeout
        ) as body:
            status = body.exchange.status
            parsed = status is not None and 200 <= status < 300
            for chunk in body:
                if not parsed:
                    continue
                events += parser.feed(chunk.data, chunk.received_at)
                if len(events) > self.max_events:
                    del events[self.max_events :]
                    body.cut_off(f"the stream passed the {self.max_events} event cap")
                    break
        assert body.ended_by is not None
        if parsed and body.ended_by in ("eof", "error"):
            parser.finish()
        return StreamResult(
            body.exchange,
            events,
            parser.deviations,
            body.ended_by,
            parsed,
            parser.deviations_dropped,
        )


def _check_timeout(timeout: float) -> float:
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


@dataclass(frozen=True)
class ProbeResult:
    """What one ``GET {base}/v1/models`` says about a target.

    ``kind`` is ``unreachable`` (no connection), ``not-http`` (connected, but no HTTP answer
    in time) or ``http`` (it answered HTTP, whatever the status); ``message`` is one line for
    people.
    """

    kind: Literal["unreachable", "not-http", "http"]
    message: str
    exchange: Exchange

    @property
    def answers_http(self) -> bool:
        """Whether the target answered HTTP at all."""
        return self.kind == "http"


def probe(
    base_url: str,
    timeout: float = 5.0,
    *,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    verify: bool = True,
) -> ProbeResult:
    """Tell whether ``base_url`` is unreachable, not HTTP, or answers HTTP, in one request."""
    with Transport(base_url, timeout=timeout, headers=headers, verify=verify) as transport:
        exchange = transport.send(RequestSpec("GET", "/v1/models"))
    where = exchange.request.url
    failure = exchange.failure
    if exchange.status is not None:
        note = f" (then {failure.message})" if failure is not None else ""
        return ProbeResult("http", f"{where} answered HTTP {exchange.status}{note}", exchange)
    assert failure is not None
    if failure.kind == "connect":
        return ProbeResult("unreachable", f"{where} is unreachable: {failure.message}", exchange)
    return ProbeResult(
        "not-http",
        f"{where} accepted a connection but gave no HTTP answer: {failure.message}",
        exchange,
    )
