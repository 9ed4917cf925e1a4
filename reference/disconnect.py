"""Cancel a request whose client has gone away before its response started.

A streamed response notices a lost client when Falcon's SSE writer fails or its disconnect
watcher fires. A plain JSON response does not: the responder awaits the whole generation, and
neither Falcon nor uvicorn interrupts it when the connection drops, so a client that gave up
would keep the model busy for up to ``max_tokens`` more tokens while others wait. This ASGI
wrapper listens for ``http.disconnect`` once the request body has been read, and cancels the
request's task if the response has not started; the cancellation reaches the generation through
the scheduler, which stops it within a token and frees the model.

No library does this for Falcon's ASGI app (Starlette's ``is_disconnected`` needs polling from
the handler, and Falcon only watches for disconnects while it streams), so it is written here.
Only one task may await the server's ``receive`` at a time: the wrapper owns that call, and the
app's own later ``receive`` calls (Falcon's SSE disconnect watcher) are answered from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["CancelOnDisconnect"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("mimic.reference.access")


class CancelOnDisconnect:
    """Wrap an ASGI app so that an HTTP request is cancelled when its client leaves early.

    Once the response has started (headers sent), the app is left alone: a stream ends through
    Falcon's own handling of a failed send or of the disconnect message it receives from here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope``; HTTP requests run in a task the disconnect watcher may cancel."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _Exchange(self.app, scope, receive, send).run()


class _Exchange:
    """One HTTP request: relays ``receive`` and ``send``, and watches for the client leaving."""

    def __init__(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        self._app = app
        self._scope = scope
        self._receive = receive
        self._send = send
        self._body_done = False
        self._response_started = False
        self._gone: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._watcher: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self._task = asyncio.current_task()
        try:
            await self._app(self._scope, self._relay_receive, self._relay_send)
        except asyncio.CancelledError:
            if not self._left_early():
                raise
            # The client left before any response: there is nobody to answer.
            logger.info(
                "%s %s client gone before the response; generation cancelled",
                self._scope.get("method", "-"),
                self._scope.get("path", "-"),
            )
        finally:
            if self._watcher is not None:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watcher

    def _left_early(self) -> bool:
        return self._gone.done() and not self._response_started

    async def _relay_receive(self) -> Message:
        if self._body_done:
            # The watcher owns the server's receive now; a disconnect is all that can come.
            return await asyncio.shield(self._gone)
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._settle(message)
        elif not message.get("more_body", False):
            self._body_done = True
            self._watcher = asyncio.create_task(self._watch())
        return message

    async def _relay_send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._response_started = True
        await self._send(message)

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._settle(message)
                if not self._response_started and self._task is not None:
                    self._task.cancel()
                return

    def _settle(self, message: Message) -> None:
        if not self._gone.done():
            self._gone.set_result(message)
