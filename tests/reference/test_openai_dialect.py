"""The OpenAI mode's rewrites: each Mimic answer becomes one the OpenAI contract documents."""

from __future__ import annotations

from typing import Any

import pytest

import spec
from reference.errors import APIError, RequestValidationError, internal_error_body
from reference.openai_dialect import error_envelope, text_completion, text_completion_chunk

OPENAI = spec.contract("openai")
MIMIC = spec.contract()
COMPLETIONS = OPENAI.operation("createCompletion")
CHAT = OPENAI.operation("createChatCompletion")


def _valid(operation: spec.Operation, status: int, body: Any) -> list[str]:
    validator = OPENAI.response_validator(operation, status)
    assert validator is not None
    return [error.message for error in validator.iter_errors(body)]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 429, 500])
def test_every_error_becomes_the_envelope(status: int) -> None:
    mimic_body = APIError(status, "it went wrong").body()
    shaped_status, body = error_envelope(status, mimic_body)
    assert shaped_status == status
    assert _valid(CHAT, status, body) == []
    assert body["error"]["message"] == "it went wrong"


def test_a_422_becomes_a_400_naming_the_field() -> None:
    detail = RequestValidationError.single(
        ["body", "messages", 0, "content"], "Field required", "missing"
    ).body()
    status, body = error_envelope(422, detail)
    assert status == 400
    assert body["error"] == {
        "message": "Field required",
        "type": "invalid_request_error",
        "param": "messages.0.content",
        "code": None,
    }
    assert _valid(CHAT, 400, body) == []


def test_a_body_level_422_names_no_field() -> None:
    detail = RequestValidationError.single(["body"], "not JSON", "json_invalid").body()
    assert error_envelope(422, detail)[1]["error"]["param"] is None


def test_a_text_completion_is_openais() -> None:
    example = MIMIC.resolve("/components/schemas/Completion/examples/0")
    answer = text_completion(example)
    assert answer["object"] == "text_completion"
    assert "message" not in answer["choices"][0]
    assert answer["choices"][0]["text"] == example["choices"][0]["text"]
    assert _valid(COMPLETIONS, 200, answer) == []


def test_a_text_completion_chunk_has_no_delta() -> None:
    chunk = {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mythomax",
        "choices": [{"index": 0, "delta": {"content": " a"}, "text": " a", "finish_reason": None}],
        "usage": None,
    }
    shaped = text_completion_chunk(chunk)
    assert shaped["object"] == "text_completion"
    assert shaped["choices"] == [
        {"index": 0, "text": " a", "logprobs": None, "finish_reason": None}
    ]
    validator = OPENAI.validator("/components/schemas/CompletionChunk")
    assert list(validator.iter_errors(shaped)) == []


def test_a_failed_streams_error_event_is_the_envelope() -> None:
    event = text_completion_chunk(internal_error_body("the generation failed"))
    assert event["error"]["type"] == "server_error"
    assert event["error"]["message"] == "the generation failed"
    assert OPENAI.validator("/components/schemas/Error").is_valid(event)
