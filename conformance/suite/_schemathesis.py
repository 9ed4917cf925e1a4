"""Driving schemathesis: the two schemas it generates from, and judging each case it makes.

Positive cases come from the capped copy of the spec (:func:`conformance.profile.capped_document`,
body ``model`` limited to what the target serves); negative cases from the spec as given, since
the target rejects them before generating anything. A test marked
``@pytest.mark.schemathesis_cases(mode)`` is parametrized with the run's schema for its mode
when the plugin collects it (:func:`parametrize`): the run exists only then. Every case is sent
through the suite's own bounded transport, not schemathesis's, so a hostile target cannot hang a
case; the answer is then handed to schemathesis's checks one by one
(:func:`conformance.checks.schema.run_check`).

Failures are tallied per pytest item and never raised inside the hypothesis test: raising would
make hypothesis shrink, re-sending dozens of requests to a slow model, and would stop the other
checks of the operation from being judged. The plugin concludes the tally when the item ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from conformance.checks.schema import (
    CHECK_REQUIREMENTS,
    NEGATIVE_CHECKS,
    POSITIVE_CHECKS,
    SCHEMATHESIS_SETTINGS,
    run_check,
)
from conformance.exchange import Exchange, RequestSpec
from conformance.profile import capped_document
from conformance.results import Outcome
from conformance.suite._judgement import Judgement
from conformance.suite._operations import MODEL_FIELD
from conformance.suite._run import Run

__all__ = [
    "NEGATIVE_REQUIREMENTS",
    "POSITIVE_REQUIREMENTS",
    "SCHEMATHESIS_MARK",
    "Tally",
    "build_schema",
    "judge_case",
    "parametrize",
]

POSITIVE_REQUIREMENTS: tuple[str, ...] = tuple(CHECK_REQUIREMENTS[name] for name in POSITIVE_CHECKS)
NEGATIVE_REQUIREMENTS: tuple[str, ...] = tuple(CHECK_REQUIREMENTS[name] for name in NEGATIVE_CHECKS)

SCHEMATHESIS_MARK = "schemathesis_cases"
"""``@pytest.mark.schemathesis_cases("positive" | "negative")``: a test of schemathesis's cases,
which the plugin parametrizes with :func:`parametrize` as it collects it."""

_REQUEST_KWARGS = ("method", "url", "headers", "params", "cookies", "json", "data", "files")


def build_schema(run: Run, mode: str) -> Any:
    """The schemathesis schema for ``mode`` ("positive" or "negative"), seeded from the run."""
    import schemathesis

    profile = run.settings.profile
    if mode == "positive":
        document = capped_document(run.document, profile.caps, run.served_models)
    else:
        document = run.document
    config = schemathesis.Config.from_dict(
        {
            "seed": run.settings.seed,
            "base-url": run.target,
            "suppress-health-check": ["all"],
            "request-timeout": run.settings.timeout,
            "generation": {
                "mode": mode,
                "max-examples": run.settings.examples,
                "database": "none",
                "no-shrink": True,
                "deterministic": False,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": mode in profile.coverage_modes},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            **SCHEMATHESIS_SETTINGS,
        }
    )
    return schemathesis.openapi.from_dict(document, config=config)


def parametrize(run: Run, test: Callable[..., Any], mode: str) -> Callable[..., Any]:
    """``test`` parametrized by schemathesis over every operation, with the run's ``mode`` schema.

    The schema is built once per run. The result no longer carries the mark, so that it is
    collected as schemathesis's own parametrized test.
    """
    schema = run.cached(f"schemathesis-{mode}", lambda: build_schema(run, mode))
    parametrized: Any = schema.parametrize()(test)
    marks = getattr(parametrized, "pytestmark", [])
    parametrized.pytestmark = [mark for mark in marks if mark.name != SCHEMATHESIS_MARK]
    return cast(Callable[..., Any], parametrized)


@dataclass
class Tally:
    """What the cases of one pytest item showed, requirement by requirement."""

    operation: str
    requirement_ids: tuple[str, ...]
    judgements: dict[str, Judgement] = field(default_factory=dict)
    cases: int = 0

    def judgement(self, run: Run, requirement_id: str) -> Judgement:
        if requirement_id not in self.judgements:
            self.judgements[requirement_id] = Judgement(run, requirement_id, self.operation)
        return self.judgements[requirement_id]

    def conclude(self, run: Run) -> list[str]:
        """Record one case per requirement; return the failure lines for the pytest report."""
        lines = []
        for requirement_id in self.requirement_ids:
            judgement = self.judgement(run, requirement_id)
            if judgement.outcome is Outcome.SKIP:
                judgement.not_applicable(f"none of the {self.cases} generated cases exercised it")
            outcome, message = judgement.settle()
            if outcome in (Outcome.FAIL, Outcome.ERROR):
                lines.append(message)
        return lines


def _request_of(case: Any, run: Run) -> tuple[RequestSpec, Any]:
    """The exact request a case stands for, and its ``requests.PreparedRequest`` twin."""
    import requests

    kwargs = case.as_transport_kwargs(base_url=run.target)
    prepared = requests.Request(
        **{key: kwargs[key] for key in _REQUEST_KWARGS if key in kwargs}
    ).prepare()
    body = prepared.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    # The transport sets Host and Content-Length; requests' defaults would ask for compressed
    # bodies (which the transport rightly does not decode) and a keep-alive it manages itself.
    dropped = ("content-length", "host", "accept-encoding", "connection")
    headers = [
        (name, value) for name, value in prepared.headers.items() if name.lower() not in dropped
    ]
    return RequestSpec(str(prepared.method), str(prepared.url), tuple(headers), body), prepared


def _response_of(exchange: Exchange, prepared: Any) -> Any:
    from schemathesis import Response

    headers: dict[str, list[str]] = {}
    for name, value in exchange.headers:
        headers.setdefault(name.lower(), []).append(value)
    return Response(
        status_code=exchange.status or 0,
        headers=headers,
        content=exchange.body,
        request=prepared,
        elapsed=exchange.elapsed,
        verify=True,
    )


def _fit_to_budget(case: Any, run: Run, positive: bool) -> None:
    """Keep a positive case's body within the budget and on a served model.

    The capped schema bounds generated values, but the spec's own examples (the examples phase)
    are used as written: their body model may be one the target does not serve.
    """
    if not positive or not isinstance(case.body, dict):
        return
    caps = run.settings.profile.caps
    body = dict(case.body)
    model = body.get(MODEL_FIELD)
    served = run.served_models
    if MODEL_FIELD in body and served and model not in served and model is not None:
        body[MODEL_FIELD] = served[0]
    for name, limit in {**caps.token_fields, **caps.choice_fields}.items():
        if isinstance(body.get(name), int) and body[name] > limit:
            body[name] = limit
    if body != case.body:
        case.body = body


def judge_case(run: Run, case: Any, tally: Tally) -> None:
    """Send one schemathesis case and judge its answer with the checks of its mode."""
    from schemathesis.core.errors import SerializationNotPossible

    meta = case.meta
    positive = meta is None or "positive" in str(meta.generation.mode).lower()
    wanted = POSITIVE_CHECKS if positive else NEGATIVE_CHECKS
    checks = [name for name in wanted if CHECK_REQUIREMENTS[name] in tally.requirement_ids]
    if not checks:
        return
    _fit_to_budget(case, run, positive)
    try:
        request, prepared = _request_of(case, run)
    except SerializationNotPossible:
        return  # a case no HTTP request can carry says nothing about the target
    tally.cases += 1
    exchange = run.send(request)
    other_method = case.method.upper() != case.operation.method.upper()
    phase = meta.phase.name.value if meta is not None else "explicit"
    extra = {"phase": phase, "mode": "positive" if positive else "negative"}
    for name in checks:
        requirement_id = CHECK_REQUIREMENTS[name]
        if name == "unsupported_method" and not other_method:
            continue  # it only judges undocumented methods
        judgement = tally.judgement(run, requirement_id)
        if exchange.failure is not None:
            judgement.transport_error(exchange)
            continue
        try:
            finding = run_check(name, case, _response_of(exchange, prepared))
        except Exception as error:  # a check that breaks is the harness's error, not the target's
            judgement.harness_error(
                f"schemathesis check {name} raised {type(error).__name__}: {error}"
            )
            continue
        judgement.findings([finding] if finding else [], exchange=exchange, extra=extra)
