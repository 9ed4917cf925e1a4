"""The contract: valid OpenAPI 3.2, the seed's operations, schemas that say what it decides."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV32SpecValidator

import spec

SEED_OPERATIONS = {
    ("post", "/v1/chat/completions"),
    ("post", "/{model}/v1/chat/completions"),
    ("post", "/chub/{model}/v1/chat/completions"),
    ("post", "/v1/completions"),
    ("post", "/{model}/v1/completions"),
    ("post", "/chub/{model}/v1/completions"),
    ("get", "/v1/models"),
    ("get", "/{model}/v1/models"),
    ("get", "/chub/{model}/v1/models"),
}
SEED_MODELS = ["mythomax", "asha", "soji", "mixtral", "mistral", "mobile"]


@pytest.fixture(scope="module")
def contract() -> spec.Contract:
    return spec.contract()


def test_document_is_valid_openapi_3_2() -> None:
    document = spec.load()
    assert document["openapi"].startswith("3.2.")
    errors = list(OpenAPIV32SpecValidator(document).iter_errors())
    assert errors == []


def test_validator_rejects_a_broken_copy() -> None:
    # The validation above must be able to fail: break the document and watch it.
    broken = copy.deepcopy(spec.load())
    broken["paths"]["/v1/models"]["get"]["operationId"] = 42
    del broken["info"]["title"]
    assert list(OpenAPIV32SpecValidator(broken).iter_errors())


def test_exactly_the_seed_operations(contract: spec.Contract) -> None:
    found = {(operation.method, operation.path) for operation in contract.operations}
    assert found == SEED_OPERATIONS
    ids = [operation.operation_id for operation in contract.operations]
    assert len(ids) == len(set(ids)) == 9


def test_path_model_is_the_six_names(contract: spec.Contract) -> None:
    for operation in contract.operations:
        params = {p.name: p for p in operation.parameters}
        if "{model}" not in operation.path:
            assert "model" not in params
            continue
        assert params["model"].location == "path"
        assert params["model"].required
        schema = contract.resolve(params["model"].schema_pointer)
        resolved = contract.resolve(schema["$ref"][1:]) if "$ref" in schema else schema
        assert resolved["enum"] == SEED_MODELS


@pytest.mark.parametrize(
    ("status", "body_schema"),
    [
        ("400", "Error"),
        ("401", "Error"),
        ("403", "Error"),
        ("404", "Error"),
        ("405", "Error"),
        ("500", "InternalError"),
    ],
)
def test_every_operation_documents_the_error_statuses(
    contract: spec.Contract, status: str, body_schema: str
) -> None:
    for operation in contract.operations:
        assert status in operation.responses, operation.label
        validator = contract.response_validator(operation, status)
        assert validator is not None
        code = int(status)
        good = (
            {"error": "x", "errorCode": code, "code": code}
            if body_schema == "Error"
            else {
                "error": "UNKNOWN",
                "message": "m",
                "type": "t",
                "code": "",
                "errorCode": 500,
                "param": None,
            }
        )
        assert validator.is_valid(good)
        # errorCode must equal the status; the seed's shared "400" example is not the rule.
        assert not validator.is_valid({**good, "errorCode": 400 if code != 400 else 401})


def test_validation_error_documented_where_input_exists(contract: spec.Contract) -> None:
    for operation in contract.operations:
        takes_input = bool(operation.parameters or operation.request_body_pointers)
        assert ("422" in operation.responses) == takes_input, operation.label


def test_queue_full_and_method_headers_documented(contract: spec.Contract) -> None:
    for operation in contract.operations:
        assert "Allow" in contract.response_media(operation, 405)["application/json"].headers
        if operation.method == "post":
            media = contract.response_media(operation, 429)["application/json"]
            assert "Retry-After" in media.headers


def test_post_operations_stream_with_item_schema(contract: spec.Contract) -> None:
    for operation in contract.operations:
        media = contract.response_media(operation, 200)
        if operation.method == "post":
            assert media["text/event-stream"].item_pointer is not None
        else:
            assert set(media) == {"application/json"}


def test_authentication_is_optional() -> None:
    document = spec.load()
    assert {} in document["security"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert {(s.get("in"), s.get("name")) for s in schemes.values() if s["type"] == "apiKey"} == {
        ("header", "CH-API-KEY"),
        ("header", "samwise"),
    }


# ---------------------------------------------------------------------- examples and defaults
def _walk(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    yield pointer, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{pointer}/{index}")


def _schema_examples() -> list[tuple[str, str, Any]]:
    """Every (schema pointer, kind, value) for a default or example in the document."""
    found: list[tuple[str, str, Any]] = []
    document = spec.load()
    for pointer, node in _walk(document):
        if not isinstance(node, dict):
            continue
        in_schema = "/schema" in pointer or "/components/schemas/" in pointer
        if in_schema and "default" in node and "properties" not in pointer.rsplit("/", 1)[-1]:
            found.append((pointer, "default", node["default"]))
        if in_schema and isinstance(node.get("examples"), list):
            found.extend((pointer, "example", value) for value in node["examples"])
        # Media type objects: `example` and `examples` against their `schema`.
        if "schema" in node and ("example" in node or "examples" in node):
            target = f"{pointer}/schema"
            if "example" in node:
                found.append((target, "example", node["example"]))
            for example in (node.get("examples") or {}).values():
                found.append((target, "example", example["value"]))
    return found


EXAMPLES = _schema_examples()


def test_there_are_examples_to_check() -> None:
    kinds = {kind for _, kind, _ in EXAMPLES}
    assert kinds == {"default", "example"}
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize(("pointer", "kind", "value"), EXAMPLES, ids=lambda v: str(v)[:60])
def test_every_example_and_default_validates(
    contract: spec.Contract, pointer: str, kind: str, value: Any
) -> None:
    errors = [e.message for e in contract.validator(pointer).iter_errors(value)]
    assert errors == [], f"{kind} at {pointer}"


def test_example_check_can_fail(contract: spec.Contract) -> None:
    pointer = "/components/schemas/Temperature"
    assert not contract.validator(pointer).is_valid(3)


# ------------------------------------------------------------ payloads as the spec's decisions say
def _request(contract: spec.Contract, operation_id: str) -> Draft202012Validator:
    validator = contract.request_validator(contract.operation(operation_id))
    assert validator is not None
    return validator


HELLO = [{"role": "user", "content": "hi"}]

VALID_CHAT_BODIES = [
    {"messages": HELLO},
    {"messages": HELLO, "temperature": 0, "top_p": 1, "n": 128, "stop": ["a", "b", "c", "d"]},
    {
        "messages": HELLO,
        "temperature": None,
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    {"messages": HELLO, "logprobs": True, "top_logprobs": 20, "logit_bias": {"50256": -100}},
    {"messages": HELLO, "max_tokens": 1, "max_completion_tokens": 5, "unknown_extra": {"x": 1}},
    {
        "messages": [
            {"role": "developer", "content": "d", "name": "n"},
            {"role": "system", "content": [{"type": "text", "text": "s"}]},
            {"role": "user", "content": "u"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
            {"role": "function", "content": "42", "name": "f"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
    },
]

INVALID_CHAT_BODIES = {
    "empty messages": {"messages": []},
    "temperature above 2": {"messages": HELLO, "temperature": 2.5},
    "top_p above 1": {"messages": HELLO, "top_p": 1.01},
    "n zero": {"messages": HELLO, "n": 0},
    "n above 128": {"messages": HELLO, "n": 129},
    "five stops": {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]},
    "penalty below -2": {"messages": HELLO, "presence_penalty": -2.1},
    "top_logprobs above 20": {"messages": HELLO, "top_logprobs": 21},
    "logit bias above 100": {"messages": HELLO, "logit_bias": {"1": 101}},
    "logit bias key not a token id": {"messages": HELLO, "logit_bias": {"abc": 1}},
    "max_tokens zero": {"messages": HELLO, "max_tokens": 0},
    "mistyped stream": {"messages": HELLO, "stream": "yes"},
    "unknown role": {"messages": [{"role": "wizard", "content": "x"}]},
    "tool message without id": {"messages": [{"role": "tool", "content": "x"}]},
    "not an object": ["messages"],
    "messages missing": {"temperature": 1},
}


@pytest.mark.parametrize("body", VALID_CHAT_BODIES)
def test_valid_chat_bodies_are_accepted(contract: spec.Contract, body: dict[str, Any]) -> None:
    validator = _request(contract, "createChatCompletionForModel")
    assert [e.message for e in validator.iter_errors(body)] == []
    # On /v1/… the same body needs a model.
    with_model = _request(contract, "createChatCompletion")
    assert not with_model.is_valid(body)
    assert with_model.is_valid({**body, "model": "mythomax"})


@pytest.mark.parametrize("case", sorted(INVALID_CHAT_BODIES))
def test_invalid_chat_bodies_are_rejected(contract: spec.Contract, case: str) -> None:
    validator = _request(contract, "createChatCompletionForModel")
    assert not validator.is_valid(INVALID_CHAT_BODIES[case])


def test_completion_bodies(contract: spec.Contract) -> None:
    validator = _request(contract, "createCompletionForModel")
    assert validator.is_valid({"prompt": "x"})
    assert validator.is_valid({"prompt": ["a", "b"], "echo": True, "logprobs": 5, "best_of": 2})
    assert not validator.is_valid({"prompt": "x", "logprobs": 6})
    assert not validator.is_valid({"prompt": []})
    assert not validator.is_valid({})


CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "asha",
    "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}
    ],
    "usage": None,
}


def _event(data: Any) -> dict[str, str]:
    return {"data": data if isinstance(data, str) else json.dumps(data)}


def test_streamed_chat_events(contract: spec.Contract) -> None:
    chat = contract.operation("createChatCompletion")
    event = contract.response_validator(chat, 200, "text/event-stream")
    chunk = contract.schema_validator("ChatCompletionChunk")
    assert event is not None
    stream = [
        CHUNK,
        {**CHUNK, "choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]},
        {
            **CHUNK,
            "choices": [],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        },
    ]
    for item in stream:
        assert event.is_valid(_event(item))
        assert chunk.is_valid(item)
    assert event.is_valid({"data": "[DONE]"})
    # contentSchema is not asserted by jsonschema by default: the chunk schema is what judges data.
    assert not chunk.is_valid({**CHUNK, "object": "chat.completion"})
    assert not chunk.is_valid({**CHUNK, "choices": [{"index": 0, "delta": {}}]})
    assert not event.is_valid({"comment": "no data"})


def test_completion_chunks_carry_text(contract: spec.Contract) -> None:
    chunk = contract.schema_validator("CompletionChunk")
    choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": None}
    assert not chunk.is_valid({**CHUNK, "choices": [choice]})
    assert chunk.is_valid({**CHUNK, "choices": [{**choice, "text": "hi"}]})


def test_completion_response_with_text(contract: spec.Contract) -> None:
    validator = contract.response_validator(contract.operation("createCompletion"), 200)
    assert validator is not None
    body = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "asha",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x"},
                "text": "x",
                "logprobs": None,
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    assert validator.is_valid(body)
    assert not validator.is_valid({**body, "choices": [{**body["choices"][0], "text": 3}]})
    assert not validator.is_valid({k: v for k, v in body.items() if k != "usage"})
    assert not validator.is_valid(
        {**body, "choices": [{**body["choices"][0], "finish_reason": "tired"}]}
    )


def test_validation_error_body_shape(contract: spec.Contract) -> None:
    validator = contract.response_validator(contract.operation("createChatCompletion"), 422)
    assert validator is not None
    assert validator.is_valid(
        {"detail": [{"loc": ["body", "messages", 0], "msg": "m", "type": "t"}]}
    )
    assert validator.is_valid({"detail": [{"loc": ["path", "model"], "msg": "m", "type": "enum"}]})
    assert not validator.is_valid({"detail": [{"loc": ["elsewhere"], "msg": "m", "type": "t"}]})
    assert not validator.is_valid({"detail": []})
    assert not validator.is_valid({"error": "x", "errorCode": 422, "code": 422})


def test_model_list_shape(contract: spec.Contract) -> None:
    validator = contract.response_validator(contract.operation("listModels"), 200)
    assert validator is not None
    entry = {"id": "asha", "object": "model", "created": 0, "owned_by": "mimic"}
    assert validator.is_valid({"object": "list", "data": [entry]})
    assert not validator.is_valid({"data": [entry]})
    assert not validator.is_valid({"object": "list", "data": [{"id": "asha"}]})
