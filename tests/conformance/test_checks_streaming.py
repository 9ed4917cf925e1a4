"""The stream checks on synthetic streams: a good one passes all, each flaw fails exactly one."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

import spec
from conformance.checks.streaming import (
    STREAM_CHECKS,
    StreamObservation,
    check_done_last,
    check_ends,
    streamed_texts,
)
from conformance.suite._operations import chunk_validator

CONTRACT = spec.contract()
CHAT = CONTRACT.operation("createChatCompletion")
COMPLETION = CONTRACT.operation("createCompletion")


def chunk(
    index: int = 0,
    *,
    role: bool = False,
    content: str | None = "x",
    finish: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    delta: dict[str, Any] = {"content": content}
    if role:
        delta = {"role": "assistant", "content": ""}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "mythomax",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    body.update(extra)
    return body


def usage_chunk() -> dict[str, Any]:
    return {
        **chunk(),
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


ERROR_EVENT = dict(
    spec.contract().resolve("/components/responses/InternalError/content/application~1json/example")
)


def good_chunks(include_usage: bool) -> list[dict[str, Any]]:
    chunks = [chunk(role=True), chunk(content="Hel"), chunk(content="lo", finish="stop")]
    return [*chunks, usage_chunk()] if include_usage else chunks


def stream(items: list[Any], *, separator: str = "\n\n") -> bytes:
    events = [f"data: {item if isinstance(item, str) else json.dumps(item)}" for item in items]
    return (separator.join(events) + separator).encode()


def observe(items: list[Any], include_usage: bool = False, **kwargs: Any) -> StreamObservation:
    return StreamObservation.from_bytes(stream(items), include_usage=include_usage, **kwargs)


def failing(observation: StreamObservation, operation: Any = CHAT) -> set[str]:
    validator = chunk_validator(CONTRACT, operation)
    return {
        finding.requirement_id
        for check in STREAM_CHECKS.values()
        for finding in check(observation, validator)
    }


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_good_stream_passes_every_check(include_usage: bool) -> None:
    observation = observe([*good_chunks(include_usage), "[DONE]"], include_usage)
    assert failing(observation) == set()


def test_comments_between_events_are_allowed() -> None:
    body = b": ping\n\n" + stream([*good_chunks(False), "[DONE]"])
    assert failing(StreamObservation.from_bytes(body)) == set()


def test_the_chunk_validator_reads_the_content_schema() -> None:
    validator = chunk_validator(CONTRACT, CHAT)
    assert validator is not None
    assert list(validator.iter_errors(chunk())) == []
    assert list(validator.iter_errors({**chunk(), "object": "chat.completion"}))
    completion_validator = chunk_validator(CONTRACT, COMPLETION)
    assert completion_validator is not None
    assert list(completion_validator.iter_errors(chunk()))  # completion chunks need `text`


def _replace(chunks: list[Any], index: int, value: Any) -> list[Any]:
    return [*chunks[:index], value, *chunks[index + 1 :]]


FLAWS: dict[str, tuple[list[Any], bool, str]] = {
    "no [DONE]": (good_chunks(False), False, "STREAM-DONE-LAST"),
    "[DONE] twice": ([*good_chunks(False), "[DONE]", "[DONE]"], False, "STREAM-DONE-LAST"),
    "a chunk after [DONE]": ([*good_chunks(False), "[DONE]", chunk()], False, "STREAM-DONE-LAST"),
    "wrong object": (
        [*_replace(good_chunks(False), 1, {**chunk(), "object": "chat.completion"}), "[DONE]"],
        False,
        "STREAM-EVENT-JSON",
    ),
    "non-JSON data": (
        [chunk(role=True), "not json", chunk(finish="stop"), "[DONE]"],
        False,
        "STREAM-EVENT-JSON",
    ),
    "id changes": (
        [*_replace(good_chunks(False), 2, {**chunk(finish="stop"), "id": "other"}), "[DONE]"],
        False,
        "STREAM-IDS-CONSTANT",
    ),
    "model changes": (
        [*_replace(good_chunks(False), 1, {**chunk(), "model": "asha"}), "[DONE]"],
        False,
        "STREAM-IDS-CONSTANT",
    ),
    "no role first": ([chunk(), chunk(finish="stop"), "[DONE]"], False, "STREAM-ROLE-FIRST"),
    "finish twice": (
        [chunk(role=True), chunk(finish="length"), chunk(finish="stop"), "[DONE]"],
        False,
        "STREAM-FINISH-ONCE",
    ),
    "never finished": ([chunk(role=True), chunk(), "[DONE]"], False, "STREAM-FINISH-ONCE"),
    "usage missing": ([*good_chunks(False), "[DONE]"], True, "STREAM-USAGE"),
    "usage unasked": ([*good_chunks(True), "[DONE]"], False, "STREAM-USAGE"),
    "usage not last": (
        [chunk(role=True), usage_chunk(), chunk(finish="stop"), "[DONE]"],
        True,
        "STREAM-USAGE",
    ),
    "usage on a content chunk": (
        [
            chunk(role=True),
            {**chunk(finish="stop"), "usage": usage_chunk()["usage"]},
            usage_chunk(),
            "[DONE]",
        ],
        True,
        "STREAM-USAGE",
    ),
    "usage key absent with include_usage": (
        [
            *[{k: v for k, v in c.items() if k != "usage"} for c in good_chunks(False)],
            usage_chunk(),
            "[DONE]",
        ],
        True,
        "STREAM-USAGE",
    ),
    "chunks after the error event": (
        [chunk(role=True), ERROR_EVENT, chunk(finish="stop"), "[DONE]"],
        False,
        "STREAM-ERROR-EVENT",
    ),
    "two error events": (
        [chunk(role=True), ERROR_EVENT, ERROR_EVENT, "[DONE]"],
        False,
        "STREAM-ERROR-EVENT",
    ),
}


@pytest.mark.parametrize("flaw", FLAWS)
def test_each_flaw_fails_exactly_its_requirement(flaw: str) -> None:
    items, include_usage, expected = FLAWS[flaw]
    assert failing(observe(items, include_usage)) == {expected}


def test_second_choice_is_judged_on_its_own() -> None:
    items = [chunk(0, role=True), chunk(1, role=True), chunk(0, finish="stop"), chunk(1), "[DONE]"]
    findings = STREAM_CHECKS["STREAM-FINISH-ONCE"](observe(items), None)
    assert len(findings) == 1
    assert "choice 1" in findings[0].message


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"event: message\ndata: {}\n\n", "event-field"),
        (b"data:{}\n\n", "data-without-space"),
        (b"data: {\ndata: }\n\n", "multi-line-data"),
        (b"id: 7\ndata: {}\n\n", "id-field"),
        (b"data: {}\n\ndata: {", "unterminated-event"),
    ],
)
def test_framing_deviations_fail_framing(body: bytes, kind: str) -> None:
    findings = STREAM_CHECKS["STREAM-FRAMING"](StreamObservation.from_bytes(body), None)
    assert len(findings) == 1
    assert kind in findings[0].message


def test_framing_is_not_judged_on_a_non_event_stream() -> None:
    observation = StreamObservation.from_bytes(
        b"event: x\ndata: 1\n\n", media_type="application/json"
    )
    assert STREAM_CHECKS["STREAM-FRAMING"](observation, None) == []
    assert {f.requirement_id for f in STREAM_CHECKS["STREAM-CONTENT-TYPE"](observation, None)} == {
        "STREAM-CONTENT-TYPE"
    }


def test_content_type_wants_200_and_event_stream() -> None:
    good = observe([*good_chunks(False), "[DONE]"])
    assert STREAM_CHECKS["STREAM-CONTENT-TYPE"](good, None) == []
    wrong_status = StreamObservation.from_bytes(stream(["[DONE]"]), status=201)
    assert "201" in STREAM_CHECKS["STREAM-CONTENT-TYPE"](wrong_status, None)[0].message


def test_a_stream_cut_at_the_deadline_fails_only_ends() -> None:
    observation = observe([*good_chunks(False), "[DONE]"], ended_by="deadline")
    assert failing(observation) == {"STREAM-ENDS"}
    assert "still open" in check_ends(observation)[0].message


def test_a_stream_cut_before_done_fails_ends_and_done_last() -> None:
    observation = observe(good_chunks(False), ended_by="deadline")
    assert failing(observation) == {"STREAM-ENDS", "STREAM-DONE-LAST"}
    assert "reading ended (deadline)" in check_done_last(observation)[0].message


def test_a_stream_that_stalled_fails_ends_saying_so() -> None:
    observation = dataclasses.replace(
        observe(good_chunks(False), ended_by="stalled"), failure="nothing arrived for 2 s"
    )
    assert failing(observation) == {"STREAM-ENDS", "STREAM-DONE-LAST"}
    message = check_ends(observation)[0].message
    assert message.startswith("the stream stalled, still open: nothing arrived for 2 s after")
    assert "reading ended (stalled)" in check_done_last(observation)[0].message


def test_an_error_event_after_200_is_allowed() -> None:
    error = {**ERROR_EVENT, "message": "boom"}
    assert failing(observe([chunk(role=True), error, "[DONE]"])) == set()


def test_findings_point_at_the_events() -> None:
    items = [*_replace(good_chunks(False), 2, {**chunk(finish="stop"), "id": "other"}), "[DONE]"]
    (finding,) = STREAM_CHECKS["STREAM-IDS-CONSTANT"](observe(items), None)
    assert finding.event_numbers == (3,)
    assert "event 3" in finding.message


def test_streamed_texts_join_deltas_per_choice() -> None:
    items = [
        chunk(0, role=True),
        chunk(1, role=True),
        chunk(0, content="a"),
        chunk(1, content="b"),
        chunk(0, content="c"),
    ]
    assert streamed_texts(observe(items)) == {0: "ac", 1: "b"}


def test_without_include_usage_the_usage_key_may_be_absent() -> None:
    bare = [{k: v for k, v in c.items() if k != "usage"} for c in good_chunks(False)]
    assert failing(observe([*bare, "[DONE]"])) == set()


def test_one_error_event_then_done_is_how_a_stream_fails() -> None:
    observation = observe([chunk(role=True), chunk(content="Hel"), ERROR_EVENT, "[DONE]"])
    assert failing(observation) == set()
    (finding,) = STREAM_CHECKS["STREAM-ERROR-EVENT"](
        observe([chunk(role=True), ERROR_EVENT, chunk(), chunk(finish="stop"), "[DONE]"]), None
    )
    assert "2 chunk(s) came after the error event 2 (events 3, 4)" in finding.message
    assert finding.event_numbers == (2, 3, 4)
