"""Baselines of known failures: the file, the triage, and what a run with one concludes."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance._final_report import baseline_of, write_run_baseline
from conformance.baseline import (
    BaselineError,
    KnownFailure,
    read_baseline,
    triage,
    write_baseline,
)
from conformance.report import render_junit, render_markdown
from conformance.report._html import render_html
from conformance.requirements import REQUIREMENTS
from conformance.results import CaseResult, Evidence, Level, Outcome, Requirement, RunRecord
from tests.conformance._records import run_record

IDS = {r.id for r in REQUIREMENTS}
CHAT, COMPLETIONS = "POST /v1/chat/completions", "POST /v1/completions"
P, F, E, S = Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.SKIP
MUST_A = Requirement("ERR-UNKNOWN-MODEL", Level.MUST, "A must.", "spec:#/info")
MUST_B = Requirement("SEM-USAGE-SUM", Level.MUST, "Another must.", "spec:#/info")
SHOULD = Requirement("SEM-COMPLETION-TEXT", Level.SHOULD, "A should.", "spec:#/info")


def case(requirement: Requirement, operation: str, outcome: Outcome) -> CaseResult:
    evidence = Evidence(operation, "it | <b>broke</b>\nbadly") if outcome is F else None
    return CaseResult(requirement.id, operation, outcome, evidence, "x" if outcome is E else None)


def record(cases: list[CaseResult], known: tuple[KnownFailure, ...] | None) -> RunRecord:
    return run_record(
        [MUST_A, MUST_B, SHOULD],
        cases,
        options={"baseline": "known.toml"} if known is not None else {},
        known_failures=known,
    )


def known(requirement: Requirement, operation: str) -> KnownFailure:
    return KnownFailure(requirement.id, operation, "accepted until v2")


# ------------------------------------------------------------------ the file


@pytest.mark.parametrize("name", ["known.toml", "known.yaml", "known.yml"])
def test_a_baseline_reads_back_what_was_written(tmp_path: Path, name: str) -> None:
    entries = [
        KnownFailure("ERR-UNKNOWN-MODEL", CHAT, 'answers 400 "for now" \\ until v2\nsee #12'),
        KnownFailure("SEM-USAGE-SUM", "(suite)", "é 😀 \x00 tab\there"),
    ]
    path = write_baseline(tmp_path / name, entries, ["written by a test"])
    assert path.read_text().startswith("# written by a test\n")
    assert read_baseline(path, IDS) == tuple(entries)


def test_an_empty_baseline_is_valid(tmp_path: Path) -> None:
    assert read_baseline(write_baseline(tmp_path / "b.toml", []), IDS) == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[known_failures]]\nrequirement = 'ERR-X'\noperation = 'o'\nreason = 'r'\n", "ERR-X"),
        ("[[known_failures]]\nrequirement = 'SEM-USAGE-SUM'\noperation = 'o'\n", "'reason'"),
        ("known_failures = 3\n", "must be a list"),
        ("this is = = not toml", "not valid TOML or YAML"),
        (
            "[[known_failures]]\nrequirement = 'SEM-USAGE-SUM'\noperation = 'o'\nreason = 'r'\n"
            "[[known_failures]]\nrequirement = 'sem-usage-sum'\noperation = 'o'\nreason = 's'\n",
            "twice",
        ),
    ],
)
def test_a_bad_baseline_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BaselineError, match=message) as raised:
        read_baseline(path, IDS)
    assert str(path) in str(raised.value)


def test_a_missing_baseline_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="No such file"):
        read_baseline(tmp_path / "absent.toml", IDS)


# ------------------------------------------------------------------ triage and verdicts


def test_triage_sorts_failures_and_finds_stale_entries() -> None:
    entries = [known(MUST_A, CHAT), known(MUST_A, COMPLETIONS), known(MUST_B, CHAT)]
    outcomes = {
        (MUST_A.id, CHAT): "fail",
        (MUST_A.id, COMPLETIONS): "pass",
        (MUST_B.id, CHAT): "skip",
        (MUST_B.id, COMPLETIONS): "error",
    }
    sorted_out = triage(entries, outcomes)
    assert sorted_out.expected == ((MUST_A.id, CHAT),)
    assert sorted_out.new == ((MUST_B.id, COMPLETIONS),)
    assert sorted_out.stale == (entries[1],)  # a skipped pair is not stale: it was not judged


def test_only_expected_failures_exit_zero_with_no_new_failures() -> None:
    run = record([case(MUST_A, CHAT, F), case(MUST_B, CHAT, P)], (known(MUST_A, CHAT),))
    assert run.exit_status() == 0
    verdict = run.verdict()
    assert verdict.conformant and verdict.headline == "NO NEW FAILURES"
    assert "1 expected failure (in the baseline), of ERR-UNKNOWN-MODEL" in verdict.reason


def test_a_new_failure_exits_one_and_says_new() -> None:
    cases = [case(MUST_A, CHAT, F), case(MUST_A, COMPLETIONS, F), case(MUST_B, CHAT, E)]
    run = record(cases, (known(MUST_A, CHAT),))
    assert run.exit_status() == 1
    verdict = run.verdict()
    assert verdict.headline == "NOT CONFORMANT" and not verdict.conformant
    assert "new failures in 1 MUST requirement (ERR-UNKNOWN-MODEL)" in verdict.reason
    assert "1 requirement newly could not be checked (SEM-USAGE-SUM)" in verdict.reason
    assert "1 expected failure" in verdict.reason


def test_a_stale_entry_exits_one_and_says_stale() -> None:
    run = record([case(MUST_A, CHAT, P)], (known(MUST_A, CHAT),))
    assert run.exit_status() == 1
    verdict = run.verdict()
    assert verdict.headline == "STALE BASELINE" and not verdict.conformant
    assert "ERR-UNKNOWN-MODEL on POST /v1/chat/completions" in verdict.reason
    assert "remove its entry" in verdict.reason


def test_should_failures_gate_only_with_gate_should_even_with_a_baseline() -> None:
    run = record([case(SHOULD, CHAT, F)], ())
    assert run.exit_status() == 0 and run.exit_status(gate_should=True) == 1


def test_without_failures_a_baseline_changes_nothing() -> None:
    run = record([case(MUST_A, CHAT, P)], ())
    assert run.exit_status() == 0 and run.verdict().headline == "CONFORMANT"


def test_results_json_keeps_the_baseline_and_its_triage() -> None:
    run = record(
        [case(MUST_A, CHAT, F), case(MUST_B, CHAT, F), case(MUST_A, COMPLETIONS, P)],
        (known(MUST_A, CHAT), known(MUST_A, COMPLETIONS)),
    )
    data = json.loads(run.to_json())
    assert data["baseline"]["expected"] == [[MUST_A.id, CHAT]]
    assert data["baseline"]["new"] == [[MUST_B.id, CHAT]]
    assert [e["operation"] for e in data["baseline"]["stale"]] == [COMPLETIONS]
    again = RunRecord.from_json(run.to_json())
    assert again.known_failures == run.known_failures
    assert again.exit_status() == run.exit_status() == 1
    assert json.loads(record([], None).to_json())["baseline"] is None


# ------------------------------------------------------------------ reports


def mixed_run() -> RunRecord:
    return record(
        [case(MUST_A, CHAT, F), case(MUST_B, CHAT, F), case(MUST_A, COMPLETIONS, P)],
        (known(MUST_A, CHAT), known(MUST_A, COMPLETIONS)),
    )


def test_junit_skips_expected_failures_and_fails_stale_entries() -> None:
    root = ET.fromstring(render_junit(mixed_run()))
    cases = {(tc.get("classname"), tc.get("name")): tc for tc in root.iter("testcase")}
    expected = cases[(MUST_A.id, f"[MUST] {CHAT}")]
    assert expected.find("failure") is None
    skipped = expected.find("skipped")
    assert skipped is not None and "accepted until v2" in (skipped.get("message") or "")
    assert cases[(MUST_B.id, f"[MUST] {CHAT}")].find("failure") is not None
    stale = cases[(MUST_A.id, f"[baseline] {COMPLETIONS}")].find("failure")
    assert stale is not None and "stale baseline entry" in (stale.get("message") or "")
    assert root.get("failures") == "2" and root.get("tests") == "5"  # SHOULD: no case


def test_markdown_and_html_show_expected_failures_apart() -> None:
    run = mixed_run()
    markdown = render_markdown(run)
    assert "### New failures (not in the baseline)" in markdown
    new_section = markdown.split("### New failures")[1].split("###")[0]
    assert MUST_B.id in new_section and MUST_A.id not in new_section
    assert "### Stale baseline entries" in markdown and "### Expected failures" in markdown
    html = render_html(run)
    assert 'id="baseline"' in html and "Expected failures (in the baseline" in html
    assert "expected (in the baseline)" in html and "<b>broke</b>" not in html


def test_a_written_baseline_keeps_reasons_and_names_every_failure(tmp_path: Path) -> None:
    run = dataclasses.replace(
        record(
            [case(MUST_A, CHAT, F), case(MUST_B, COMPLETIONS, E), case(MUST_A, COMPLETIONS, P)],
            (known(MUST_A, CHAT),),
        ),
        options={"write_baseline": str(tmp_path / "b.toml")},
    )
    entries = baseline_of(run)
    assert [(e.requirement, e.operation) for e in entries] == [
        (MUST_A.id, CHAT),
        (MUST_B.id, COMPLETIONS),
    ]
    assert entries[0].reason == "accepted until v2"  # kept from the run's own baseline
    assert entries[1].reason == "error: x"
    path = write_run_baseline(run, tmp_path / "b.toml")
    assert read_baseline(path, IDS) == tuple(entries)
    assert "written by mimic-conformance --write-baseline" in path.read_text()
