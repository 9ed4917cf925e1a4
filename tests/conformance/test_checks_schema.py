"""schemathesis's checks, run one at a time and mapped to requirement IDs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import schemathesis

import spec
from conformance.checks.schema import (
    CHECK_REQUIREMENTS,
    NEGATIVE_CHECKS,
    POSITIVE_CHECKS,
    run_check,
)
from conformance.exchange import Exchange, RequestSpec
from conformance.requirements import requirement
from conformance.suite._schemathesis import _response_of

SCHEMA = schemathesis.openapi.from_dict(spec.load())
MODELS = SCHEMA.find_operation_by_label("GET /v1/models")
LISTING = {
    "object": "list",
    "data": [{"id": "mythomax", "object": "model", "created": 1, "owned_by": "x"}],
}


def respond(status: int, body: Any, content_type: str = "application/json", **headers: str) -> Any:
    case = MODELS.Case()
    prepared = requests.Request("GET", "http://127.0.0.1:1/v1/models").prepare()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    exchange = Exchange(
        RequestSpec("GET", "http://127.0.0.1:1/v1/models"),
        status,
        [("content-type", content_type), *headers.items()],
        raw,
    )
    return case, _response_of(exchange, prepared)


def test_every_check_maps_to_a_schema_requirement() -> None:
    for name in {*POSITIVE_CHECKS, *NEGATIVE_CHECKS}:
        assert requirement(CHECK_REQUIREMENTS[name]).id.startswith("SCHEMA-")


@pytest.mark.parametrize("name", POSITIVE_CHECKS)
def test_a_good_answer_passes(name: str) -> None:
    case, response = respond(200, LISTING)
    assert run_check(name, case, response) is None


@pytest.mark.parametrize(
    ("name", "status", "body", "content_type"),
    [
        ("not_a_server_error", 500, {"error": "x"}, "application/json"),
        ("status_code_conformance", 418, {}, "application/json"),
        ("content_type_conformance", 200, LISTING, "text/plain"),
        ("response_schema_conformance", 200, {"object": "list"}, "application/json"),
    ],
)
def test_a_broken_answer_fails_its_check(
    name: str, status: int, body: Any, content_type: str
) -> None:
    case, response = respond(status, body, content_type)
    finding = run_check(name, case, response)
    assert finding is not None
    assert finding.requirement_id == CHECK_REQUIREMENTS[name]
    assert finding.message
