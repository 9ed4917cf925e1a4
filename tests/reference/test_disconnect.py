"""`CancelOnDisconnect`: a request whose client leaves before the response is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

from reference.disconnect import CancelOnDisconnect

Message = MutableMapping[str, Any]
HTTP_SCOPE = {"type": "http", "method": "POST", "path": "/v1/completions"}


class Client:
    """The server side of one connection: what the app may receive, and what it sent."""

    def __init__(self, *messages: Message) -> None:
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        for message in messages:
            self.inbox.put_nowait(message)
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})


BODY = {"type": "http.request", "body": b"{}", "more_body": False}


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def test_a_client_gone_before_the_response_cancels_the_app() -> None:
    events: list[str] = []

    async def generating_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        events.append("generating")
        try:
            await asyncio.Event().wait()  # a generation that never ends by itself
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def scenario() -> None:
        client = Client(BODY)
        served = asyncio.create_task(
            CancelOnDisconnect(generating_app)(HTTP_SCOPE, client.receive, client.send)
        )
        while events != ["generating"]:
            await asyncio.sleep(0)
        client.leave()
        await served  # returns: nobody is left to answer, and no error escapes
        assert client.sent == []

    run(scenario())
    assert events == ["generating", "cancelled"]


def test_a_started_response_is_left_to_the_app_which_hears_the_disconnect() -> None:
    heard: list[Message] = []

    async def streaming_app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        heard.append(await receive())  # Falcon's SSE watcher does this
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def scenario() -> Client:
        client = Client(BODY)
        served = asyncio.create_task(
            CancelOnDisconnect(streaming_app)(HTTP_SCOPE, client.receive, client.send)
        )
        while not client.sent:
            await asyncio.sleep(0)
        client.leave()
        await served
        return client

    client = run(scenario())
    assert heard == [{"type": "http.disconnect"}]
    assert [message["type"] for message in client.sent] == [
        "http.response.start",
        "http.response.body",
    ]


def test_a_body_in_several_parts_reaches_the_app_whole() -> None:
    received: list[bytes] = []

    async def echo_app(scope: Any, receive: Any, send: Any) -> None:
        more = True
        while more:
            message = await receive()
            received.append(message["body"])
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"".join(received)})

    client = Client(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    )
    run(CancelOnDisconnect(echo_app)(HTTP_SCOPE, client.receive, client.send))
    assert received == [b"ab", b"cd"]
    assert client.sent[-1]["body"] == b"abcd"


def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    run(CancelOnDisconnect(app)({"type": "lifespan"}, Client().receive, Client().send))
    assert seen == ["lifespan"]
