"""The official-client checks, on answers made up here and read by the real ``openai`` package."""

from __future__ import annotations

import json
from typing import Any

from conformance.checks.sdk import (
    check_chat_plain,
    check_error_raised,
    check_models,
    check_stream_matches,
    read_chat_stream,
)
from conformance.exchange import Exchange, RequestSpec
from conformance.sse import parse

RID = "SDK-X"
JSON = [("content-type", "application/json")]
SSE = [("content-type", "text/event-stream")]


def answer(status: int, body: Any, headers: list[tuple[str, str]] = JSON) -> Exchange:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Exchange(RequestSpec("POST", "http://t/v1/chat/completions"), status, headers, data)


def completion(**message: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "mythomax",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", **message},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mythomax",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
TOOL_STREAM = [
    chunk({"role": "assistant", "content": None}),
    chunk({"tool_calls": [{"index": 0, **CALL}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, "tool_calls"),
    {
        **chunk({}),
        "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    },
]


def stream_of(chunks: list[dict[str, Any]]) -> tuple[Exchange, list[Any]]:
    raw = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    events, _ = parse(raw.encode())
    return answer(200, raw.encode(), SSE), events


def test_a_valid_chat_completion_passes_and_a_wrong_role_fails() -> None:
    assert check_chat_plain(RID, answer(200, completion())) == []
    (finding,) = check_chat_plain(RID, answer(200, completion(role="bot")))
    assert "not a valid openai ChatCompletion" in finding.message and "role" in finding.message


def test_a_tool_call_stream_accumulates_into_the_call() -> None:
    exchange, events = stream_of(TOOL_STREAM)
    final, findings = read_chat_stream(RID, exchange, events)
    assert findings == []
    call = final.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city": "Paris"}')


def test_a_tool_call_delta_without_index_crashes_the_client() -> None:
    chunks = json.loads(json.dumps(TOOL_STREAM))
    for item in chunks[1:4]:
        del item["choices"][0]["delta"]["tool_calls"][0]["index"]
    final, findings = read_chat_stream(RID, *stream_of(chunks))
    assert final is None
    assert "The openai client failed on the stream" in findings[0].message
    assert findings[1].event_numbers == (2,)  # and the chunk is not a valid ChatCompletionChunk


def test_a_usage_chunk_without_choices_crashes_the_client() -> None:
    chunks = json.loads(json.dumps(TOOL_STREAM))
    del chunks[-1]["choices"]
    final, findings = read_chat_stream(RID, *stream_of(chunks))
    assert final is None and findings


def test_the_accumulated_stream_is_compared_with_the_plain_answer() -> None:
    final, _ = read_chat_stream(RID, *stream_of(TOOL_STREAM))
    calls = [{**CALL, "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    plain = completion(content=None, tool_calls=calls)
    plain["choices"][0]["finish_reason"] = "tool_calls"
    assert check_stream_matches(RID, final, plain) == []
    plain["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"city": "London"}'
    (finding,) = check_stream_matches(RID, final, plain)
    assert "tool calls" in finding.message


def test_model_entries_must_be_models() -> None:
    entry = {"id": "mythomax", "object": "model", "created": 1, "owned_by": "mimic"}
    assert check_models(RID, answer(200, {"object": "list", "data": [entry]})) == []
    del entry["created"]
    (finding,) = check_models(RID, answer(200, {"object": "list", "data": [entry]}))
    assert "Entry 0" in finding.message and "created" in finding.message


def test_an_error_raises_the_status_error_with_its_message() -> None:
    body = {"error": "model 'x' is not served here", "errorCode": 404, "code": 404}
    assert check_error_raised(RID, answer(404, body), "x", kind="chat", stream=False) == []
    assert (
        check_error_raised(RID, answer(422, {"detail": []}), "x", kind="models", stream=False) == []
    )
    (finding,) = check_error_raised(RID, answer(404, b""), "a bad model", kind="chat", stream=True)
    assert "holds no message" in finding.message


def test_a_stream_request_that_fails_must_not_be_a_200_stream() -> None:
    error = {"error": {"message": "invalid", "type": "invalid_request_error"}}
    raw = f"data: {json.dumps(error)}\n\ndata: [DONE]\n\n".encode()
    (finding,) = check_error_raised(
        RID, answer(200, raw, SSE), "an invalid stream", kind="chat", stream=True
    )
    assert "raised APIError while reading the stream" in finding.message
