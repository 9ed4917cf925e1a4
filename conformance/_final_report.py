"""The end of a run: one run record from every process's cases, the reports, the verdict line.

:func:`build_record` merges the cases of the controller and its workers (one per requirement and
operation, the worst outcome winning), gives every selected requirement that no test judged a
case of its own (an error if the target could not be judged or tests could not be collected,
else a skip), and works out the target's outage from what each process saw of it.
:func:`write_terminal_summary` prints the verdict, the counts and where the reports are.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import spec
from conformance import __version__
from conformance._reference_process import ReferenceServer
from conformance._xdist import WorkerResults, liveness_report
from conformance.baseline import KnownFailure, write_baseline
from conformance.outage import TargetDown
from conformance.results import REDACTED, CaseResult, Outcome, RunRecord, utc_now
from conformance.suite._run import Run

__all__ = ["build_record", "merge_cases", "write_terminal_summary"]

_WORST_FIRST = (Outcome.FAIL, Outcome.ERROR, Outcome.PASS, Outcome.SKIP, Outcome.NOT_APPLICABLE)


def build_record(
    run: Run,
    *,
    started_at: str,
    workers: WorkerResults,
    problems: list[str],
    server: ReferenceServer | None,
    error: str | None = None,
) -> RunRecord:
    """The run record of ``run`` and its workers' cases.

    ``problems`` are why tests could not run (the reference server did not start, collection
    errors); ``error``, why the target could not be judged at all. ``server`` is the reference
    server the run started, if any: an outage then says how it ended and how its log ended.
    """
    settings = run.settings
    requirements = list(run.selected_requirements)
    cases = [*run.cases, *workers.cases]
    judged = {case.requirement_id for case in cases}
    for requirement in requirements:
        if requirement.id in judged:
            continue
        if error is not None:
            cases.append(CaseResult(requirement.id, "(target)", Outcome.ERROR, reason=error))
        elif problems:
            reason = f"its tests could not be collected: {problems[0]}"
            cases.append(CaseResult(requirement.id, "(suite)", Outcome.ERROR, reason=reason))
        else:
            cases.append(
                CaseResult(
                    requirement.id, "(suite)", Outcome.SKIP, reason="no test of the run judged it"
                )
            )
    options = settings.to_options()
    options["profile_settings"] = settings.profile.to_dict()
    merged = merge_cases(cases)
    down = _target_down(run, workers, merged)
    if down is not None and server is not None:
        down = _with_server_end(down, server, settings.api_key)
    return RunRecord(
        target=run.target,
        spec_title=run.contract.title,
        spec_version=run.contract.version,
        spec_sha256=spec.sha256(settings.spec_path),
        contract=run.contract.name,
        kit_version=__version__,
        seed=settings.seed,
        started_at=started_at,
        finished_at=utc_now(),
        options=options,
        requirements=requirements,
        cases=merged,
        target_down=down,
        known_failures=settings.known_failures,
    )


def baseline_of(record: RunRecord) -> list[KnownFailure]:
    """A baseline naming every (requirement, operation) that failed or errored in ``record``.

    An entry the run's own baseline already had keeps its reason; a new one says what failed,
    for a person to replace with why it is accepted.
    """
    reasons = {entry.key: entry.reason for entry in record.known_failures or ()}
    entries = []
    for result in record.requirement_results():
        for case in result.cases:
            if case.outcome not in (Outcome.FAIL, Outcome.ERROR):
                continue
            key = (case.requirement_id, case.operation)
            said = case.evidence.message if case.evidence is not None else case.reason or ""
            first_line = " ".join(said.split())[:200]
            reason = reasons.get(key) or f"{case.outcome}: {first_line}".rstrip(": ")
            entries.append(KnownFailure(case.requirement_id, case.operation, reason))
    return entries


def write_run_baseline(record: RunRecord, path: Path) -> Path:
    """Write :func:`baseline_of` ``record`` to ``path``, with a header saying how to use it."""
    header = [
        f"Known failures of {record.target}, written by mimic-conformance --write-baseline",
        f"at {record.finished_at or record.started_at} (seed {record.seed}).",
        "Give each entry a reason. A run with --baseline FILE fails on any failure not named",
        "here, and on an entry that now passes (remove it: a baseline only ever shrinks).",
    ]
    return write_baseline(path, baseline_of(record), header)


def merge_cases(cases: list[CaseResult]) -> list[CaseResult]:
    """One case per (requirement, operation): a test run on two workers, or two modes, merged."""
    merged: dict[tuple[str, str], CaseResult] = {}
    for case in cases:
        key = (case.requirement_id, case.operation)
        current = merged.get(key)
        if current is None:
            merged[key] = case
            continue
        worst = min(current, case, key=lambda c: _WORST_FIRST.index(c.outcome))
        merged[key] = CaseResult(
            worst.requirement_id,
            worst.operation,
            worst.outcome,
            worst.evidence,
            worst.reason,
            current.duration + case.duration,
        )
    return list(merged.values())


def _target_down(run: Run, workers: WorkerResults, cases: list[CaseResult]) -> TargetDown | None:
    """The run's outage: the first one any process saw, counted over the merged cases.

    The checks that could not run are the merged cases still in error whose
    (requirement, operation) some process recorded in error once the target was down.
    """
    reports: list[dict[str, Any]] = [liveness_report(run), *workers.liveness]
    downs = [TargetDown.from_dict(r["target_down"]) for r in reports if r["target_down"]]
    if not downs:
        return None
    first = min(downs, key=lambda down: down.since)
    not_run = {tuple(key) for report in reports for key in report["not_run"]}
    checks = sum(
        1
        for case in cases
        if case.outcome is Outcome.ERROR and (case.requirement_id, case.operation) in not_run
    )
    return dataclasses.replace(
        first,
        requests_answered=sum(int(report["answered"]) for report in reports),
        checks_not_run=checks,
    )


def _with_server_end(down: TargetDown, server: ReferenceServer, secret: str | None) -> TargetDown:
    """``down`` with how the reference server ended and its log's last lines (key redacted)."""
    return dataclasses.replace(
        down,
        server_exit=server.exit_description(wait=1.0),
        server_log_tail=tuple(
            line.replace(secret, REDACTED) if secret else line for line in server.log_tail()
        ),
    )


def write_terminal_summary(writer: Any, record: RunRecord, directory: Path) -> None:
    """Print the verdict, the counts, the outage if any and where the reports are."""
    summary = record.summary()
    counts = ", ".join(f"{summary.requirements.get(o, 0)} {o}" for o in Outcome)

    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}%"

    writer.section(f"{record.contract_title} conformance", sep="=", bold=True)
    writer.line(
        str(record.verdict(record.gate_should)),
        red=not record.verdict().conformant,
        green=record.verdict().conformant,
    )
    writer.line(
        f"requirements: {counts}; MUST {percent(summary.must.percent)}, "
        f"SHOULD {percent(summary.should.percent)}"
    )
    down = record.target_down
    if down is not None:
        if down.last_answered:
            writer.line(f"last request it answered ({down.last_answered_at}): {down.last_answered}")
        if down.first_failed:
            writer.line(f"first request it did not answer: {down.first_failed}")
        if down.server_log_tail:
            writer.line("the reference server's log ended with:")
            for line in down.server_log_tail:
                writer.line(f"  {line}")
    sorted_out = record.triage()
    if sorted_out is not None:
        for entry in sorted_out.stale:
            writer.line(
                f"stale baseline entry (now passes): {entry.requirement} on {entry.operation}"
            )
    baseline = record.options.get("write_baseline")
    if baseline:
        count = len(baseline_of(record))
        writer.line(f"baseline written: {baseline} ({count} known failure{'s' * (count != 1)})")
    writer.line(f"target {record.target}, seed {record.seed}")
    writer.line(f"report: {directory / 'report.html'} (and results.json, junit.xml, summary.md)")
