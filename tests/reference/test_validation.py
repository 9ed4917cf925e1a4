from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

import spec
from reference.error_search import KEEP
from reference.errors import RequestValidationError
from reference.validation import (
    MAX_DETAIL_ITEMS,
    OperationValidator,
    is_json_media_type,
    parse_json_body,
)
from tests.reference._http import assert_conforms
from tests.reference._recording_validator import RecordingValidator

CONTRACT = spec.contract()
USER = {"role": "user", "content": "hi"}


def validator(operation_id: str) -> OperationValidator:
    return OperationValidator(CONTRACT, CONTRACT.operation(operation_id), max_body_bytes=1 << 20)


def detail(operation_id: str, body: Any) -> list[dict[str, Any]]:
    with pytest.raises(RequestValidationError) as failure:
        validator(operation_id).validate_body(body)
    # Whatever the detail says, it must be the contract's 422 body.
    assert_conforms(operation_id, 422, "application/json", failure.value.body())
    return failure.value.detail


def raw_detail(data: bytes, content_type: str | None = None) -> list[dict[str, Any]]:
    with pytest.raises(RequestValidationError) as failure:
        validator("createCompletion").parse_and_validate(data, content_type)
    assert_conforms("createCompletion", 422, "application/json", failure.value.body())
    return failure.value.detail


@pytest.mark.parametrize(
    ("content_type", "is_json"),
    [
        (None, True),
        ("", True),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/vnd.mimic+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("json", False),
    ],
)
def test_json_media_types(content_type: str | None, is_json: bool) -> None:
    assert is_json_media_type(content_type) is is_json


def test_valid_body_comes_back_without_nulls() -> None:
    body = {"messages": [USER], "model": "asha", "temperature": None, "extra": {"a": 1}}
    assert validator("createChatCompletion").validate_body(body) == {
        "messages": [USER],
        "model": "asha",
        "extra": {"a": 1},
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"messages": [USER]}, [(["body", "model"], "missing", "Field required")]),
        (
            {"model": "asha", "messages": [USER], "temperature": 3},
            [(["body", "temperature"], "less_than_equal", "less than or equal to 2")],
        ),
        (
            {"model": "asha", "messages": [USER], "top_p": -0.5},
            [(["body", "top_p"], "greater_than_equal", "greater than or equal to 0")],
        ),
        (
            {"model": "asha", "messages": [USER], "n": "2"},
            [(["body", "n"], "int_type", "valid integer")],
        ),
        (
            {"model": "asha", "messages": [USER], "max_tokens": 1.5},
            [(["body", "max_tokens"], "int_type", "valid integer")],
        ),
        ({"model": "asha", "messages": []}, [(["body", "messages"], "too_short", "at least 1")]),
        (
            {"model": "asha", "messages": [{"role": "bogus", "content": "x"}]},
            [(["body", "messages", 0, "role"], "union_tag_invalid", "'bogus'")],
        ),
        (
            {"model": "asha", "messages": [{"content": "x"}]},
            [(["body", "messages", 0, "role"], "missing", "Field required")],
        ),
        (
            {"model": "asha", "messages": [{"role": "user"}]},
            [(["body", "messages", 0, "content"], "missing", "Field required")],
        ),
        (
            {"model": "asha", "messages": ["hello"]},
            [(["body", "messages", 0], "dict_type", "valid dictionary")],
        ),
        (
            {"model": "asha", "messages": [{"role": "tool", "content": "x"}]},
            [(["body", "messages", 0, "tool_call_id"], "missing", "Field required")],
        ),
        (
            {"model": "asha", "messages": [USER], "stop": ""},
            [(["body", "stop"], "string_too_short", "at least 1 character")],
        ),
        (
            {"model": "asha", "messages": [USER], "stop": ["a", 3]},
            [(["body", "stop", 1], "string_type", "valid string")],
        ),
        (
            {"model": "asha", "messages": [USER], "stop": ["a", "b", "c", "d", "e"]},
            [(["body", "stop"], "too_long", "at most 4 items")],
        ),
        (
            {"model": "asha", "messages": [USER], "stop": 5},
            [(["body", "stop"], "string_type", "valid string or a valid list")],
        ),
        (
            {"model": "asha", "messages": [USER], "logit_bias": {"abc": 1}},
            [(["body", "logit_bias", "abc"], "string_pattern_mismatch", "pattern")],
        ),
        (
            {"model": "asha", "messages": [USER], "logit_bias": {"5": 101}},
            [(["body", "logit_bias", "5"], "less_than_equal", "100")],
        ),
        (
            {"model": "asha", "messages": [USER], "response_format": {"type": "json_schema"}},
            [(["body", "response_format", "json_schema"], "missing", "Field required")],
        ),
        (
            {"model": "asha", "messages": [USER], "modalities": ["video"]},
            [(["body", "modalities", 0], "enum", "'text' or 'audio'")],
        ),
        (
            {"model": "asha", "messages": [USER], "reasoning_effort": "max"},
            [(["body", "reasoning_effort"], "enum", "'minimal', 'low', 'medium' or 'high'")],
        ),
        (
            {"model": "asha", "messages": [{"role": "user", "content": [{"type": "image"}]}]},
            [
                (["body", "messages", 0, "content", 0, "text"], "missing", "Field required"),
                (["body", "messages", 0, "content", 0, "type"], "literal_error", "'text'"),
            ],
        ),
        (
            {"model": "asha", "messages": [USER], "seed": 2**64},
            [(["body", "seed"], "less_than_equal", "9223372036854775807")],
        ),
        (
            {"model": "asha", "messages": [USER], "stream": "yes"},
            [(["body", "stream"], "bool_type", "valid boolean")],
        ),
    ],
)
def test_schema_errors_become_pydantic_style_items(
    body: dict[str, Any], expected: list[tuple[list[Any], str, str]]
) -> None:
    items = detail("createChatCompletion", body)
    got = sorted((item["loc"], item["type"]) for item in items)
    assert got == sorted((loc, type_) for loc, type_, _ in expected)
    by_loc = {json.dumps(item["loc"]): item["msg"] for item in items}
    for loc, _, words in expected:
        assert words in by_loc[json.dumps(loc)]


def test_every_error_is_reported() -> None:
    items = detail(
        "createCompletion",
        {"prompt": 5, "max_tokens": 0, "temperature": "hot", "n": 1000},
    )
    assert {tuple(item["loc"]) for item in items} == {
        ("body", "prompt"),
        ("body", "max_tokens"),
        ("body", "temperature"),
        ("body", "n"),
        ("body", "model"),
    }


def test_detail_is_bounded_for_huge_invalid_bodies() -> None:
    items = detail("createChatCompletion", {"model": "m", "messages": [1] * 1_000})
    assert len(items) == MAX_DETAIL_ITEMS
    # Larger than EXPLAIN_NODES: the first items of each list are explained (error_search.KEEP).
    items = detail("createChatCompletion", {"model": "m", "messages": [1] * 10_000})
    assert [item["loc"] for item in items] == [["body", "messages", i] for i in range(KEEP)]


def test_huge_strings_do_not_end_up_in_messages() -> None:
    items = detail("createChatCompletion", {"model": "m", "messages": "x" * 1_000_000})
    assert len(json.dumps(items)) < 1000


def test_path_model_outside_the_enum() -> None:
    with pytest.raises(RequestValidationError) as failure:
        validator("createChatCompletionForModel").check_path({"model": "gpt-9"})
    (item,) = failure.value.detail
    assert item["loc"] == ["path", "model"]
    assert item["type"] == "enum"
    assert "'mythomax'" in item["msg"]
    validator("createChatCompletionForModel").check_path({"model": "mythomax"})


@pytest.mark.parametrize(
    ("data", "content_type", "loc", "type_"),
    [
        (b"", None, ["body"], "missing"),
        (b'{"prompt": ', None, ["body", 11], "json_invalid"),
        (b"{'prompt': 'x'}", None, ["body", 1], "json_invalid"),
        (b"\xff\xfe{}", None, ["body", 0], "json_invalid"),
        (b'{"prompt": "\xc3"}', None, ["body", 12], "json_invalid"),
        (b'{"prompt": NaN}', None, ["body"], "json_invalid"),
        (b'{"prompt": "x", "n": Infinity}', None, ["body"], "json_invalid"),
        (b"[" * 100_000, None, ["body"], "json_invalid"),
        (b"9" * 5000, None, ["body"], "json_invalid"),
        (b"[1, 2]", None, ["body"], "model_attributes_type"),
        (b'"text"', None, ["body"], "model_attributes_type"),
        (b"3", None, ["body"], "model_attributes_type"),
        (b"null", None, ["body"], "model_attributes_type"),
        (b"prompt=x", "application/x-www-form-urlencoded", ["body"], "model_attributes_type"),
        (b'{"prompt": "x"}', "text/plain", ["body"], "model_attributes_type"),
    ],
)
def test_bodies_that_are_not_json_objects(
    data: bytes, content_type: str | None, loc: list[Any], type_: str
) -> None:
    (item,) = raw_detail(data, content_type)
    assert (item["loc"], item["type"]) == (loc, type_)


def test_huge_numbers_are_range_errors_not_crashes() -> None:
    items = raw_detail(b'{"model": "m", "prompt": "x", "temperature": 1e400, "n": 1e400}')
    assert {(tuple(i["loc"]), i["type"]) for i in items} == {
        (("body", "temperature"), "less_than_equal"),
        (("body", "n"), "int_type"),
        (("body", "n"), "less_than_equal"),
    }
    items = raw_detail(b'{"model": "m", "prompt": "x", "seed": ' + b"9" * 100 + b"}")
    assert [i["type"] for i in items] == ["less_than_equal"]


def test_json_parser_accepts_what_json_accepts() -> None:
    assert parse_json_body(b' {"a": [1, 2.5, "\\u00e9"]} ', "application/json") == {
        "a": [1, 2.5, "é"]
    }


INVALID_BODIES = [
    {"messages": [USER]},
    {"model": "m", "messages": [{"role": "bogus"}, {"role": "user"}], "temperature": 3},
    {"model": "m", "messages": [USER], "stop": ["", 3], "logit_bias": {"x": 1, "2": 500}},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "image"}]}], "n": 0},
    {"model": 5, "messages": "hi", "response_format": {"type": "json_schema"}},
    {"model": "m", "messages": [USER], "metadata": {"k": 1}, "tools": [{"type": "x"}]},
]


@pytest.mark.parametrize("body", INVALID_BODIES)
def test_the_fast_check_explains_like_jsonschema_alone(body: dict[str, Any]) -> None:
    from reference.validation import detail_items

    fast = detail("createChatCompletion", body)
    python_only = CONTRACT.request_validator(CONTRACT.operation("createChatCompletion"))
    assert python_only is not None
    slow = detail_items(python_only.iter_errors(body))
    key = lambda item: (json.dumps(item["loc"]), item["type"], item["msg"])  # noqa: E731
    # The same problems; jsonschema alone may list one twice (from both branches of an allOf).
    assert sorted(map(key, fast)) == sorted(set(map(key, slow)))


def test_a_huge_valid_body_is_validated_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    # jsonschema alone takes about 28 s for this; the Rust pre-check about 0.1 s. Asserted on
    # the mechanism, not the clock: a valid body never reaches the Python validator.
    body = {"model": "m", "messages": [USER] * 80_000}
    data = json.dumps(body).encode()
    checker = validator("createChatCompletion")

    def slow_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a valid body went through jsonschema")

    monkeypatch.setattr(checker, "_body", SimpleNamespace(iter_errors=slow_path))
    assert checker.parse_and_validate(data, None) == body
    monkeypatch.undo()
    body["messages"].append({"role": "bogus"})
    (item,) = detail("createChatCompletion", body)
    assert item["loc"] == ["body", "messages", 80_000, "role"]


TEXT_PART = {"type": "text", "text": "x"}
FLOODS = {
    # name: (body, the loc of the first detail item, its type)
    "wrong items": ({"messages": [1] * 1_000_000}, ["messages", 0], "dict_type"),
    "one wrong item after many": (
        {"messages": [USER] * 100_000 + [1]},
        ["messages", 100_000],
        "dict_type",
    ),
    "a wrong part deep in a late message": (
        {"messages": [USER] * 5_000 + [{"role": "user", "content": [TEXT_PART] * 3_000 + [1]}]},
        ["messages", 5_000, "content", 3_000],
        "dict_type",
    ),
    "wrong stop items": ({"messages": [USER], "stop": [1] * 500_000}, ["stop"], "too_long"),
    "too many right tools": (
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}] * 50_000},
        ["tools"],
        "too_long",
    ),
    "wrong logit_bias keys": (
        {"messages": [USER], "logit_bias": {f"k{i}": 1 for i in range(300_000)}},
        ["logit_bias", "k0"],
        "string_pattern_mismatch",
    ),
}


@pytest.mark.parametrize("name", FLOODS)
def test_a_flood_is_explained_without_building_its_errors(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `jsonschema_rs` builds every error before the first is read (a million wrong items took
    # gigabytes), and `jsonschema` walks a large body for seconds: neither may see the flood.
    fields, loc, type_ = FLOODS[name]
    checker = validator("createChatCompletion")
    counting = RecordingValidator(checker._fast._validator)
    monkeypatch.setattr(checker._fast, "_validator", counting)

    def slow_path(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a large body went through jsonschema")

    monkeypatch.setattr(checker, "_body", SimpleNamespace(iter_errors=slow_path))
    with pytest.raises(RequestValidationError) as failure:
        checker.validate_body({"model": "m", **fields})
    first = failure.value.detail[0]
    assert (first["loc"], first["type"]) == (["body", *loc], type_)
    assert counting.sizes and max(counting.sizes) < 20_000
