"""SCHEMA-*: schemathesis drives every operation of the spec, with valid and invalid data.

Two tests, each parametrized by schemathesis over every operation: valid requests generated from
the capped copy of the spec, and invalid ones from the spec as given (examples, coverage and
fuzzing phases, as the profile says). Each case is judged by schemathesis's checks, each check
standing for one requirement; the item's cases are tallied and the plugin records one result per
requirement and operation when the item ends.

The schemas come from the run, which exists only once pytest is configured: the plugin
parametrizes each test marked ``schemathesis_cases`` as it collects it, and collects nothing of
it when none of its requirements is selected (building schemathesis's tests costs seconds).
"""

from __future__ import annotations

from typing import Any

import pytest

from conformance.suite._run import FINALIZE, REQUIREMENTS, Run
from conformance.suite._schemathesis import (
    NEGATIVE_REQUIREMENTS,
    POSITIVE_REQUIREMENTS,
    Tally,
    judge_case,
)


@pytest.fixture
def tally(request: pytest.FixtureRequest, conformance: Run) -> Tally:
    """The tally of this item's cases, concluded by the plugin when the item's call ends."""
    name = request.node.name
    operation = name[name.index("[") + 1 : -1] if "[" in name else name
    tally = Tally(operation, request.node.stash.get(REQUIREMENTS, ()))
    request.node.stash[FINALIZE] = lambda: tally.conclude(conformance)
    return tally


@pytest.mark.requirement(*POSITIVE_REQUIREMENTS)
@pytest.mark.schemathesis_cases("positive")
def test_valid_requests(case: Any, tally: Tally, conformance: Run) -> None:
    """Valid requests: schemathesis's checks on every operation."""
    judge_case(conformance, case, tally)


@pytest.mark.requirement(*NEGATIVE_REQUIREMENTS)
@pytest.mark.schemathesis_cases("negative")
def test_invalid_requests(case: Any, tally: Tally, conformance: Run) -> None:
    """Invalid requests: schemathesis's checks on every operation."""
    judge_case(conformance, case, tally)
