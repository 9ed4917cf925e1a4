"""SEM-*: what the schema cannot see: token counts, stop sequences, choices, models, repeatability.

The base request of each generating operation is its spec example made deterministic
(``temperature: 0``, a seed from the run, ``max_tokens: 8``, one choice, no stop sequence); on a
path with a model, the body names a *different* served model, so that the path-wins rule is
tested by the same answer. Its plain and streamed answers are fetched once and shared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from conformance.checks import Finding
from conformance.checks.semantics import (
    check_completion_text,
    check_max_tokens,
    check_models_scoped,
    check_n_choices,
    check_path_model,
    check_seed_repeatable,
    check_stop_absent,
    check_stream_agrees,
    check_usage_sum,
    choice_texts,
)
from conformance.checks.streaming import StreamObservation, streamed_texts
from conformance.suite._draw import derive_seed
from conformance.suite._judgement import Judgement
from conformance.suite._operations import MODEL_FIELD, enum_path_parameters, path_values
from conformance.suite._requests import example_body, json_request
from conformance.suite._run import Run
from conformance.transport import Exchange, StreamResult
from spec import Operation

_DROPPED = (
    "stream",
    "stream_options",
    "n",
    "best_of",
    "stop",
    "max_completion_tokens",
    "logprobs",
    "echo",
)
_TOKENS = 8


def _seed(run: Run) -> int:
    return derive_seed(run.settings.seed, "semantics") % (2**31)


def _plain_body(run: Run, operation: Operation) -> dict[str, Any]:
    body = {
        k: v
        for k, v in example_body(run.contract, operation, run.served_models).items()
        if k not in _DROPPED
    }
    body.update({"temperature": 0, "seed": _seed(run), "max_tokens": _TOKENS})
    path_model = path_values(run.contract, operation).get(MODEL_FIELD)
    if path_model is not None:
        others = [m for m in run.served_models if m != path_model]
        if others:
            body[MODEL_FIELD] = others[0]
    return body


def _send(run: Run, operation: Operation, body: dict[str, Any]) -> Exchange:
    return run.send(json_request(run.contract, operation, body))


def _stream(run: Run, operation: Operation, body: dict[str, Any]) -> StreamResult:
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    return run.stream(json_request(run.contract, operation, streamed))


def _plain(run: Run, operation: Operation) -> Exchange:
    return run.cached(
        ("plain", operation.label), lambda: _send(run, operation, _plain_body(run, operation))
    )


def _streamed_plain(run: Run, operation: Operation) -> StreamResult:
    return run.cached(
        ("streamed-plain", operation.label),
        lambda: _stream(run, operation, _plain_body(run, operation)),
    )


def _answer(judgement: Judgement, exchange: Exchange) -> dict[str, Any] | None:
    """The JSON object of a 200 answer; otherwise count the sample as an error or not applicable."""
    if exchange.status is None:
        judgement.transport_error(exchange)
        return None
    if exchange.status != 200:
        judgement.not_applicable(
            f"the target answered {exchange.status} to the spec's example request "
            "(a 400 may refuse it; other statuses are judged by the SCHEMA and ERR rules)"
        )
        return None
    try:
        value = json.loads(exchange.body)
    except ValueError:
        judgement.not_applicable("the 200 answer is not JSON (judged by SCHEMA-RESPONSE-VALID)")
        return None
    if not isinstance(value, dict):
        judgement.not_applicable(
            "the 200 answer is not a JSON object (judged by SCHEMA-RESPONSE-VALID)"
        )
        return None
    return value


def _stream_observation(judgement: Judgement, result: StreamResult) -> StreamObservation | None:
    if result.exchange.status is None:
        judgement.transport_error(result.exchange, stream=result)
        return None
    if result.exchange.status != 200 or result.ended_by != "eof":
        judgement.not_applicable(
            f"the streamed request got {result.exchange.status}, reading ended by "
            f"{result.ended_by} (judged by the STREAM rules)"
        )
        return None
    return StreamObservation.from_result(result, include_usage=True)


def _none(judgement: Judgement, operation: Operation | None) -> bool:
    if operation is None:
        judgement.not_applicable("the spec has no operation this rule applies to")
        judgement.conclude()
        return True
    return False


requirement = pytest.mark.requirement


@requirement("SEM-MAX-TOKENS", applies_to="streaming")
def test_max_tokens_respected(judgement: Judgement, operation: Operation | None) -> None:
    """completion_tokens stays within max_tokens; 'length' when it hits it."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    for limit in (1, 3):
        exchange = _send(run, operation, {**_plain_body(run, operation), "max_tokens": limit})
        answer = _answer(judgement, exchange)
        if answer is not None:
            judgement.findings(
                check_max_tokens(answer, limit), exchange=exchange, extra={"max_tokens": limit}
            )
    judgement.conclude()


@requirement("SEM-USAGE-SUM", applies_to="streaming")
def test_usage_adds_up(judgement: Judgement, operation: Operation | None) -> None:
    """total_tokens is prompt_tokens + completion_tokens, plain and streamed."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    exchange = _plain(run, operation)
    answer = _answer(judgement, exchange)
    if answer is not None and isinstance(answer.get("usage"), Mapping):
        judgement.findings(check_usage_sum(answer["usage"]), exchange=exchange)
    result = _streamed_plain(run, operation)
    observation = _stream_observation(judgement, result)
    if observation is not None:
        findings: list[Finding] = []
        for chunk in observation.chunks:
            usage = chunk.body.get("usage")
            if isinstance(usage, Mapping):
                findings += check_usage_sum(usage, f"the usage chunk (event {chunk.number})")
        judgement.findings(findings, stream=result)
    judgement.conclude()


def _stop_sequence(text: str) -> str | None:
    """A short piece from the middle of ``text`` that generation would reach again."""
    stripped = text.strip()
    if len(stripped) < 4:
        return None
    middle = text.index(stripped) + len(stripped) // 2
    piece = text[middle : middle + 3]
    return piece if piece.strip() else None


@requirement("SEM-STOP-ABSENT", applies_to="streaming")
def test_stop_sequence_absent(judgement: Judgement, operation: Operation | None) -> None:
    """A requested stop sequence never appears in the text."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    answer = _answer(judgement, _plain(run, operation))
    if answer is not None:
        stop = _stop_sequence(choice_texts(answer).get(0, ""))
        if stop is None:
            judgement.not_applicable(
                "the target's answer had too little text to pick a stop sequence from"
            )
        else:
            body = {**_plain_body(run, operation), "stop": [stop]}
            exchange = _send(run, operation, body)
            stopped = _answer(judgement, exchange)
            if stopped is not None:
                judgement.findings(
                    check_stop_absent(choice_texts(stopped), [stop]), exchange=exchange
                )
            result = _stream(run, operation, body)
            observation = _stream_observation(judgement, result)
            if observation is not None:
                texts = streamed_texts(observation)
                judgement.findings(
                    check_stop_absent(texts, [stop], "the streamed answer"), stream=result
                )
    judgement.conclude()


@requirement("SEM-N-CHOICES", applies_to="streaming")
def test_n_choices(judgement: Judgement, operation: Operation | None) -> None:
    """n=2 gives two choices, indexed 0 and 1."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    exchange = _send(run, operation, {**_plain_body(run, operation), "n": 2, "max_tokens": 4})
    if exchange.status == 400:
        judgement.not_applicable("the target refused n=2 with 400, which the contract allows")
    else:
        answer = _answer(judgement, exchange)
        if answer is not None:
            judgement.findings(check_n_choices(answer, 2), exchange=exchange)
    judgement.conclude()


@requirement("SEM-PATH-MODEL", applies_to="path-model")
def test_path_model_wins(judgement: Judgement, operation: Operation | None) -> None:
    """On a path with a model, the answer names the path model."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    exchange = _plain(run, operation)
    answer = _answer(judgement, exchange)
    if answer is not None:
        path_model = path_values(run.contract, operation)[MODEL_FIELD]
        body_model = _plain_body(run, operation).get(MODEL_FIELD)
        judgement.findings(check_path_model(answer, path_model, body_model), exchange=exchange)
    judgement.conclude()


@requirement("SEM-MODELS-SCOPED", applies_to="scoped-models")
def test_scoped_models_list(judgement: Judgement, operation: Operation | None) -> None:
    """A path-scoped models list holds just the path model."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    enums = dict((p.name, values) for p, values in enum_path_parameters(run.contract, operation))
    count = len(enums.get(MODEL_FIELD, [None]))
    for variant in sorted({0, count - 1}):
        request = json_request(run.contract, operation, None, variant=variant)
        exchange = run.send(request)
        answer = _answer(judgement, exchange)
        if answer is not None:
            path_model = path_values(run.contract, operation, variant)[MODEL_FIELD]
            judgement.findings(check_models_scoped(answer, path_model), exchange=exchange)
    judgement.conclude()


@requirement("SEM-SEED-REPEATABLE", applies_to="streaming")
def test_seed_repeatable(judgement: Judgement, operation: Operation | None) -> None:
    """The same seeded request gives the same text twice."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    greedy = _plain_body(run, operation)
    sampling = {**greedy, "temperature": 1.0}
    for setting, body, first in (
        ("temperature 0", greedy, _plain(run, operation)),
        ("temperature 1", sampling, None),
    ):
        first = first or _send(run, operation, body)
        second = _send(run, operation, body)
        answers = [_answer(judgement, first), _answer(judgement, second)]
        if answers[0] is not None and answers[1] is not None:
            findings = check_seed_repeatable(
                choice_texts(answers[0]),
                choice_texts(answers[1]),
                f"seed {body['seed']}, {setting}",
            )
            judgement.findings(
                findings,
                exchange=second,
                extra={"first_answer": first.body[:2000].decode("utf-8", "replace")},
            )
    judgement.conclude()


@requirement("SEM-STREAM-AGREES", applies_to="streaming")
def test_stream_agrees(judgement: Judgement, operation: Operation | None) -> None:
    """Streamed and plain answers to one seeded request agree."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    plain = _plain(run, operation)
    answer = _answer(judgement, plain)
    result = _streamed_plain(run, operation)
    observation = _stream_observation(judgement, result)
    if answer is not None and observation is not None:
        usage_chunks = [
            c.body["usage"] for c in observation.chunks if isinstance(c.body.get("usage"), Mapping)
        ]
        usage = usage_chunks[-1] if usage_chunks else None
        findings = check_stream_agrees(answer, streamed_texts(observation), usage)
        judgement.findings(
            findings,
            stream=result,
            extra={"plain_answer": plain.body[:2000].decode("utf-8", "replace")},
        )
    judgement.conclude()


@requirement("SEM-COMPLETION-TEXT", applies_to="text-choice")
def test_completion_text(judgement: Judgement, operation: Operation | None) -> None:
    """A completions choice's text equals its message.content."""
    if _none(judgement, operation):
        return
    assert operation is not None
    run = judgement.run
    exchange = _plain(run, operation)
    answer = _answer(judgement, exchange)
    if answer is not None:
        judgement.findings(check_completion_text(answer), exchange=exchange)
    judgement.conclude()
