"""Serving the OpenAI-compatible contract: the Mimic answers rewritten where OpenAI's differ.

The server builds every answer in the Mimic contract's shape (`reference.shaping`,
`reference.errors`). With `[server] contract = "openai"` it serves `spec/openai.yaml` instead,
which differs from the Mimic contract in its routes (the router serves whatever the contract
lists) and in three shapes, rewritten here on the way out, in one place:

- every error body becomes OpenAI's `{"error": {"message", "type", "param", "code"}}`, and a
  `422` becomes a `400` whose `param` names the field its first `detail` item locates;
- a text completion becomes OpenAI's `text_completion` (choices carry `text`, no `message`);
- a text completion stream's chunks become `text_completion` chunks (no `delta`), and the error
  event of a failed stream carries the same envelope as any error.

A Falcon middleware, because Falcon runs `process_response` after its error handlers: every
answer passes through it, whatever produced it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import falcon.asgi
from falcon.asgi import SSEvent

from spec import Contract

__all__ = ["OpenAIDialect", "error_envelope", "text_completion", "text_completion_chunk"]

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}
"""OpenAI's error ``type`` by status (every other client error is ``invalid_request_error``)."""

_COMPLETIONS_TAG = "completions"


def _param(loc: Any) -> str | None:
    """The request field a 422 ``loc`` points at (``["body", "messages", 0]``: messages.0)."""
    if not isinstance(loc, list) or len(loc) < 2:
        return None
    return ".".join(str(part) for part in loc[1:])


def error_envelope(status: int, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI error body for a Mimic error ``status`` and ``body``."""
    if status == 422:
        detail = body.get("detail")
        items = [item for item in detail or () if isinstance(item, Mapping)]
        message = "; ".join(str(item.get("msg", "")) for item in items) or "invalid request"
        param = _param(items[0].get("loc")) if items else None
        return 400, _envelope(message, "invalid_request_error", param)
    if status >= 500:
        return status, _envelope(str(body.get("message") or "server error"), "server_error")
    kind = _TYPES.get(status, "invalid_request_error")
    return status, _envelope(str(body.get("error") or "error"), kind)


def _envelope(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _text_choice(choice: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "index": choice.get("index", 0),
        "text": choice.get("text", ""),
        "logprobs": choice.get("logprobs"),
        "finish_reason": choice.get("finish_reason"),
    }


def text_completion(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A Mimic text completion (``chat.completion`` with ``text``) as OpenAI's."""
    return {
        **answer,
        "object": "text_completion",
        "choices": [_text_choice(choice) for choice in answer.get("choices", ())],
    }


def text_completion_chunk(chunk: Mapping[str, Any]) -> dict[str, Any]:
    """A Mimic text completion chunk as OpenAI's (no ``delta``), or an error event's envelope."""
    if "error" in chunk:
        return error_envelope(500, chunk)[1]
    return {
        **chunk,
        "object": "text_completion",
        "choices": [_text_choice(choice) for choice in chunk.get("choices", ())],
    }


def _chat_chunk(chunk: Mapping[str, Any]) -> Mapping[str, Any]:
    return error_envelope(500, chunk)[1] if "error" in chunk else chunk


async def _rewritten(events: AsyncIterator[SSEvent], completions: bool) -> AsyncIterator[SSEvent]:
    # Holds no request or response: see reference.streaming on reference cycles.
    try:
        async for event in events:
            if isinstance(event.json, Mapping):
                shaped = (text_completion_chunk if completions else _chat_chunk)(event.json)
                yield SSEvent(json=shaped)
            else:
                yield event
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


class OpenAIDialect:
    """Falcon middleware: each answer in the OpenAI-compatible contract's shape."""

    def __init__(self, contract: Contract) -> None:
        self._contract = contract

    def _is_completions(self, req: falcon.asgi.Request) -> bool:
        found = self._contract.match(req.method, req.path)
        return found is not None and _COMPLETIONS_TAG in found[0].raw.get("tags", ())

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        """Rewrite the answer's body (or stream) where the OpenAI contract's differs."""
        media = resp.media
        status = resp.status_code
        if status >= 400 and isinstance(media, Mapping):
            resp.status, resp.media = error_envelope(status, media)
        elif resp.sse is not None:
            resp.sse = _rewritten(resp.sse, self._is_completions(req))
        elif isinstance(media, Mapping) and self._is_completions(req):
            resp.media = text_completion(media)
