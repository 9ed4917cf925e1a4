"""Turning what pytest saw of a test into cases: a test that broke or skipped still leaves one.

A conformance test records its own cases through the run. One that ends without recording a
requirement it should have judged (it broke, or was skipped) gets a case for it here, from its
phases' reports (:func:`record_unjudged`). Collection errors are remembered too
(:class:`CollectionErrors`): the requirements whose tests they hide are errors, not skips.
"""

from __future__ import annotations

import pytest

from conformance.results import Outcome
from conformance.suite._run import REQUIREMENTS, Run

__all__ = [
    "NO_OPERATION",
    "CollectionErrors",
    "keep_report",
    "operation_label",
    "record_unjudged",
]

NO_OPERATION = "(no operation)"
"""The operation of a case whose requirement applies to none of the spec's operations."""

_ITEM_REPORTS = pytest.StashKey[list[pytest.TestReport]]()


def operation_label(item: pytest.Item) -> str:
    """The operation a test item judges, as its cases name it."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "operation" in callspec.params:
        operation = callspec.params["operation"]
        return operation.label if operation is not None else NO_OPERATION
    name = item.name
    return name[name.index("[") + 1 : -1] if "[" in name else name


def keep_report(item: pytest.Item, report: pytest.TestReport) -> None:
    """Keep the report of one phase of ``item`` (setup, call, teardown)."""
    item.stash.setdefault(_ITEM_REPORTS, []).append(report)


def record_unjudged(item: pytest.Item, run: Run, recorded_before: int) -> None:
    """Record a case for each requirement ``item`` should have judged but did not.

    ``recorded_before`` is how many cases the run had before the item ran. A test that broke
    leaves an error, one that was skipped a skip, with the reason from its reports.
    """
    requirements = item.stash.get(REQUIREMENTS, ())
    recorded = {case.requirement_id for case in run.cases[recorded_before:]}
    missing = [rid for rid in requirements if rid not in recorded]
    if missing:
        outcome, reason = _fallback(item.stash.get(_ITEM_REPORTS, []))
        for rid in missing:
            run.record(rid, operation_label(item), outcome, reason=reason)


def _fallback(reports: list[pytest.TestReport]) -> tuple[Outcome, str]:
    for report in reports:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            detail = text[-1] if text else "unknown error"
            return Outcome.ERROR, f"the test broke during {report.when}: {detail[:500]}"
    for report in reports:
        if report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            return Outcome.SKIP, str(reason)
    return Outcome.ERROR, "the test ended without recording a result"


class CollectionErrors:
    """A plugin object that adds each collection error to ``errors``, one line each.

    Registered per run (``pytest_collectreport`` is not given the config). On an xdist
    controller it hears the workers' collection errors too.
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        """Remember a collection error: the requirements it hides are errors, not skips."""
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            line = text[-1] if text else "collection failed"
            self.errors.append(f"{report.nodeid}: {line}")
