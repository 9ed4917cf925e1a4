"""`locate`: a large invalid document's errors, found without building all of them."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from reference.error_search import KEEP, KEEP_MEMBERS, locate
from tests.reference._recording_validator import RecordingValidator, json_values

INTEGERS = {"type": "array", "items": {"type": "integer"}}
SCHEMA = {
    "type": "object",
    "properties": {
        "rows": {"type": "array", "items": INTEGERS},
        "short": {"type": "array", "maxItems": 4, "items": {"type": "integer"}},
        "either": {"oneOf": [{"type": "string"}, INTEGERS]},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}


def errors(document: Any, *, limit: int = 100) -> tuple[list[tuple[Any, ...]], RecordingValidator]:
    recording = RecordingValidator(jsonschema_rs.Draft202012Validator(SCHEMA))
    found = locate(
        document,
        recording,
        is_large=lambda value: json_values(value) > 50,
        error_type=jsonschema_rs.ValidationError,
        limit=limit,
    )
    return [(error.path, error.schema_path[-1]) for error in found], recording


def test_a_small_document_has_all_its_errors() -> None:
    found, recording = errors({"rows": [[1, "a"], ["b"]], "short": [1, 2, 3, 4, 5]})
    assert sorted(map(str, found)) == sorted(
        map(
            str,
            [
                (("rows", 0, 1), "type"),
                (("rows", 1, 0), "type"),
                (("short",), "maxItems"),
            ],
        )
    )
    assert recording.sizes == [json_values({"rows": [[1, "a"], ["b"]], "short": [1, 2, 3, 4, 5]})]


def test_errors_within_the_kept_items_are_found_in_the_cut_document() -> None:
    found, recording = errors({"rows": [["x"] * 1000]})
    assert found == [(("rows", 0, i), "type") for i in range(KEEP)]
    assert max(recording.sizes) <= 3 + KEEP  # the object, two lists, the kept items


def test_one_wrong_value_deep_in_late_items_is_found_at_its_real_path() -> None:
    rows = [[1] * 100 for _ in range(300)] + [[1] * 200 + ["x"]]
    found, recording = errors({"rows": rows})
    assert found == [(("rows", 300, 200), "type")]
    assert max(recording.sizes) < 50 * KEEP


def test_a_list_of_right_items_that_is_too_long_fails_by_its_size() -> None:
    found, _ = errors({"short": [1] * 10_000})
    assert found == [(("short",), "maxItems")]


def test_a_flood_under_one_of_never_reaches_iter_errors_whole() -> None:
    found, recording = errors({"either": ["x"] * 100_000})
    assert found == [(("either",), "oneOf")]
    assert max(recording.sizes) <= 2 + KEEP


def test_a_wrong_member_late_in_a_large_map_keeps_its_key() -> None:
    scores = {f"k{i}": 1.0 for i in range(KEEP_MEMBERS * 3)} | {"late": "x"}
    found, recording = errors({"scores": scores})
    assert found == [(("scores", "late"), "type")]
    assert max(recording.sizes) <= 2 + KEEP_MEMBERS


@pytest.mark.parametrize("limit", [1, 5])
def test_at_most_limit_errors(limit: int) -> None:
    found, _ = errors({"rows": [["x"] * 1000]}, limit=limit)
    assert len(found) == limit


def test_a_valid_document_has_none() -> None:
    assert errors({"rows": [[1] * 1000] * 10})[0] == []
