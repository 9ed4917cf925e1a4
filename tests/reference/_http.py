"""Judging the reference server's responses against the contract, for the HTTP tests.

Every response body a test looks at goes through `assert_conforms` (JSON) or `stream_chunks`
(event streams): the schema for its operation, status and media type, from `spec/openapi.yaml`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import spec
from spec import Operation

__all__ = [
    "assert_conforms",
    "assert_response_conforms",
    "operation_for",
    "parse_sse",
    "stream_chunks",
]

CONTRACT = spec.contract()


def _operation(operation: Operation | str) -> Operation:
    return CONTRACT.operation(operation) if isinstance(operation, str) else operation


def assert_conforms(
    operation: Operation | str,
    status: int,
    media: str,
    body: Any,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Fail unless `status` is documented for `operation` and `body` matches its schema.

    With `headers` (lower-cased names), the documented response headers are checked too.
    """
    op = _operation(operation)
    assert str(status) in op.responses, f"{op.label} does not document status {status}"
    media_types = CONTRACT.response_media(op, status)
    assert media in media_types, f"{op.label} {status} documents {sorted(media_types)}, not {media}"
    validator = CONTRACT.response_validator(op, status, media)
    assert validator is not None, f"{op.label} {status} {media} has no schema"
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{op.label} {status} body does not conform: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors
    )
    if headers is not None:
        for name, pointer in media_types[media].headers.items():
            value = headers.get(name.lower())
            assert value is not None, f"{op.label} {status} lacks the {name} header"
            header_errors = list(CONTRACT.validator(pointer).iter_errors(value))
            assert not header_errors, f"{name}: {value!r} does not conform"


def operation_for(method: str, path: str) -> Operation:
    """The operation a request went to; for a 404 or 405, one that documents those statuses."""
    found = CONTRACT.match(method, path)
    if found is not None:
        return found[0]
    for operation in CONTRACT.operations:
        if operation.path_pattern.match(path):
            return operation  # a 405: any operation of the path documents it
    return CONTRACT.operation("listModels")  # a 404 for an unknown route


def assert_response_conforms(
    method: str, path: str, status: int, headers: Mapping[str, str], text: str
) -> Any:
    """Check one response, JSON or stream, against the contract; return the decoded body."""
    operation = operation_for(method, path)
    media = headers.get("content-type", "").split(";")[0].strip()
    if media == "text/event-stream":
        assert status == 200, f"a stream with status {status}"
        return stream_chunks(operation, text)
    assert media == "application/json", f"{method} {path} {status}: content-type {media!r}"
    body = json.loads(text)
    assert_conforms(operation, status, media, body, headers)
    return body


def parse_sse(text: str) -> list[dict[str, str]]:
    """Split an event stream into events (`{"data": ...}`); comment lines are skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:")]
        assert len(data) == len(lines), f"unexpected SSE fields in {block!r}"
        events.append({"data": "\n".join(data)})
    return events


def stream_chunks(operation: Operation | str, text: str) -> list[dict[str, Any]]:
    """Check a whole stream against the contract and its stream rules; return its chunks.

    Each event against the `itemSchema`; each chunk's JSON against `ChatCompletionChunk` or
    `CompletionChunk` (or `InternalError`); `[DONE]` last and only once.
    """
    op = _operation(operation)
    item_validator = CONTRACT.response_validator(op, 200, "text/event-stream")
    assert item_validator is not None
    is_chat = "chat" in op.path
    chunk_validator = CONTRACT.schema_validator(
        "ChatCompletionChunk" if is_chat else "CompletionChunk"
    )
    error_validator = CONTRACT.schema_validator("InternalError")
    events = parse_sse(text)
    assert events, "an empty stream"
    assert events[-1]["data"] == "[DONE]", f"the last event is {events[-1]['data'][:100]!r}"
    chunks = []
    for event in events[:-1]:
        errors = list(item_validator.iter_errors(event))
        assert not errors, f"event {event['data'][:100]!r}: {errors[0].message[:200]}"
        assert event["data"] != "[DONE]", "[DONE] before the end"
        chunk = json.loads(event["data"])
        validator = error_validator if "errorCode" in chunk else chunk_validator
        errors = list(validator.iter_errors(chunk))
        assert not errors, f"chunk {chunk}: {errors[0].message[:200]}"
        chunks.append(chunk)
    return chunks
