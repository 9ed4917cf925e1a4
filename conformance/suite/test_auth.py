"""AUTH-*: keys are enforced, and accepted in every header scheme the spec declares.

Judged only with ``--api-key``: without a key the suite cannot tell a server that requires none
from one that enforces keys, so the rules are skipped with that reason.

A refused key is judged on every operation (every route prefix), on the operation's streamed
request as well as its plain one (servers that answer streams from another handler have let
those through), and on the methods its path does not document (a ``HEAD`` served like a
``GET`` without its key checks): those must not be answered 2xx, whether they are refused for
the key or for the method. ``OPTIONS`` is left out: a CORS preflight carries no credentials by
design.
"""

from __future__ import annotations

import secrets

import pytest

from conformance.checks.auth import (
    check_accepted,
    check_not_served,
    check_rejected,
    credential_headers,
    header_schemes,
)
from conformance.exchange import Exchange, RequestSpec
from conformance.suite._judgement import Judgement
from conformance.suite._operations import streaming_operations
from conformance.suite._requests import example_body, json_request
from conformance.suite._run import Run
from spec import Operation

NO_KEY_REASON = "no --api-key given: the target's key checks cannot be judged without a valid key"
#: The methods tried on each path besides the ones it documents (OPTIONS: see the docstring).
PROBED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")


def _valid_request(run: Run, operation: Operation) -> RequestSpec:
    body = example_body(run.contract, operation, run.served_models)
    return json_request(run.contract, operation, body)


def _send_without_default_auth(run: Run, request: RequestSpec) -> Exchange:
    """Send with only the request's own headers: the run's transport would add the valid key."""
    return run.send(request, credentials=False)


def _with_headers(request: RequestSpec, headers: dict[str, str]) -> RequestSpec:
    return RequestSpec(
        request.method, request.url, (*request.headers, *headers.items()), request.body
    )


def _refused_samples(run: Run, operation: Operation) -> list[tuple[RequestSpec, str, bool]]:
    """(request, what it is, whether the method is documented) for the key-refusal rules."""
    request = _valid_request(run, operation)
    samples = [(request, "", True)]
    if operation in streaming_operations(run.contract):
        body = {**example_body(run.contract, operation, run.served_models), "stream": True}
        samples.append((json_request(run.contract, operation, body), " asking for a stream", True))
    documented = {op.method.upper() for op in run.contract.operations if op.path == operation.path}
    for method in PROBED_METHODS:
        if method not in documented:
            samples.append((RequestSpec(method, request.url), f" by {method}", False))
    return samples


def _judge(
    judgement: Judgement, operation: Operation | None, headers: dict[str, str], what: str
) -> None:
    run = judgement.run
    if not run.settings.api_key:
        judgement.not_applicable(NO_KEY_REASON)
    elif operation is None:
        judgement.not_applicable("the spec has no operation this rule applies to")
    else:
        for request, variant, documented in _refused_samples(run, operation):
            exchange = _send_without_default_auth(run, _with_headers(request, headers))
            if exchange.status is None:
                judgement.transport_error(exchange)
                continue
            check = check_rejected if documented else check_not_served
            findings = check(judgement.requirement_id, exchange, what + variant)
            judgement.findings(findings, exchange=exchange)
    judgement.conclude()


requirement = pytest.mark.requirement


@requirement("AUTH-MISSING-KEY", applies_to="all")
def test_request_without_key(judgement: Judgement, operation: Operation | None) -> None:
    """With keys required, a request without one gets 401."""
    _judge(judgement, operation, {}, "a request without a key")


@requirement("AUTH-WRONG-KEY", applies_to="all")
def test_request_with_unknown_key(judgement: Judgement, operation: Operation | None) -> None:
    """With keys required, an unknown key gets 401."""
    wrong = "mimic-conformance-wrong-" + secrets.token_hex(8)
    schemes = header_schemes(judgement.run.document)
    headers = credential_headers(next(iter(schemes.values())), wrong) if schemes else {}
    _judge(judgement, operation, headers, "a request with a key the server does not know")


@requirement("AUTH-SCHEMES", applies_to="no-body")
def test_every_scheme_accepted(judgement: Judgement, operation: Operation | None) -> None:
    """The valid key is accepted in every declared header scheme."""
    run = judgement.run
    schemes = header_schemes(run.document)
    if not run.settings.api_key:
        judgement.not_applicable(NO_KEY_REASON)
    elif operation is None or not schemes:
        judgement.not_applicable(
            "the spec declares no header scheme, or no operation without a body"
        )
    else:
        for name, scheme in schemes.items():
            headers = credential_headers(scheme, run.settings.api_key)
            request = _with_headers(_valid_request(run, operation), headers)
            exchange = _send_without_default_auth(run, request)
            if exchange.status is None:
                judgement.transport_error(exchange)
                continue
            judgement.findings(
                check_accepted(exchange, name), exchange=exchange, extra={"scheme": name}
            )
    judgement.conclude()
