"""Replaying a run's failures: which cases, and with which of the run's own options."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance._options import _cases
from conformance.replay import failing_cases, replay_arguments
from conformance.results import CaseResult, Evidence, Level, Outcome, Requirement, RunRecord
from tests.conformance._records import run_record

CHAT, COMPLETIONS = "POST /v1/chat/completions", "POST /v1/completions"
A = Requirement("ERR-UNKNOWN-MODEL", Level.MUST, "A must.", "spec:#/info")
B = Requirement("SEM-COMPLETION-TEXT", Level.SHOULD, "A should.", "spec:#/info")


def record(options: dict[str, object]) -> RunRecord:
    def case(requirement: Requirement, operation: str, outcome: Outcome) -> CaseResult:
        evidence = Evidence(operation, "broke") if outcome is Outcome.FAIL else None
        reason = {Outcome.ERROR: "no answer", Outcome.SKIP: "not applicable"}.get(outcome)
        return CaseResult(requirement.id, operation, outcome, evidence, reason)

    cases = [
        case(A, CHAT, Outcome.FAIL),
        case(A, COMPLETIONS, Outcome.PASS),
        case(B, COMPLETIONS, Outcome.ERROR),
        case(B, CHAT, Outcome.SKIP),
    ]
    return run_record([A, B], cases, seed=42, finished_at=None, options=options)


def test_the_failing_cases_are_the_failed_and_errored_pairs() -> None:
    assert failing_cases(record({})) == [(A.id, CHAT), (B.id, COMPLETIONS)]


def test_the_replay_uses_the_runs_own_options(tmp_path: Path) -> None:
    options = {
        "profile": "quick",
        "max_examples": 5,
        "timeout": 12.0,
        "robust": True,
        "gate_should": False,
        "spec": str(tmp_path / "gone.yaml"),  # a spec that is not there any more is left out
        "api_key": "***redacted***",
    }
    arguments = replay_arguments(record(options), tmp_path / "results.json")
    assert arguments == [
        "--target=http://127.0.0.1:8000",
        "--seed=42",
        "--profile=quick",
        "--max-examples=5",
        "--timeout=12.0",
        f"--report-dir={tmp_path / 'replay'}",
        "--robust",
        f"--case={A.id}@{CHAT}",
        f"--case={B.id}@{COMPLETIONS}",
    ]
    assert not any("redacted" in argument for argument in arguments)


def test_the_users_options_win(tmp_path: Path) -> None:
    extra = ["--target", "http://other:9000", "--report-dir=elsewhere", "-n", "2"]
    arguments = replay_arguments(record({"profile": "full"}), tmp_path / "results.json", extra)
    assert not any(a.startswith(("--target=", "--report-dir=")) for a in arguments[:-5])
    assert arguments[-5:] == extra


def test_case_values_are_read_and_checked() -> None:
    assert _cases(None) == ()
    assert _cases(["err-unknown-model@POST /v1/completions", "ERR-UNKNOWN-MODEL@(suite)"]) == (
        ("ERR-UNKNOWN-MODEL", "POST /v1/completions"),
        ("ERR-UNKNOWN-MODEL", "(suite)"),
    )
    assert _cases("ERR-UNKNOWN-MODEL@POST /v1/completions,ERR-BODY-SHAPE@GET /v1/models") == (
        ("ERR-UNKNOWN-MODEL", "POST /v1/completions"),
        ("ERR-BODY-SHAPE", "GET /v1/models"),
    )
    with pytest.raises(pytest.UsageError, match="'ID@METHOD PATH'"):
        _cases(["ERR-UNKNOWN-MODEL"])
    with pytest.raises(pytest.UsageError, match="no requirement NOPE-1"):
        _cases(["NOPE-1@GET /v1/models"])
