"""ERR-*: the spec's status codes for bad requests, one by one, status and body shape both.

The bad requests of each operation are built from its spec example and request schema
(:func:`conformance.suite._requests.bad_requests`), sent once per run, and shared: each ERR
rule judges the status of its own kind of request, ERR-BODY-SHAPE judges the body of every
error answer the operation gave, and ERR-NO-LEAK what those bodies must not show.
ERR-RECOVERS sends each kind again, each followed at once by a valid request.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import replace

import pytest

from conformance.checks.errors import (
    check_error_body,
    check_no_leak,
    check_refused_before_stream,
    expect_allow,
    expect_named_param,
    expect_status,
    expect_validation_error,
)
from conformance.checks.robustness import check_still_serving
from conformance.exchange import Exchange, RequestSpec
from conformance.suite._hostile import OVERSIZED_BYTES, Flood, follow_up
from conformance.suite._judgement import Judgement
from conformance.suite._probe import per_operation, plain_body
from conformance.suite._requests import (
    Sent,
    json_request,
    sent_bad_requests,
    unknown_route_request,
)
from conformance.suite._run import Run
from conformance.transport import Transport
from spec import Operation

UNKNOWN_ROUTE_LABEL = "(unknown route)"


_sent = sent_bad_requests


def _judge_status(judgement: Judgement, operation: Operation | None) -> None:
    if operation is None:
        judgement.not_applicable("the spec has no operation this rule applies to")
        judgement.conclude()
        return
    run = judgement.run
    mine = [
        sent
        for sent in _sent(run, operation)
        if sent.bad.requirement_id == judgement.requirement_id
    ]
    if not mine:
        judgement.not_applicable(
            "the spec gives nothing to build such a request from for this operation"
        )
    for sent in mine:
        bad, exchange = sent.bad, sent.exchange
        if exchange.status is None:
            judgement.transport_error(exchange)
            continue
        if bad.requirement_id == "ERR-METHOD-405":
            documented = run.contract.methods_for(bad.request.url.split("?")[0])
            findings = expect_allow(bad.requirement_id, exchange, documented, bad.what)
        elif bad.expected_status != run.contract.invalid_request_status:
            findings = expect_status(bad.requirement_id, exchange, bad.expected_status, bad.what)
        elif run.contract.invalid_request_field == "error.param":
            findings = expect_named_param(
                bad.requirement_id, exchange, bad.expected_status, bad.field, bad.what
            )
        elif run.contract.invalid_request_field == "detail.loc":
            findings = expect_validation_error(
                bad.requirement_id, exchange, bad.loc_prefix, bad.what
            )
        else:
            findings = expect_status(bad.requirement_id, exchange, bad.expected_status, bad.what)
        judgement.findings(findings, exchange=exchange, extra={"request_kind": bad.what})
    judgement.conclude()


requirement = pytest.mark.requirement


@requirement("ERR-MALFORMED-JSON", applies_to="body")
def test_malformed_json(judgement: Judgement, operation: Operation | None) -> None:
    """A body that is not JSON gets 422 with loc body."""
    _judge_status(judgement, operation)


@requirement("ERR-NOT-OBJECT", applies_to="body")
def test_body_not_object(judgement: Judgement, operation: Operation | None) -> None:
    """A JSON body that is not an object gets 422 with loc body."""
    _judge_status(judgement, operation)


@requirement("ERR-MISSING-FIELD", applies_to="body")
def test_missing_required_field(judgement: Judgement, operation: Operation | None) -> None:
    """A body without a required field gets 422 with loc body."""
    _judge_status(judgement, operation)


@requirement("ERR-WRONG-TYPE", applies_to="body")
def test_wrong_type(judgement: Judgement, operation: Operation | None) -> None:
    """A field of the wrong type gets 422 with loc body."""
    _judge_status(judgement, operation)


@requirement("ERR-OUT-OF-RANGE", applies_to="body")
def test_out_of_range(judgement: Judgement, operation: Operation | None) -> None:
    """A value past its schema's bound gets 422 with loc body."""
    _judge_status(judgement, operation)


@requirement("ERR-PATH-MODEL", applies_to="enum-path")
def test_path_parameter_outside_enum(judgement: Judgement, operation: Operation | None) -> None:
    """A path parameter outside its enum gets 422 with loc path."""
    _judge_status(judgement, operation)


@requirement("ERR-UNKNOWN-MODEL", applies_to="body-model")
def test_unknown_body_model(judgement: Judgement, operation: Operation | None) -> None:
    """A body model the server does not list gets 404."""
    _judge_status(judgement, operation)


_REFUSED_BEFORE_GENERATION = ("ERR-OUT-OF-RANGE", "ERR-UNKNOWN-MODEL")
"""The bad requests ERR-BEFORE-STREAM sends again streamed: refusals a server finds before it
generates anything (a value out of range, a body model it does not serve)."""
_STREAM_FIELDS = ("stream", "stream_options")


def _streamed_again(sent: Sent) -> RequestSpec | None:
    """The bad request with ``"stream": true`` added, if it stays the same bad request."""
    bad = sent.bad
    if bad.requirement_id not in _REFUSED_BEFORE_GENERATION or bad.request.body is None:
        return None
    if any(part in _STREAM_FIELDS for part in bad.loc_prefix):
        return None  # the violation is in the stream fields themselves
    try:
        body = json.loads(bad.request.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return replace(bad.request, body=json.dumps({**body, "stream": True}).encode())


@requirement("ERR-BEFORE-STREAM", applies_to="streaming")
@per_operation
def test_refused_before_stream(judgement: Judgement, operation: Operation) -> None:
    """A streamed request refused before generation gets its real status and a JSON body."""
    run = judgement.run
    for sent in _sent(run, operation):
        request = _streamed_again(sent)
        if request is None:
            continue
        plain = sent.exchange.status
        if plain is None or not 400 <= plain < 500:
            judgement.not_applicable(
                f"{sent.bad.what} was not refused without stream (judged by "
                f"{sent.bad.requirement_id})"
            )
            continue
        result = run.stream(request)
        exchange = result.exchange
        if exchange.status is None:
            judgement.transport_error(exchange, stream=result)
            continue
        findings = check_refused_before_stream(plain, exchange, exchange.media_type, sent.bad.what)
        judgement.findings(
            findings,
            stream=result,
            extra={"request_kind": sent.bad.what, "status_without_stream": plain},
        )
    if not judgement.passes and not judgement.failures and not judgement.skips:
        judgement.not_applicable("the spec gives no request refused before generation to send")


@requirement("ERR-METHOD-405", applies_to="one-per-path")
def test_wrong_method(judgement: Judgement, operation: Operation | None) -> None:
    """An undocumented method gets 405 with Allow listing the documented ones."""
    _judge_status(judgement, operation)


@requirement("ERR-UNKNOWN-ROUTE")
def test_unknown_route(conformance: Run) -> None:
    """A path outside the spec gets 404."""
    judgement = Judgement(conformance, "ERR-UNKNOWN-ROUTE", UNKNOWN_ROUTE_LABEL)
    exchange = _unknown_route(conformance)
    if exchange.status is None:
        judgement.transport_error(exchange)
    else:
        what = f"GET {exchange.request.url} (a path the spec does not have)"
        judgement.findings(
            expect_status("ERR-UNKNOWN-ROUTE", exchange, 404, what), exchange=exchange
        )
    judgement.conclude()


def _unknown_route(run: Run) -> Exchange:
    return run.cached("unknown-route", lambda: run.send(unknown_route_request(run.contract)))


def _validator_for_status(run: Run, status: int) -> object | None:
    """The schema any operation documents for ``status`` (for an answer that has no operation)."""
    for operation in run.contract.operations:
        validator = run.contract.response_validator(operation, status)
        if validator is not None:
            return validator
    return None


@requirement("ERR-BODY-SHAPE", applies_to="all")
def test_error_body_shape(judgement: Judgement, operation: Operation | None) -> None:
    """Every error body matches its status's schema, errorCode equal to the status."""
    if operation is None:
        judgement.not_applicable("the spec has no operations")
        judgement.conclude()
        return
    run = judgement.run
    answers = [(sent.bad.what, sent.exchange) for sent in _sent(run, operation)]
    if operation is run.contract.operations[0]:
        # The unknown route belongs to no operation; its 404 is judged once, with the first.
        route = _unknown_route(run)
        answers.append((f"GET {route.request.url} (an unknown route)", route))
    for what, exchange in answers:
        if exchange.status is None:
            judgement.transport_error(exchange)
            continue
        if exchange.status < 400:
            judgement.not_applicable(f"{what} was not answered with an error ({exchange.status})")
            continue
        if exchange.request.url.endswith(unknown_route_request(run.contract).url):
            validator = _validator_for_status(run, exchange.status)
        else:
            validator = run.contract.response_validator(operation, exchange.status)
        findings = check_error_body(exchange, validator, what)  # type: ignore[arg-type]
        judgement.findings(findings, exchange=exchange, extra={"request_kind": what})
    judgement.conclude()


@requirement("ERR-NO-LEAK", applies_to="all")
@per_operation
def test_error_answers_leak_nothing(judgement: Judgement, operation: Operation) -> None:
    """No error body shows internals; none echoes the key the request carried."""
    run = judgement.run
    answers = [(sent.bad.what, sent.exchange, None) for sent in _sent(run, operation)]
    # One bad request again, carrying a key made up here: it must not come back.
    canary = "sk-mimic-canary-" + secrets.token_hex(8)
    bads = _sent(run, operation)
    if bads:
        bad = bads[0].bad.request
        headers = (*bad.headers, ("Authorization", f"Bearer {canary}"))
        keyed = RequestSpec(bad.method, bad.url, headers, bad.body)
        what = f"{bads[0].bad.what}, with a made-up key"
        answers.append((what, run.send(keyed, credentials=False), canary))
    for what, exchange, secret in answers:
        if exchange.status is None:
            judgement.transport_error(exchange)
        elif exchange.status < 400:
            judgement.not_applicable(f"{what} was answered {exchange.status} (ERR judges it)")
        else:
            judgement.findings(
                check_no_leak(exchange, what, secret),
                exchange=exchange,
                extra={"request_kind": what},
            )


RECOVERY_SLACK = 5.0
"""Seconds a request after trouble may take beyond five times what it took before."""
_LEFT_AFTER_EVENTS = 2
_ABANDONED_TOKENS = 500


def _abandoned_stream(run: Run, operation: Operation) -> Exchange:
    """A long stream that the client leaves after its first events."""
    body = {**plain_body(run, operation), "stream": True, "max_tokens": _ABANDONED_TOKENS}
    key = run.settings.api_key
    headers = run.auth_headers(key) if key else {}
    with Transport(
        run.target, timeout=run.settings.timeout, headers=headers, max_events=_LEFT_AFTER_EVENTS
    ) as leaving:
        return leaving.stream_events(json_request(run.contract, operation, body)).exchange


def _troubles(run: Run, operation: Operation) -> list[tuple[str, RequestSpec]]:
    """One request of each kind the target must reject, and go on serving after."""
    kinds: dict[str, RequestSpec] = {}
    for sent in _sent(run, operation):
        kinds.setdefault(sent.bad.requirement_id, sent.bad.request)
    troubles = [(rid.removeprefix("ERR-").lower(), request) for rid, request in kinds.items()]
    troubles.append(("an unknown route", unknown_route_request(run.contract)))
    base = plain_body(run, operation)
    oversized = Flood.into(base, "mimic_conformance_padding", "a", OVERSIZED_BYTES, kind="text")
    request = json_request(run.contract, operation, {})
    troubles.append(
        (
            "a body over the 4 MiB limit",
            RequestSpec(
                request.method,
                request.url,
                request.headers,
                oversized.text().encode(),
                body_source=oversized.shell_command(),
            ),
        )
    )
    return troubles


@requirement("ERR-RECOVERS", applies_to="one-generating")
@per_operation
def test_the_target_serves_on_after_trouble(judgement: Judgement, operation: Operation) -> None:
    """After each kind of rejected request, and a client that left, the next is served."""
    run, rid = judgement.run, judgement.requirement_id
    valid = follow_up(run, operation)
    started = time.monotonic()
    before = run.send(valid)
    if before.status is None or not 200 <= before.status < 300:
        judgement.not_applicable(f"a valid request was answered {before.status} to begin with")
        return
    bound = min(run.settings.timeout, RECOVERY_SLACK + 5 * (time.monotonic() - started))
    for what, trouble in _troubles(run, operation):
        exchange = run.send(trouble)
        if exchange.status is None:
            judgement.transport_error(exchange)
            continue
        after = run.send(valid, timeout=bound)
        findings = check_still_serving(rid, after, f"{what} ({exchange.status})", bound=bound)
        sent_before = {"sent_just_before": exchange.request.method + " " + exchange.request.url}
        judgement.findings(findings, exchange=after, extra=sent_before)
    abandoned = _abandoned_stream(run, operation)
    if abandoned.status == 200:
        after = run.send(valid, timeout=bound)
        what = f"a client that left a {_ABANDONED_TOKENS}-token stream after its first events"
        judgement.findings(
            check_still_serving(rid, after, what, bound=bound),
            exchange=after,
            extra={"sent_just_before": "the abandoned stream"},
        )
    else:
        judgement.not_applicable(
            f"a {_ABANDONED_TOKENS}-token stream was answered {abandoned.status}"
        )
