"""STREAM-*: the stream-level rules, for every operation whose 200 documents an event stream.

Each operation is asked a few streamed requests, once per run and shared by all the STREAM
tests: its spec examples with ``"stream": true`` (with and without ``include_usage``, and with
two choices), and a few bodies that hypothesis generates from the capped request schema. Each
answer is read event by event under the request deadline, then judged by every STREAM rule.
STREAM-INCREMENTAL reads one longer stream of its own, whose arrival times also give the run's
stream timings (information beside the verdicts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from conformance.checks.streaming import EVENT_STREAM, STREAM_CHECKS, StreamObservation
from conformance.checks.timings import MIN_CONTENT_EVENTS, StreamTimings, check_incremental
from conformance.exchange import RequestSpec, StreamResult
from conformance.suite._draw import derive_seed, draw
from conformance.suite._judgement import Judgement
from conformance.suite._operations import (
    MODEL_FIELD,
    chunk_validator,
    fill_path,
    request_schema,
)
from conformance.suite._probe import (
    per_operation,
    plain_body,
    stream,
    stream_observation,
    streamed_pair,
    with_user_text,
)
from conformance.suite._requests import example_body, json_request
from conformance.suite._run import Run
from conformance.suite._schemathesis import build_schema
from spec import Operation

STREAM_FIELD, OPTIONS_FIELD, USAGE_FLAG = "stream", "stream_options", "include_usage"
N_FIELD = "n"


@dataclass(frozen=True)
class StreamSample:
    """What came back to one streamed request."""

    result: StreamResult
    observation: StreamObservation


def _streamed(body: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    body = {**body, STREAM_FIELD: True}
    body.pop(OPTIONS_FIELD, None)
    if include_usage:
        body[OPTIONS_FIELD] = {USAGE_FLAG: True}
    return body


def _requests(run: Run, operation: Operation) -> list[tuple[RequestSpec, bool]]:
    example = example_body(run.contract, operation, run.served_models)
    requests = [
        (json_request(run.contract, operation, _streamed(example, True)), True),
        (json_request(run.contract, operation, _streamed(example, False), variant=1), False),
    ]
    count = run.settings.profile.stream_samples
    if count:
        schema = run.cached("schemathesis-positive", lambda: build_schema(run, "positive"))
        api_operation = schema.find_operation_by_label(operation.label)
        seed = derive_seed(run.settings.seed, "stream", operation.label)
        for index, case in enumerate(draw(api_operation.as_strategy(), count, seed)):
            if not isinstance(case.body, dict):
                continue
            body = dict(case.body)
            served = run.served_models
            if served and body.get(MODEL_FIELD) not in (None, *served):
                body[MODEL_FIELD] = served[0]
            include_usage = index % 2 == 0
            values = {k: str(v) for k, v in (case.path_parameters or {}).items()}
            path = fill_path(operation.path, values)
            requests.append(
                (
                    json_request(
                        run.contract, operation, _streamed(body, include_usage), path=path
                    ),
                    include_usage,
                )
            )
    return requests


def _samples(run: Run, operation: Operation) -> list[StreamSample]:
    def collect() -> list[StreamSample]:
        samples = []
        for request, include_usage in _requests(run, operation):
            result = run.stream(request)
            observation = StreamObservation.from_result(
                result, include_usage=include_usage, timeout=run.settings.timeout
            )
            samples.append(StreamSample(result, observation))
        # Two choices, so that the per-choice rules (role first, one finish_reason) see n > 1.
        if N_FIELD in request_schema(run.contract, operation)["properties"]:
            result = streamed_pair(run, operation)
            observation = StreamObservation.from_result(
                result, include_usage=True, timeout=run.settings.timeout
            )
            samples.append(StreamSample(result, observation))
        return samples

    return run.cached(("stream-samples", operation.label), collect)


def _judge(judgement: Judgement, operation: Operation | None) -> None:
    if operation is None:
        judgement.not_applicable("the spec documents no streaming operation")
        judgement.conclude()
        return
    run = judgement.run
    validator = chunk_validator(run.contract, operation)
    check = STREAM_CHECKS[judgement.requirement_id]
    for sample in _samples(run, operation):
        exchange = sample.result.exchange
        if exchange.status is None:
            judgement.transport_error(exchange, stream=sample.result)
            continue
        if not sample.observation.accepted:
            judgement.not_applicable(
                f"the target refused the streamed request with {exchange.status} "
                "(judged by the SCHEMA rules, not the stream rules)"
            )
            continue
        if (
            judgement.requirement_id != "STREAM-CONTENT-TYPE"
            and sample.observation.media_type != EVENT_STREAM
            and not sample.observation.events
        ):
            judgement.not_applicable(
                f"the answer is {sample.observation.media_type!r}, not an event stream "
                "(judged by STREAM-CONTENT-TYPE)"
            )
            continue
        if sample.result.ended_by == "error" and judgement.requirement_id == "STREAM-ENDS":
            judgement.transport_error(exchange, stream=sample.result)
            continue
        judgement.findings(check(sample.observation, validator), stream=sample.result)
    judgement.conclude()


requirement = pytest.mark.requirement


@requirement("STREAM-CONTENT-TYPE", applies_to="streaming")
def test_stream_is_event_stream(judgement: Judgement, operation: Operation | None) -> None:
    """An accepted streamed request gets 200 and text/event-stream."""
    _judge(judgement, operation)


@requirement("STREAM-FRAMING", applies_to="streaming")
def test_stream_framing(judgement: Judgement, operation: Operation | None) -> None:
    """Every event is one `data: <JSON>` line and a blank line, WHATWG framing."""
    _judge(judgement, operation)


@requirement("STREAM-EVENT-JSON", applies_to="streaming")
def test_events_are_valid_chunks(judgement: Judgement, operation: Operation | None) -> None:
    """Every event but [DONE] is a JSON chunk valid against the spec."""
    _judge(judgement, operation)


@requirement("STREAM-DONE-LAST", applies_to="streaming")
def test_done_once_and_last(judgement: Judgement, operation: Operation | None) -> None:
    """[DONE] comes exactly once, last, with nothing after it."""
    _judge(judgement, operation)


@requirement("STREAM-IDS-CONSTANT", applies_to="streaming")
def test_ids_constant(judgement: Judgement, operation: Operation | None) -> None:
    """Every chunk has the same id, created and model."""
    _judge(judgement, operation)


@requirement("STREAM-ROLE-FIRST", applies_to="delta-streaming")
def test_role_in_first_delta(judgement: Judgement, operation: Operation | None) -> None:
    """Each choice's first delta carries role 'assistant'."""
    _judge(judgement, operation)


@requirement("STREAM-FINISH-ONCE", applies_to="streaming")
def test_finish_reason_once(judgement: Judgement, operation: Operation | None) -> None:
    """Each choice's finish_reason is non-null exactly once."""
    _judge(judgement, operation)


@requirement("STREAM-USAGE", applies_to="streaming")
def test_usage_chunk(judgement: Judgement, operation: Operation | None) -> None:
    """The usage chunk comes if and only if include_usage was asked for."""
    _judge(judgement, operation)


@requirement("STREAM-ENDS", applies_to="streaming")
def test_stream_ends(judgement: Judgement, operation: Operation | None) -> None:
    """The server ends the stream within the request timeout."""
    _judge(judgement, operation)


LONG_STREAM_TOKENS = 32
"""``max_tokens`` of STREAM-INCREMENTAL's stream: long enough for its arrival times to show
whether it was sent as generated (a third of a second of generation here), short enough for
the quick profile."""
LONG_STREAM_ASK = "Tell me a long story about a lighthouse keeper and the sea."
"""The chat request of that stream."""
LONG_STREAM_OPENING = "Once upon a time, in a small village by the sea, there lived"
"""Its prompt for completions: a text that a model goes on with (a request may end at once)."""


@requirement("STREAM-INCREMENTAL", applies_to="streaming")
@per_operation
def test_stream_is_incremental(judgement: Judgement, operation: Operation) -> None:
    """A long stream's content events arrive as generated, not held back and sent together.

    Its time to first token, inter-token latency and tokens/s are recorded with the case,
    whatever the verdict.
    """
    run = judgement.run
    base = plain_body(run, operation)
    text = LONG_STREAM_ASK if "messages" in base else LONG_STREAM_OPENING
    body = {**with_user_text(base, text), "max_tokens": LONG_STREAM_TOKENS}
    result = stream(run, operation, body)
    observation = stream_observation(judgement, result)
    if observation is None:
        return
    timings = StreamTimings.of(observation)
    judgement.measure(timings.measurements())
    if len(timings.arrivals) < MIN_CONTENT_EVENTS:
        judgement.not_applicable(
            f"the stream carried {len(timings.arrivals)} content events, fewer than "
            f"{MIN_CONTENT_EVENTS}: too short to tell"
        )
        return
    judgement.findings(check_incremental(timings), stream=result)


@requirement("STREAM-ERROR-EVENT", applies_to="streaming")
def test_error_event_ends_the_stream(judgement: Judgement, operation: Operation | None) -> None:
    """A failure after the 200 is one error event, followed by [DONE] alone."""
    _judge(judgement, operation)
