"""ROBUST-*: hostile traffic is answered as documented, and the target goes on serving.

Judged only with ``--robust``, after every other check of the run (the plugin orders them
last). Each hostile sample (:mod:`conformance.suite._hostile`) must be answered within
:data:`HOSTILE_BOUND` with a documented status that is not a 5xx; then a valid one-token request
must be served within the same bound. A check stops at its first failing sample: a target that
fell over needs no more hostile traffic.
"""

from __future__ import annotations

import pytest

from conformance.checks.robustness import (
    check_hostile_answer,
    check_stalled_closed,
    check_still_serving,
)
from conformance.curl import to_curl
from conformance.idle_connections import IdleConnections, connections_allowed, stalled_requests
from conformance.suite._hostile import (
    Sample,
    flood_samples,
    follow_up,
    schema_bomb_samples,
    unencodable_samples,
)
from conformance.suite._judgement import Judgement
from conformance.suite._operations import concrete_path
from conformance.suite._probe import per_operation
from conformance.transport import Transport
from spec import Operation

HOSTILE_BOUND = 10.0
"""Seconds a hostile request, and the valid request after it, may take (``--timeout`` if lower)."""
IDLE_CONNECTIONS = 2_000
"""Connections held open without a request while a valid request must be served."""


def _bound(judgement: Judgement) -> float:
    return min(HOSTILE_BOUND, judgement.run.settings.timeout)


def _judge_samples(
    judgement: Judgement, operation: Operation, samples: list[Sample], *, client_error: bool
) -> None:
    run, rid, bound = judgement.run, judgement.requirement_id, _bound(judgement)
    if not samples:
        judgement.not_applicable("the operation's request has none of the fields this rule uses")
        return
    documented = operation.documented_statuses()
    for sample in samples:
        was_down = run.taken_for_down
        exchange = run.send(sample.request, timeout=bound)
        if exchange.status is None and was_down:
            judgement.transport_error(exchange)
            return
        findings = check_hostile_answer(
            rid,
            exchange,
            sample.what,
            bound=bound,
            documented=documented,
            client_error=client_error,
        )
        if not judgement.findings(findings, exchange=exchange, extra={"sample": sample.what}):
            return
        after = run.send(follow_up(run, operation), timeout=bound)
        findings = check_still_serving(rid, after, f"a request with {sample.what}", bound=bound)
        sent_before = to_curl(exchange.request, secrets=run.secrets)
        extra = {"sample": sample.what, "sent_just_before": sent_before}
        if not judgement.findings(findings, exchange=after, extra=extra):
            return


requirement = pytest.mark.requirement


@requirement("ROBUST-SCHEMA-BOMB", applies_to="field:response_format")
@per_operation
def test_schema_bombs(judgement: Judgement, operation: Operation) -> None:
    """Schemas costly as grammars are refused or served quickly; the target goes on serving."""
    samples = schema_bomb_samples(judgement.run, operation)
    _judge_samples(judgement, operation, samples, client_error=False)


@requirement("ROBUST-FLOOD", applies_to="request-shapes")
@per_operation
def test_floods(judgement: Judgement, operation: Operation) -> None:
    """Bodies flooded with invalid items, or over the size limit, get a fast 4xx."""
    samples = flood_samples(judgement.run, operation)
    _judge_samples(judgement, operation, samples, client_error=True)


@requirement("ROBUST-UNENCODABLE", applies_to="request-shapes")
@per_operation
def test_lone_surrogates(judgement: Judgement, operation: Operation) -> None:
    """A lone surrogate anywhere in a body gets a documented answer, never a 5xx."""
    samples = unencodable_samples(judgement.run, operation)
    _judge_samples(judgement, operation, samples, client_error=False)


@requirement("ROBUST-IDLE-CONNECTIONS", applies_to="one-generating")
@per_operation
def test_idle_connections(judgement: Judgement, operation: Operation) -> None:
    """Thousands of connections without a request do not stop a valid one being served."""
    run, bound = judgement.run, _bound(judgement)
    count = connections_allowed(IDLE_CONNECTIONS)
    if count == 0:
        judgement.harness_error("the suite's process may not open any more files")
        return
    key = run.settings.api_key
    headers = run.auth_headers(key) if key else {}
    # A transport of its own: the request must come on a new connection, not a pooled one.
    with (
        IdleConnections(run.target, count) as idle,
        Transport(run.target, timeout=bound, headers=headers) as fresh,
    ):
        exchange = fresh.send(follow_up(run, operation))
    after = f"{idle.opened:,} connections were left open without a request"
    extra = {"connections_opened": idle.opened, "connections_asked": count}
    if idle.errors:
        extra["connections_not_opened"] = len(idle.errors)
        extra["why_not_opened"] = idle.errors[0]
    judgement.findings(
        check_still_serving(judgement.requirement_id, exchange, after, bound=bound),
        exchange=exchange,
        extra=extra,
    )


@requirement("ROBUST-STALLED-CLOSED", applies_to="one-generating")
@per_operation
def test_stalled_requests_are_closed(judgement: Judgement, operation: Operation) -> None:
    """A request whose head or body stops arriving does not hold its connection for ever."""
    run = judgement.run
    bound = run.settings.timeout
    try:
        ends = stalled_requests(run.target, concrete_path(run.contract, operation), bound)
    except (OSError, ConnectionError) as error:
        judgement.harness_error(f"no connection to judge: {error}")
        return
    for end in ends:
        findings = check_stalled_closed(
            judgement.requirement_id, end.what, end.closed_after, end.status, bound=bound
        )
        waited = None if end.closed_after is None else round(end.closed_after, 3)
        judgement.findings(
            findings, extra={"stall": end.what, "closed_after_s": waited}, command=end.command
        )
