"""The OpenAI-compatible contract: derived from the Mimic one, never edited by hand."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV32SpecValidator

import spec
from spec import openai_derivation


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return spec.load_path(spec.OPENAI_SPEC_PATH)


def test_committed_file_is_what_the_derivation_writes() -> None:
    expected = openai_derivation.render(openai_derivation.derive(spec.load()))
    assert spec.OPENAI_SPEC_PATH.read_text(encoding="utf-8") == expected, (
        "spec/openai.yaml is out of date: run python -m spec.openai_derivation"
    )


def test_derivation_leaves_the_mimic_document_alone() -> None:
    mimic = spec.load_path(spec.SPEC_PATH)
    openai_derivation.derive(mimic)
    assert mimic == spec.load_path(spec.SPEC_PATH)


def test_document_is_valid_openapi_3_2(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.2.")
    assert list(OpenAPIV32SpecValidator(document).iter_errors()) == []


def test_only_the_v1_operations(document: dict[str, Any]) -> None:
    contract = spec.Contract(document)
    assert {(op.method, op.path) for op in contract.operations} == {
        ("post", "/v1/chat/completions"),
        ("post", "/v1/completions"),
        ("get", "/v1/models"),
    }


def test_invalid_requests_are_400_with_the_openai_envelope(document: dict[str, Any]) -> None:
    contract = spec.Contract(document)
    assert (contract.name, contract.invalid_request_status) == ("openai", 400)
    for operation in contract.operations:
        assert "422" not in operation.documented_statuses()
        for status in operation.documented_statuses() - {"200"}:
            validator = contract.response_validator(operation, int(status), "application/json")
            assert validator is not None
            envelope = {
                "error": {
                    "message": "bad",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            }
            assert validator.is_valid(envelope), (operation.label, status)
            assert not validator.is_valid({"error": "bad", "errorCode": int(status)})


def test_text_completions_have_openai_shape(document: dict[str, Any]) -> None:
    contract = spec.Contract(document)
    completions = next(op for op in contract.operations if op.path == "/v1/completions")
    validator = contract.response_validator(completions, 200, "application/json")
    assert validator is not None
    answer = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "mythomax",
        "choices": [{"index": 0, "text": " a cat", "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }
    assert validator.is_valid(answer)
    assert not validator.is_valid({**answer, "object": "chat.completion"})
    chat = next(op for op in contract.operations if op.path == "/v1/chat/completions")
    chat_validator = contract.response_validator(chat, 200, "application/json")
    assert chat_validator is not None
    assert not chat_validator.is_valid(answer)  # chat answers keep their chat.completion


def test_the_mimic_contract_names_itself() -> None:
    contract = spec.contract()
    assert (contract.name, contract.invalid_request_status) == ("mimic", 422)
    assert contract.not_applicable == {}


def test_keys_only_as_bearer(document: dict[str, Any]) -> None:
    assert list(document["components"]["securitySchemes"]) == ["bearerAuth"]
    assert document["security"] == [{}, {"bearerAuth": []}]
