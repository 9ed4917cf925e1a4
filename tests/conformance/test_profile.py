"""The profiles and the capped copy of the spec that schemathesis generates valid data from."""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, settings

import spec
from conformance.profile import PROFILES, Caps, capped_document

DOCUMENT = spec.load()
MODELS = ["asha", "soji"]


def _capped() -> dict[str, Any]:
    return capped_document(DOCUMENT, Caps(), MODELS)


def test_the_original_is_not_changed() -> None:
    before = json.dumps(DOCUMENT, sort_keys=True)
    _capped()
    assert json.dumps(DOCUMENT, sort_keys=True) == before


def test_response_schemas_are_untouched() -> None:
    capped = _capped()
    for name in ("ChatCompletion", "ChatCompletionChunk", "Usage", "ModelList", "Error"):
        assert capped["components"]["schemas"][name] == DOCUMENT["components"]["schemas"][name]


def test_request_schemas_are_capped_copies() -> None:
    schemas = _capped()["components"]["schemas"]
    chat = schemas["ChatCompletionRequest__capped_request"]
    assert "max_tokens" in chat["required"]
    assert chat["properties"]["max_tokens"] == {"type": "integer", "minimum": 1, "maximum": 8}
    assert chat["properties"]["n"]["maximum"] == 2
    assert chat["properties"]["messages"]["maxItems"] == 2
    assert chat["properties"]["model"] == {"type": "string", "enum": MODELS}


def _draw_bodies(label: str, count: int = 40) -> list[Any]:
    schema = schemathesis.openapi.from_dict(_capped())
    operation = schema.find_operation_by_label(label)
    bodies: list[Any] = []

    @hypothesis.seed(1)
    @settings(
        max_examples=count, database=None, suppress_health_check=list(HealthCheck), deadline=None
    )
    @hypothesis.given(operation.as_strategy())
    def collect(case: Any) -> None:
        bodies.append(case.body)

    collect()
    return bodies


def test_generated_valid_bodies_stay_within_budget() -> None:
    validator = spec.contract().request_validator(spec.contract().operation("createChatCompletion"))
    assert validator is not None
    for body in _draw_bodies("POST /v1/chat/completions"):
        assert 1 <= body["max_tokens"] <= 8
        assert body.get("max_completion_tokens") in (None, *range(1, 9))
        assert body.get("n") in (None, 1, 2)
        assert body["model"] in MODELS
        assert len(body["messages"]) <= 2
        assert list(validator.iter_errors(body)) == [], body  # still valid against the real spec


def test_profiles() -> None:
    assert set(PROFILES) == {"quick", "full", "thorough"}
    assert PROFILES["quick"].coverage_modes == ()
    assert "negative" in PROFILES["full"].coverage_modes
    assert PROFILES["quick"].max_examples < PROFILES["full"].max_examples
