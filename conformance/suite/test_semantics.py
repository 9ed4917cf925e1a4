"""SEM-*: what the schema cannot see: token counts, stop sequences, choices, models, repeatability.

The base request of each generating operation is its spec example made deterministic
(``temperature: 0``, a seed from the run, ``max_tokens: 8``, one choice, no stop sequence); on a
path with a model, the body names a *different* served model, so that the path-wins rule is
tested by the same answer. Its plain and streamed answers are fetched once and shared. Every
rule that holds "streamed or not" judges a stream of the same request as strictly as the plain
answer, most on the response the stream adds up to (``streamed_response``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from conformance.checks import Finding, choices
from conformance.checks.fields import streamed_response
from conformance.checks.semantics import (
    check_completion_text,
    check_max_tokens,
    check_models_scoped,
    check_n_choices,
    check_path_model,
    check_seed_repeatable,
    check_stop_absent,
    check_stop_prefix,
    check_stream_agrees,
    check_streamed_n_choices,
    check_streamed_path_model,
    check_streamed_text_deltas,
    check_usage_sum,
    choice_texts,
)
from conformance.checks.streaming import StreamObservation, streamed_texts
from conformance.exchange import Exchange, StreamResult
from conformance.suite._judgement import Judgement
from conformance.suite._operations import MODEL_FIELD, enum_path_parameters, path_values
from conformance.suite._probe import (
    answer_of,
    per_operation,
    plain_body,
    send,
    stream,
    stream_observation,
    streamed_pair,
)
from conformance.suite._requests import json_request
from conformance.suite._run import Run
from spec import Operation


def _plain(run: Run, operation: Operation) -> Exchange:
    return run.cached(
        ("plain", operation.label), lambda: send(run, operation, plain_body(run, operation))
    )


def _plain_answer(
    judgement: Judgement, operation: Operation
) -> tuple[Exchange, dict[str, Any] | None]:
    """The shared plain answer: the exchange, and its JSON object if it is a usable 200."""
    exchange = _plain(judgement.run, operation)
    return exchange, answer_of(judgement, exchange)


def _streamed_plain(run: Run, operation: Operation) -> StreamResult:
    return run.cached(
        ("streamed-plain", operation.label),
        lambda: stream(run, operation, plain_body(run, operation)),
    )


def _shown(exchange: Exchange) -> str:
    """The start of an earlier answer, for the evidence of a comparison."""
    return exchange.body[:2000].decode("utf-8", "replace")


requirement = pytest.mark.requirement


@requirement("SEM-MAX-TOKENS", applies_to="streaming")
@per_operation
def test_max_tokens_respected(judgement: Judgement, operation: Operation) -> None:
    """completion_tokens stays within max_tokens; 'length' when it hits it; also streamed.

    Streamed, the usage chunk and the finishing chunk are judged as the plain answer is, and
    no choice may stream more deltas that carry text than the limit.
    """
    run = judgement.run
    for limit in (1, 3):
        body = {**plain_body(run, operation), "max_tokens": limit}
        exchange = send(run, operation, body)
        answer = answer_of(judgement, exchange)
        if answer is not None:
            judgement.findings(
                check_max_tokens(answer, limit), exchange=exchange, extra={"max_tokens": limit}
            )
        result = stream(run, operation, body)
        observation = stream_observation(judgement, result)
        if observation is not None:
            findings = check_max_tokens(
                streamed_response(observation), limit, where="the stream"
            ) + check_streamed_text_deltas(observation, limit)
            judgement.findings(findings, stream=result, extra={"max_tokens": limit})


@requirement("SEM-USAGE-SUM", applies_to="streaming")
@per_operation
def test_usage_adds_up(judgement: Judgement, operation: Operation) -> None:
    """total_tokens is prompt_tokens + completion_tokens, plain and streamed."""
    exchange, answer = _plain_answer(judgement, operation)
    if answer is not None and isinstance(answer.get("usage"), Mapping):
        judgement.findings(check_usage_sum(answer["usage"]), exchange=exchange)
    result = _streamed_plain(judgement.run, operation)
    observation = stream_observation(judgement, result)
    if observation is not None:
        findings: list[Finding] = []
        for chunk in observation.chunks:
            usage = chunk.body.get("usage")
            if isinstance(usage, Mapping):
                findings += check_usage_sum(usage, f"the usage chunk (event {chunk.number})")
        judgement.findings(findings, stream=result)


def _stop_sequence(text: str) -> str | None:
    """A short piece from the middle of ``text`` that generation would reach again."""
    stripped = text.strip()
    if len(stripped) < 4:
        return None
    middle = text.index(stripped) + len(stripped) // 2
    piece = text[middle : middle + 3]
    return piece if piece.strip() else None


@requirement("SEM-STOP-ABSENT", applies_to="streaming")
@per_operation
def test_stop_sequence_absent(judgement: Judgement, operation: Operation) -> None:
    """A requested stop sequence never appears in the text."""
    run = judgement.run
    answer = answer_of(judgement, _plain(run, operation))
    if answer is not None:
        stop = _stop_sequence(choice_texts(answer).get(0, ""))
        if stop is None:
            judgement.not_applicable(
                "the target's answer had too little text to pick a stop sequence from"
            )
        else:
            body = {**plain_body(run, operation), "stop": [stop]}
            exchange = send(run, operation, body)
            stopped = answer_of(judgement, exchange)
            if stopped is not None:
                judgement.findings(
                    check_stop_absent(choice_texts(stopped), [stop]), exchange=exchange
                )
            result = stream(run, operation, body)
            observation = stream_observation(judgement, result)
            if observation is not None:
                texts = streamed_texts(observation)
                findings = check_stop_absent(texts, [stop], "the streamed answer")
                if stopped is not None:
                    findings += check_stop_prefix(texts, choice_texts(stopped), [stop])
                judgement.findings(
                    findings, stream=result, extra={"plain_answer": _shown(exchange)}
                )


@requirement("SEM-N-CHOICES", applies_to="streaming")
@per_operation
def test_n_choices(judgement: Judgement, operation: Operation) -> None:
    """n=2 gives two choices, indexed 0 and 1, plain and streamed."""
    run = judgement.run
    body = {**plain_body(run, operation), "n": 2, "max_tokens": 4}
    exchange = send(run, operation, body)
    if exchange.status == 400:
        judgement.not_applicable("the target refused n=2 with 400, which the contract allows")
        return
    answer = answer_of(judgement, exchange)
    if answer is not None:
        judgement.findings(check_n_choices(answer, 2), exchange=exchange)
    result = streamed_pair(run, operation)
    observation = stream_observation(judgement, result)
    if observation is not None:
        indexes = [
            choice.get("index") for chunk in observation.chunks for choice in choices(chunk.body)
        ]
        judgement.findings(check_streamed_n_choices(indexes, 2), stream=result)


@requirement("SEM-PATH-MODEL", applies_to="path-model")
@per_operation
def test_path_model_wins(judgement: Judgement, operation: Operation) -> None:
    """On a path with a model, the answer names the path model, and so does every chunk."""
    run = judgement.run
    path_model = path_values(run.contract, operation)[MODEL_FIELD]
    body_model = plain_body(run, operation).get(MODEL_FIELD)
    exchange, answer = _plain_answer(judgement, operation)
    if answer is not None:
        judgement.findings(check_path_model(answer, path_model, body_model), exchange=exchange)
    result = _streamed_plain(run, operation)
    observation = stream_observation(judgement, result)
    if observation is not None:
        findings = check_streamed_path_model(observation, path_model, body_model)
        judgement.findings(findings, stream=result)


@requirement("SEM-MODELS-SCOPED", applies_to="scoped-models")
@per_operation
def test_scoped_models_list(judgement: Judgement, operation: Operation) -> None:
    """A path-scoped models list holds just the path model."""
    run = judgement.run
    enums = dict((p.name, values) for p, values in enum_path_parameters(run.contract, operation))
    count = len(enums.get(MODEL_FIELD, [None]))
    for variant in sorted({0, count - 1}):
        request = json_request(run.contract, operation, None, variant=variant)
        exchange = run.send(request)
        answer = answer_of(judgement, exchange)
        if answer is not None:
            path_model = path_values(run.contract, operation, variant)[MODEL_FIELD]
            judgement.findings(check_models_scoped(answer, path_model), exchange=exchange)


@requirement("SEM-SEED-REPEATABLE", applies_to="streaming")
@per_operation
def test_seed_repeatable(judgement: Judgement, operation: Operation) -> None:
    """The same seeded request gives the same text twice, plain and streamed."""
    run = judgement.run
    greedy = plain_body(run, operation)
    sampling = {**greedy, "temperature": 1.0}
    for setting, body, first, first_stream in (
        ("temperature 0", greedy, _plain(run, operation), _streamed_plain(run, operation)),
        ("temperature 1", sampling, None, None),
    ):
        first = first or send(run, operation, body)
        second = send(run, operation, body)
        answers = [answer_of(judgement, first), answer_of(judgement, second)]
        if answers[0] is not None and answers[1] is not None:
            findings = check_seed_repeatable(
                choice_texts(answers[0]),
                choice_texts(answers[1]),
                f"seed {body['seed']}, {setting}",
            )
            judgement.findings(findings, exchange=second, extra={"first_answer": _shown(first)})
        if first_stream is not None or run.settings.profile.field_probes_full:
            # quick runs stream only the greedy pair: sampling streams cost two generations
            _judge_streams_repeat(judgement, operation, body, setting, first_stream)


def _judge_streams_repeat(
    judgement: Judgement,
    operation: Operation,
    body: Mapping[str, Any],
    setting: str,
    first: StreamResult | None,
) -> None:
    """SEM-SEED-REPEATABLE for streams: two streams of ``body`` carry the same texts."""
    run = judgement.run
    results = [first or stream(run, operation, body), stream(run, operation, body)]
    observed: list[StreamObservation] = []
    for result in results:
        observation = stream_observation(judgement, result)
        if observation is None:
            return
        observed.append(observation)
    texts = [streamed_texts(observation) for observation in observed]
    findings = check_seed_repeatable(
        texts[0], texts[1], f"seed {body['seed']}, {setting}, streamed twice"
    )
    judgement.findings(findings, stream=results[1], extra={"first_stream_texts": texts[0]})


@requirement("SEM-STREAM-AGREES", applies_to="streaming")
@per_operation
def test_stream_agrees(judgement: Judgement, operation: Operation) -> None:
    """Streamed and plain answers to one seeded request agree."""
    plain, answer = _plain_answer(judgement, operation)
    result = _streamed_plain(judgement.run, operation)
    observation = stream_observation(judgement, result)
    if answer is not None and observation is not None:
        usage_chunks = [
            c.body["usage"] for c in observation.chunks if isinstance(c.body.get("usage"), Mapping)
        ]
        usage = usage_chunks[-1] if usage_chunks else None
        findings = check_stream_agrees(answer, streamed_texts(observation), usage)
        judgement.findings(findings, stream=result, extra={"plain_answer": _shown(plain)})


@requirement("SEM-COMPLETION-TEXT", applies_to="text-choice")
@per_operation
def test_completion_text(judgement: Judgement, operation: Operation) -> None:
    """A completions choice's text equals its message.content."""
    exchange, answer = _plain_answer(judgement, operation)
    if answer is not None:
        judgement.findings(check_completion_text(answer), exchange=exchange)
