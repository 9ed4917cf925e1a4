"""SDK-*: OpenAI's official Python client reads the target's answers as it reads OpenAI's.

The suite sends each request with its own bounded transport (so that every failure has its
evidence and curl command) and hands the answer's bytes to the ``openai`` package (see
:mod:`conformance.checks.sdk`). Chat answers and streams are probed with the deterministic
base probe and with a forced tool call; errors are the ERR rules' bad requests, shared, and one
invalid request for a stream.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.checks.sdk import (
    check_chat_plain,
    check_error_raised,
    check_models,
    check_stream_matches,
    read_chat_stream,
)
from conformance.exchange import StreamResult
from conformance.suite._judgement import Judgement
from conformance.suite._operations import request_schema
from conformance.suite._probe import (
    FORCED_TOOL_CHOICE,
    per_operation,
    plain_body,
    send,
    stream,
    tool_body,
)
from conformance.suite._requests import json_request, sent_bad_requests
from conformance.suite._run import Run
from spec import Operation

requirement = pytest.mark.requirement


def _probes(run: Run, operation: Operation) -> dict[str, dict[str, Any]]:
    """The chat probes: the base one, and a forced tool call where the operation takes tools."""
    probes = {"the base probe": plain_body(run, operation)}
    if "tools" in request_schema(run.contract, operation)["properties"]:
        probes["a forced tool call"] = tool_body(run, operation, FORCED_TOOL_CHOICE)
    return probes


def _streamed(run: Run, operation: Operation, name: str, body: dict[str, Any]) -> StreamResult:
    """The probe streamed with a usage chunk; fetched once, for SDK-CHAT-STREAM and -MATCHES."""
    key = ("sdk-stream", operation.label, name)
    return run.cached(key, lambda: stream(run, operation, body))


@requirement("SDK-CHAT-PLAIN", applies_to="chat")
@per_operation
def test_chat_answers_are_chat_completions(judgement: Judgement, operation: Operation) -> None:
    """The client reads a plain chat answer, and it is valid as its ChatCompletion."""
    run = judgement.run
    for name, body in _probes(run, operation).items():
        exchange = send(run, operation, body)
        if exchange.status is None:
            judgement.transport_error(exchange)
        elif exchange.status != 200:
            judgement.not_applicable(f"{name} was answered {exchange.status}, not 200")
        else:
            findings = check_chat_plain(judgement.requirement_id, exchange)
            judgement.findings(findings, exchange=exchange, extra={"probe": name})


@requirement("SDK-CHAT-STREAM", applies_to="chat")
@per_operation
def test_chat_streams_are_read_by_the_client(judgement: Judgement, operation: Operation) -> None:
    """The client reads a chat stream to its end and its stream helper accumulates it."""
    run = judgement.run
    for name, body in _probes(run, operation).items():
        result = _streamed(run, operation, name, body)
        exchange = result.exchange
        if exchange.status is None:
            judgement.transport_error(exchange, stream=result)
        elif exchange.status != 200 or result.ended_by != "eof":
            judgement.not_applicable(
                f"{name}, streamed, got {exchange.status} and ended by {result.ended_by} "
                "(judged by the STREAM rules)"
            )
        else:
            _, findings = read_chat_stream(judgement.requirement_id, exchange, result.events)
            judgement.findings(findings, stream=result, extra={"probe": name})


@requirement("SDK-STREAM-MATCHES", applies_to="chat")
@per_operation
def test_the_accumulated_stream_is_the_plain_answer(
    judgement: Judgement, operation: Operation
) -> None:
    """What the client accumulates from a stream is the plain answer's message."""
    run, rid = judgement.run, judgement.requirement_id
    for name, body in _probes(run, operation).items():
        result = _streamed(run, operation, name, body)
        plain = send(run, operation, body)
        if result.exchange.status is None or plain.status is None:
            judgement.transport_error(plain if plain.status is None else result.exchange)
            continue
        if result.exchange.status != 200 or plain.status != 200 or result.ended_by != "eof":
            judgement.not_applicable(f"{name} was not answered 200, streamed and plain")
            continue
        final, _ = read_chat_stream(rid, result.exchange, result.events)
        if final is None:
            judgement.not_applicable(
                f"the client could not read {name}'s stream (judged by SDK-CHAT-STREAM)"
            )
            continue
        try:
            answer = json.loads(plain.body)
        except ValueError:
            judgement.not_applicable(f"{name}'s plain answer is not JSON (SCHEMA judges it)")
            continue
        judgement.findings(
            check_stream_matches(rid, final, answer), stream=result, extra={"probe": name}
        )


@requirement("SDK-MODELS", applies_to="no-body")
@per_operation
def test_model_lists_are_models(judgement: Judgement, operation: Operation) -> None:
    """The client lists the models, each valid as its Model."""
    run = judgement.run
    exchange = run.send(json_request(run.contract, operation, None))
    if exchange.status is None:
        judgement.transport_error(exchange)
    elif exchange.status != 200:
        judgement.not_applicable(f"the list was answered {exchange.status}, not 200")
    else:
        judgement.findings(check_models(judgement.requirement_id, exchange), exchange=exchange)


def _kind(run: Run, operation: Operation) -> str:
    properties = request_schema(run.contract, operation)["properties"]
    if "messages" in properties:
        return "chat"
    return "completions" if "prompt" in properties else "models"


@requirement("SDK-ERRORS", applies_to="all")
@per_operation
def test_errors_raise_the_clients_status_errors(judgement: Judgement, operation: Operation) -> None:
    """Each error answer makes the client raise its status error, with the message."""
    run, rid = judgement.run, judgement.requirement_id
    kind = _kind(run, operation)
    answers = [(sent.bad.what, sent.exchange, False) for sent in sent_bad_requests(run, operation)]
    if kind != "models":
        body = {**plain_body(run, operation), "stream": True, "max_tokens": 0}
        invalid = run.send(json_request(run.contract, operation, body))
        answers.append(("a request for a stream with max_tokens 0", invalid, True))
    for what, exchange, streamed in answers:
        holds_error = streamed and exchange.status == 200 and b'"error"' in exchange.body
        if exchange.status is None:
            judgement.transport_error(exchange)
        elif exchange.status < 400 and not holds_error:
            judgement.not_applicable(f"{what} was answered {exchange.status} (ERR judges it)")
        else:
            findings = check_error_raised(rid, exchange, what, kind=kind, stream=streamed)
            judgement.findings(findings, exchange=exchange, extra={"request_kind": what})
