"""A fault-injecting reverse proxy: the real reference server, broken in exactly one way.

The proxy forwards every request to an upstream server (the reference, with the real model) and
lets a :class:`Fault` rewrite the request, the JSON answer, or the events of a stream on the
way. It runs uvicorn in a thread on a free local port::

    with fault_proxy(upstream_url, fault) as base_url:
        ...  # base_url serves the reference's API, broken as `fault` says
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import uvicorn

from conformance.server_process import free_port
from conformance.sse import SSEParser

_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "host"})


@dataclass(frozen=True)
class ProxyRequest:
    """A request as the proxy received it (``path`` includes the query string)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def with_json(self, payload: Any) -> ProxyRequest:
        """A copy with ``payload`` as its body."""
        return replace(self, body=json.dumps(payload).encode())

    def header(self, name: str) -> str | None:
        """The first value of a header, any case."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def streams(self) -> bool:
        """Whether the request asks for a stream."""
        payload = self.json()
        return isinstance(payload, dict) and payload.get("stream") is True


@dataclass(frozen=True)
class ProxyResponse:
    """A whole (non-streamed) answer."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def with_json(self, payload: Any) -> ProxyResponse:
        """A copy with ``payload`` as its body."""
        return replace(self, body=json.dumps(payload).encode())

    def header(self, name: str) -> str | None:
        """The first value of a header, any case."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def data_events(datas: list[str]) -> list[str]:
    """The well-formed events that carry ``datas``."""
    return [f"data: {data}\n\n" for data in datas]


@dataclass(frozen=True)
class Fault:
    """One way to break a server. Every hook defaults to passing things through.

    ``on_request`` may answer by itself (return a :class:`ProxyResponse`). ``on_events`` gets
    the data of the upstream stream's events and returns the raw event blocks to send;
    ``hang_after_stream`` keeps the connection open, silent, after the last one (for the
    requests ``hang_when`` picks, if given).
    ``stream_content_type`` replaces the stream's media type. ``hang_request_when`` picks
    requests that get no answer at all (the connection stays open, silent, until the client
    leaves). ``limit_concurrency`` is uvicorn's: beyond that many connections (idle ones
    included), every request is answered 503.
    """

    on_request: Callable[[ProxyRequest], ProxyRequest | ProxyResponse] | None = None
    on_response: Callable[[ProxyRequest, ProxyResponse], ProxyResponse] | None = None
    on_events: Callable[[ProxyRequest, list[str]], list[str]] | None = None
    hang_after_stream: bool = False
    hang_when: Callable[[ProxyRequest], bool] | None = None
    stream_content_type: str | None = None
    hang_request_when: Callable[[ProxyRequest], bool] | None = None
    limit_concurrency: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _ProxyApp:
    def __init__(self, upstream: str, fault: Fault) -> None:
        self.upstream = upstream.rstrip("/")
        self.fault = fault
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # One client for the server's lifetime: building one per request costs milliseconds
        # (an SSL context each time), thousands of times per run.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=120)
        return self._client

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        headers = tuple(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _HOP_BY_HOP
        )
        request = ProxyRequest(scope["method"], path, headers, body)
        if self.fault.hang_request_when is not None and self.fault.hang_request_when(request):
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        if self.fault.on_request is not None:
            changed = self.fault.on_request(request)
            if isinstance(changed, ProxyResponse):
                await self._send_whole(send, changed)
                return
            request = changed
        upstream = self.client.build_request(
            request.method,
            self.upstream + request.path,
            headers=list(request.headers),
            content=request.body,
        )
        response = await self.client.send(upstream, stream=True)
        try:
            media = response.headers.get("content-type", "")
            answer_headers = tuple(
                (k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_BY_HOP
            )
            if media.startswith("text/event-stream"):
                await self._relay_stream(request, response, answer_headers, send, receive)
                return
            content = await response.aread()
        finally:
            await response.aclose()
        answer = ProxyResponse(response.status_code, answer_headers, content)
        if self.fault.on_response is not None:
            answer = self.fault.on_response(request, answer)
        await self._send_whole(send, answer)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _relay_stream(
        self,
        request: ProxyRequest,
        response: httpx.Response,
        headers: tuple[tuple[str, str], ...],
        send: Any,
        receive: Any,
    ) -> None:
        parser = SSEParser()
        datas: list[str] = []
        async for chunk in response.aiter_raw():
            datas += [event.data for event in parser.feed(chunk)]
        parser.finish()
        blocks = (
            self.fault.on_events(request, datas) if self.fault.on_events else data_events(datas)
        )
        if self.fault.stream_content_type:
            kept = tuple((k, v) for k, v in headers if k.lower() != "content-type")
            headers = (*kept, ("content-type", self.fault.stream_content_type))
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )
        for block in blocks:
            await send({"type": "http.response.body", "body": block.encode(), "more_body": True})
        hang = self.fault.hang_after_stream and (
            self.fault.hang_when is None or self.fault.hang_when(request)
        )
        if hang:
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _send_whole(send: Any, answer: ProxyResponse) -> None:
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in answer.headers
            if k.lower() not in _HOP_BY_HOP
        ]
        headers.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body, "more_body": False})


@contextmanager
def fault_proxy(upstream: str, fault: Fault) -> Iterator[str]:
    """Serve the upstream's API broken by ``fault`` on a free port; yield the base URL."""
    port = free_port()
    config = uvicorn.Config(
        _ProxyApp(upstream, fault),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
        limit_concurrency=fault.limit_concurrency,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"fault-proxy-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fault proxy did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
