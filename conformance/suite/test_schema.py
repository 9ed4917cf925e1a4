"""SCHEMA-*: schemathesis drives every operation of the spec, with valid and invalid data.

Two tests, each parametrized by schemathesis over every operation: valid requests generated from
the capped copy of the spec, and invalid ones from the spec as given (examples, coverage and
fuzzing phases, as the profile says). Each case is judged by schemathesis's checks, each check
standing for one requirement; the item's cases are tallied and the plugin records one result per
requirement and operation when the item ends.
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance.requirements import select
from conformance.suite._run import FINALIZE, REQUIREMENTS, Run, active
from conformance.suite._schemathesis import (
    NEGATIVE_REQUIREMENTS,
    POSITIVE_REQUIREMENTS,
    Tally,
    build_schema,
    judge_case,
)

_run = active()
_selected = {r.id for r in select(_run.settings.requirements, _run.settings.skip_requirements)}


@pytest.fixture
def tally(request: pytest.FixtureRequest, conformance: Run) -> Tally:
    """The tally of this item's cases, concluded by the plugin when the item's call ends."""
    name = request.node.name
    operation = name[name.index("[") + 1 : -1] if "[" in name else name
    tally = Tally(operation, request.node.stash.get(REQUIREMENTS, ()))
    request.node.stash[FINALIZE] = lambda: tally.conclude(conformance)
    return tally


# Building schemathesis's tests costs seconds: only when a SCHEMA requirement is selected.
if _selected & set(POSITIVE_REQUIREMENTS):
    valid_data = _run.cached("schemathesis-positive", lambda: build_schema(_run, "positive"))

    @pytest.mark.requirement(*POSITIVE_REQUIREMENTS)
    @valid_data.parametrize()
    def test_valid_requests(case: Any, tally: Tally, conformance: Run) -> None:
        """Valid requests: schemathesis's checks on every operation."""
        judge_case(conformance, case, tally)


if _selected & set(NEGATIVE_REQUIREMENTS):
    invalid_data = _run.cached("schemathesis-negative", lambda: build_schema(_run, "negative"))

    @pytest.mark.requirement(*NEGATIVE_REQUIREMENTS)
    @invalid_data.parametrize()
    def test_invalid_requests(case: Any, tally: Tally, conformance: Run) -> None:
        """Invalid requests: schemathesis's checks on every operation."""
        judge_case(conformance, case, tally)
