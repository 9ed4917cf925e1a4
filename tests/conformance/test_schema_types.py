"""Which JSON types a schema allows: one answer for the capped spec and the bad requests alike."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.profile import Caps, capped_document
from conformance.schema_types import JSON_TYPES, allowed_types
from conformance.suite._requests import _out_of_range, _wrong_type


@pytest.mark.parametrize(
    ("schema", "types"),
    [
        ({"type": "string"}, {"string"}),
        ({"type": ["integer", "null"]}, {"integer", "null"}),
        ({"type": ["boolean", 3]}, {"boolean"}),
        ({"type": {"not": "a name"}}, set()),
        ({}, JSON_TYPES),
        ({"oneOf": [{"type": "string"}, {"type": "null"}]}, JSON_TYPES),
        ({"enum": ["a", 1]}, JSON_TYPES),
        ({"type": None}, JSON_TYPES),
    ],
)
def test_allowed_types(schema: dict[str, Any], types: set[str]) -> None:
    assert allowed_types(schema) == types


def test_a_schema_without_type_allows_every_json_type() -> None:
    every = {"array", "boolean", "integer", "null", "number", "object", "string"}
    assert allowed_types({"description": "anything"}) == every


def test_no_value_has_a_wrong_type_for_a_schema_without_type() -> None:
    assert _wrong_type({"description": "anything"}) is None
    assert _wrong_type({"type": "integer"}) == "not-a-integer"


def test_a_schema_without_type_still_has_the_bounds_it_states() -> None:
    # Without ``type`` a number is allowed, so ``maximum`` applies to it.
    assert _out_of_range({"maximum": 5}) == 6
    assert _out_of_range({"type": "string", "maximum": 5}) is None


def test_only_schemas_that_name_their_types_are_capped() -> None:
    wrapper = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    document = {
        "paths": {
            "/x": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/R"}}
                        }
                    }
                }
            }
        },
        "components": {
            "schemas": {
                "R": {
                    "type": "object",
                    "properties": {"prompt": wrapper, "role": {"const": "a-rather-long-role-name"}},
                }
            }
        },
    }
    capped = capped_document(document, Caps(string_length=4, array_items=2))
    properties = capped["components"]["schemas"]["R__capped_request"]["properties"]
    string, array = properties["prompt"]["oneOf"]
    assert string == {"type": "string", "maxLength": 4}
    assert array["maxItems"] == 2 and array["items"]["maxLength"] == 4
    assert "maxLength" not in properties["prompt"] and "maxItems" not in properties["prompt"]
    assert properties["role"] == {"const": "a-rather-long-role-name"}
