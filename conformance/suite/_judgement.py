"""From findings on several samples to one recorded case and one pytest outcome.

A suite test judges one requirement on one operation, usually over several samples (requests).
:class:`Judgement` collects what each sample showed and :meth:`Judgement.conclude` records the
case: FAIL with the first failing sample's evidence if any sample failed, else ERROR if the
transport broke on one, else PASS if any sample passed, else SKIP with the reasons. The pytest
item then fails, or is skipped, to match, so the terminal output reads like the report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from conformance.checks import Finding
from conformance.exchange import Exchange, StreamResult
from conformance.requirements import requirement
from conformance.results import Evidence, Level, Outcome
from conformance.suite._run import Run

__all__ = ["Judgement"]


class Judgement:
    """The verdict on one requirement for one operation, built sample by sample."""

    def __init__(self, run: Run, requirement_id: str, operation: str) -> None:
        self.run = run
        self.requirement_id = requirement_id
        self.operation = operation
        self._started = time.monotonic()
        self.passes = 0
        self.failure: Evidence | None = None
        self.failures = 0
        self.error: Evidence | None = None
        self.error_reason: str | None = None
        self.skips: list[str] = []
        self.measurements: dict[str, float] | None = None

    def findings(
        self,
        findings: Sequence[Finding],
        *,
        exchange: Exchange | None = None,
        stream: StreamResult | None = None,
        extra: dict[str, Any] | None = None,
        command: str | None = None,
    ) -> bool:
        """Count one judged sample: a pass if ``findings`` has none for this requirement.

        ``command`` reproduces a sample that was not one HTTP request (a stalled connection);
        it stands in the evidence where a curl command would. Returns whether the sample passed.
        """
        mine = [f for f in findings if f.requirement_id == self.requirement_id]
        if not mine:
            self.passes += 1
            return True
        self.failures += 1
        if self.failure is None:
            details: dict[str, Any] = dict(extra or {})
            if mine[0].event_numbers:
                details["event_numbers"] = list(mine[0].event_numbers)
            details.update(mine[0].details)
            if len(mine) > 1:
                details["more_findings"] = [f.message for f in mine[1:5]]
            self.failure = self.run.evidence(
                self.operation, mine[0].message, exchange, stream=stream, extra=details
            )
            if command is not None and self.failure.curl is None:
                self.failure.curl = command
        return False

    def measure(self, measurements: Mapping[str, float]) -> None:
        """Information beside the verdict: recorded with the case whatever its outcome.

        The last call wins.
        """
        self.measurements = dict(measurements)

    def transport_error(self, exchange: Exchange, *, stream: StreamResult | None = None) -> None:
        """Count a sample whose request got no usable answer (an ERROR, not the target's fault)."""
        failure = exchange.failure
        message = (
            f"no answer to judge: {failure.message if failure else 'unknown transport failure'}"
        )
        if self.error is None:
            self.error = self.run.evidence(self.operation, message, exchange, stream=stream)
            self.error_reason = message

    def harness_error(self, message: str) -> None:
        """Count a problem of the suite itself (an ERROR)."""
        if self.error is None:
            self.error_reason = message

    def not_applicable(self, reason: str) -> None:
        """Count a sample the requirement does not apply to (why, for the SKIP reason)."""
        if reason not in self.skips:
            self.skips.append(reason)

    @property
    def outcome(self) -> Outcome:
        """The outcome so far."""
        if self.failure is not None:
            return Outcome.FAIL
        if self.error is not None or self.error_reason is not None:
            return Outcome.ERROR
        if self.passes:
            return Outcome.PASS
        return Outcome.SKIP

    def settle(self) -> tuple[Outcome, str]:
        """Record the case; return its outcome and a one-paragraph message for pytest."""
        outcome = self.outcome
        duration = time.monotonic() - self._started
        level = requirement(self.requirement_id).level
        tag = f"{self.requirement_id} [{level}] on {self.operation}:"
        evidence: Evidence | None = None
        reason: str | None = None
        if outcome is Outcome.FAIL:
            assert self.failure is not None
            evidence = self.failure
            if self.failures > 1:
                evidence.extra["failing_samples"] = self.failures
                evidence.extra["passing_samples"] = self.passes
            note = "" if level is Level.MUST else " (SHOULD: gates only with --gate-should)"
            curl = f"\nreproduce with: {evidence.curl}" if evidence.curl else ""
            message = f"{tag} {evidence.message}{note}{curl}"
        elif outcome is Outcome.ERROR:
            evidence, reason = self.error, self.error_reason or "error"
            message = f"{tag} ERROR: {reason}"
        elif outcome is Outcome.SKIP:
            reason = "; ".join(self.skips) or "no sample applied"
            message = f"{tag} {reason}"
        else:
            message = f"{tag} pass"
        self.run.record(
            self.requirement_id,
            self.operation,
            outcome,
            evidence=evidence,
            reason=reason,
            duration=duration,
            measurements=self.measurements,
        )
        return outcome, message

    def conclude(self) -> None:
        """Record the case, then end the pytest item with the matching outcome."""
        outcome, message = self.settle()
        if outcome in (Outcome.FAIL, Outcome.ERROR):
            pytest.fail(message, pytrace=False)
        if outcome is Outcome.SKIP:
            pytest.skip(message)
