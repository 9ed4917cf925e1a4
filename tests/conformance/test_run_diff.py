"""``mimic-conformance diff``: what got fixed and what regressed between two run records."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import USAGE
from conformance.cli import main as cli_main
from conformance.results import CaseResult, Evidence, Level, Outcome, Requirement, RunRecord
from conformance.run_diff import PairChange, RunDiff, diff_records, main, render_diff
from tests.conformance._records import run_record

P, F, E, S = Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.SKIP
CHAT = "POST /v1/chat/completions"
MODELS = "GET /v1/models"
TARGET = "http://127.0.0.1:8000"

REQUIREMENTS = {
    rid: Requirement(rid, level, f"{rid} holds.", "test")
    for rid, level in [
        ("MUST-A", Level.MUST),
        ("MUST-B", Level.MUST),
        ("MUST-C", Level.MUST),
        ("SHOULD-D", Level.SHOULD),
        ("MUST-E", Level.MUST),
    ]
}


def _case(
    rid: str, outcome: Outcome, operation: str = CHAT, message: str = "it broke"
) -> CaseResult:
    return CaseResult(
        rid,
        operation,
        outcome,
        evidence=Evidence(operation=operation, message=message) if outcome is F else None,
        reason={E: message, S: "not offered"}.get(outcome),
    )


def _record(cases: list[CaseResult], target: str = TARGET, **fields: Any) -> RunRecord:
    ids = dict.fromkeys(case.requirement_id for case in cases)
    return run_record([REQUIREMENTS[rid] for rid in ids], cases, target=target, **fields)


def _pairs(
    changes: tuple[PairChange, ...],
) -> list[tuple[str, str, Outcome | None, Outcome | None]]:
    return [(c.requirement_id, c.operation, c.old, c.new) for c in changes]


def _section(markdown: str, title: str) -> list[str]:
    """The table rows of one section of the rendered diff."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"### {title} ("))
    rows = []
    for line in lines[start + 4 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _cells(row: str) -> list[str]:
    """A table row's cells, split on the pipes Markdown would split on (unescaped ones)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]


# -- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (F, P, "fixed"),
        (E, P, "fixed"),
        (P, F, "regressed"),
        (P, E, "regressed"),
        (None, F, "new_failures"),
        (S, E, "new_failures"),
        (F, E, "still_failing"),
        (E, E, "still_failing"),
        (F, None, "no_longer_judged"),
        (E, S, "no_longer_judged"),
    ],
)
def test_each_listed_kind_of_change(old: Outcome | None, new: Outcome | None, kind: str) -> None:
    before = _record([_case("MUST-A", old)] if old else [_case("MUST-B", P)])
    after = _record([_case("MUST-A", new)] if new else [_case("MUST-B", P)])
    diff = diff_records(before, after)
    assert getattr(diff, kind) == (
        PairChange(
            "MUST-A",
            Level.MUST,
            CHAT,
            old,
            new,
            "it broke" if new in (F, E) else None,
        ),
    )
    listed = ("regressed", "new_failures", "fixed", "still_failing", "no_longer_judged")
    assert all(not getattr(diff, other) for other in listed if other != kind)


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (P, P, "unchanged_passes"),
        (None, P, "newly_passing"),
        (S, P, "newly_passing"),
        (P, S, "passes_no_longer_judged"),
        (P, None, "passes_no_longer_judged"),
        (S, S, "never_judged"),
        (S, None, "never_judged"),
        (None, S, "never_judged"),
    ],
)
def test_uneventful_pairs_are_only_counted(
    old: Outcome | None, new: Outcome | None, kind: str
) -> None:
    skipped = _case("MUST-B", S)  # skipped in both runs
    before = _record([_case("MUST-A", old), skipped] if old else [skipped])
    after = _record([_case("MUST-A", new), skipped] if new else [skipped])
    diff = diff_records(before, after)
    counted = ("unchanged_passes", "newly_passing", "passes_no_longer_judged", "never_judged")
    expected = {name: int(name == kind) for name in counted}
    expected["never_judged"] += 1  # MUST-B
    assert {name: getattr(diff, name) for name in counted} == expected
    assert not diff.got_worse
    assert diff == RunDiff(**expected)


def test_pairs_are_judged_per_operation_on_the_aggregated_outcome() -> None:
    before = _record([_case("MUST-A", P, CHAT), _case("MUST-A", F, MODELS)])
    after = _record(
        [
            _case("MUST-A", P, CHAT),
            _case("MUST-A", E, CHAT, "timed out"),
            _case("MUST-A", F, CHAT, "first failure"),
            _case("MUST-A", F, CHAT, "second failure"),
            _case("MUST-A", P, MODELS),
        ]
    )
    diff = diff_records(before, after)
    assert _pairs(diff.regressed) == [("MUST-A", CHAT, P, F)]
    assert diff.regressed[0].message == "first failure"
    assert _pairs(diff.fixed) == [("MUST-A", MODELS, F, P)]
    assert diff.fixed[0].message is None


def test_an_error_carries_its_evidence_message_else_its_reason() -> None:
    with_evidence = CaseResult(
        "MUST-A", CHAT, E, evidence=Evidence(operation=CHAT, message="from evidence"), reason="r"
    )
    diff = diff_records(_record([_case("MUST-B", P)]), _record([with_evidence]))
    assert diff.new_failures[0].message == "from evidence"
    diff = diff_records(_record([_case("MUST-B", P)]), _record([_case("MUST-A", E, CHAT, "why")]))
    assert diff.new_failures[0].message == "why"


def test_the_level_comes_from_the_new_record_first() -> None:
    old_should = Requirement("MUST-A", Level.SHOULD, "A holds.", "test")
    before = _record([])
    before.add_requirement(old_should)
    before.add_case(_case("MUST-A", P))
    gone = Requirement("MUST-Z", Level.SHOULD, "Z holds.", "old kit")
    before.add_requirement(gone)
    before.add_case(_case("MUST-Z", F))
    diff = diff_records(before, _record([_case("MUST-A", F)]))
    assert diff.regressed[0].level is Level.MUST
    assert diff.no_longer_judged[0].level is Level.SHOULD  # only the old record has MUST-Z


def test_changes_are_listed_must_first_then_in_record_order_then_by_path() -> None:
    cases = [
        _case("SHOULD-D", F, CHAT),
        _case("MUST-C", F, MODELS),
        _case("MUST-C", F, CHAT),
        _case("MUST-A", F, CHAT),
    ]
    diff = diff_records(_record([_case("MUST-E", P)]), _record(cases))
    assert _pairs(diff.new_failures) == [
        ("MUST-C", CHAT, None, F),
        ("MUST-C", MODELS, None, F),
        ("MUST-A", CHAT, None, F),
        ("SHOULD-D", CHAT, None, F),
    ]


# -- the Markdown -----------------------------------------------------------------------------


def _mixed_runs() -> tuple[RunRecord, RunRecord]:
    before = _record(
        [
            _case("MUST-A", P),
            _case("MUST-B", F, message="old failure"),
            _case("MUST-C", F),
            _case("SHOULD-D", E),
            _case("MUST-E", P, MODELS),
        ]
    )
    after = _record(
        [
            _case("MUST-A", F, message="now broken"),
            _case("MUST-B", P),
            _case("MUST-C", E, message="still broken"),
            _case("SHOULD-D", S),
            _case("MUST-E", P, MODELS),
            _case("MUST-E", F, CHAT, "brand new"),
        ],
        seed=8,
        started_at="2026-01-02T00:00:00.000Z",
    )
    return before, after


def test_the_markdown_lists_each_kind_in_order_with_counts() -> None:
    before, after = _mixed_runs()
    markdown = render_diff(diff_records(before, after), before, after)
    assert markdown.startswith("## Mimic conformance: what changed between two runs\n")
    titles = [line for line in markdown.splitlines() if line.startswith("### ")]
    assert titles == [
        "### Regressed (1)",
        "### New failures (1)",
        "### Fixed (1)",
        "### Still failing (1)",
        "### No longer judged (1)",
    ]
    assert _cells(_section(markdown, "Regressed")[0]) == [
        "MUST-A",
        "MUST",
        CHAT,
        "pass → fail",
        "now broken",
    ]
    assert _cells(_section(markdown, "New failures")[0]) == [
        "MUST-E",
        "MUST",
        CHAT,
        "not run → fail",
        "brand new",
    ]
    assert _cells(_section(markdown, "Fixed")[0]) == ["MUST-B", "MUST", CHAT, "fail → pass"]
    assert _cells(_section(markdown, "Still failing")[0])[3:] == ["fail → error", "still broken"]
    assert _cells(_section(markdown, "No longer judged")[0]) == [
        "SHOULD-D",
        "SHOULD",
        CHAT,
        "error → skip",
    ]
    assert "old failure" not in markdown  # the old run's messages are not the news
    assert markdown.endswith(
        "\n1 fixed, 1 regressed, 1 new failure, 1 still failing, 1 no longer judged, "
        "1 unchanged pass.\n"
    )


def test_the_markdown_describes_both_runs() -> None:
    before, after = _mixed_runs()
    lines = render_diff(diff_records(before, after), before, after).splitlines()
    before_line = next(line for line in lines if line.startswith("- Before:"))
    after_line = next(line for line in lines if line.startswith("- After:"))
    for text in (TARGET, "seed 7", "started 2026-01-01T00:00:00.000Z", "kit 0.1.0"):
        assert text in before_line
    assert "**NOT CONFORMANT**" in before_line
    assert "seed 8" in after_line
    assert "started 2026-01-02T00:00:00.000Z" in after_line
    assert "MUST-A" in after_line  # the verdict names what failed


def test_empty_sections_are_left_out() -> None:
    run = _record([_case("MUST-A", P), _case("MUST-B", F)])
    markdown = render_diff(diff_records(run, run), run, run)
    assert [line for line in markdown.splitlines() if line.startswith("###")] == [
        "### Still failing (1)"
    ]
    assert "0 fixed, 0 regressed, 0 new failures, 1 still failing" in markdown
    assert "1 unchanged pass." in markdown


def test_two_targets_are_named_as_such() -> None:
    ours = _record([_case("MUST-A", P)])
    theirs = _record([_case("MUST-A", F)], target="https://other.example")
    markdown = render_diff(diff_records(ours, theirs), ours, theirs)
    assert markdown.splitlines()[0] == "## Mimic conformance: what changed between two targets"
    assert "https://other.example" in markdown


def test_a_different_spec_is_pointed_out() -> None:
    before = _record([_case("MUST-A", P)])
    after = _record([_case("MUST-A", P)])
    after.spec_sha256 = "cd" * 32
    assert "different specs" in render_diff(diff_records(before, after), before, after)
    assert "different specs" not in render_diff(diff_records(before, before), before, before)


HOSTILE = "a | b `code` <script>alert(1)</script>\nnew line\r\n| --- | *bold* [x](http://e)"


def test_hostile_failure_messages_cannot_break_the_table() -> None:
    before = _record([_case("MUST-A", P)])
    after = _record([_case("MUST-A", F, message=HOSTILE + "x" * 500)], target="<b>evil</b>|")
    markdown = render_diff(diff_records(before, after), before, after)
    rows = _section(markdown, "Regressed")
    assert len(rows) == 1
    cells = _cells(rows[0])
    assert len(cells) == 5
    failure = cells[4]
    assert "<script>" not in markdown
    assert "<b>" not in markdown
    assert re.search(r"(?<!\\)[`|<>*\[]", failure) is None  # every special is escaped
    assert "\n" not in failure and "\r" not in failure
    assert failure.endswith("…")
    assert len(failure) < 300


def test_a_hostile_operation_label_is_escaped_too() -> None:
    before = _record([_case("MUST-A", P, "GET /x|y")])
    after = _record([_case("MUST-A", F, "GET /x|y")])
    rows = _section(render_diff(diff_records(before, after), before, after), "Regressed")
    assert _cells(rows[0])[2] == r"GET /x\|y"


# -- the command ----------------------------------------------------------------------------------


def _write(path: Path, record: RunRecord) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.to_json(), encoding="utf-8")
    return str(path)


def test_the_command_prints_the_markdown_and_fails_on_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = _mixed_runs()
    old = _write(tmp_path / "old" / "results.json", before)
    new = _write(tmp_path / "new" / "results.json", after)
    assert cli_main(["diff", old, new]) == 1
    out = capsys.readouterr().out
    assert out == render_diff(diff_records(before, after), before, after)
    assert "### Regressed (1)" in out


def test_the_command_succeeds_when_nothing_got_worse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, broken = _mixed_runs()
    mended = _record([_case(case.requirement_id, P, case.operation) for case in broken.cases])
    old = _write(tmp_path / "old" / "results.json", broken)
    new = _write(tmp_path / "new" / "results.json", mended)
    assert cli_main(["diff", old, new]) == 0
    out = capsys.readouterr().out
    assert "### Fixed (3)" in out  # MUST-A, MUST-C and MUST-E on chat
    assert "### Regressed" not in out and "### New failures" not in out


def test_a_new_failure_alone_fails_the_command(tmp_path: Path) -> None:
    old = _write(tmp_path / "old.json", _record([_case("MUST-A", S)]))
    new = _write(tmp_path / "new.json", _record([_case("MUST-A", E)]))
    assert main([old, new]) == 1


def test_a_missing_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = _write(tmp_path / "new" / "results.json", _record([_case("MUST-A", P)]))
    missing = tmp_path / "nowhere" / "results.json"
    assert cli_main(["diff", str(missing), new]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err
        == f"mimic-conformance diff: cannot read {missing}: No such file or directory\n"
    )


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"format": "something-else"}',
        '{"format": "mimic-conformance-results", "format_version": 1}',
        "\udcff",
    ],
)
def test_a_file_that_is_not_a_results_json_is_one_clear_line(
    content: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "results.json"
    bad.write_bytes(content.encode("utf-8", "surrogateescape"))
    good = _write(tmp_path / "good.json", _record([_case("MUST-A", P)]))
    assert cli_main(["diff", good, str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"mimic-conformance diff: {bad} is not a results.json: ")
    assert captured.err.count("\n") == 1


def test_a_directory_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path / "good.json", _record([_case("MUST-A", P)]))
    assert main([str(tmp_path), good]) == 2
    assert capsys.readouterr().err.startswith(f"mimic-conformance diff: cannot read {tmp_path}: ")


def test_wrong_arguments_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["diff", "only-one.json"]) == 2
    assert "usage: mimic-conformance diff" in capsys.readouterr().err
    assert cli_main(["diff", "--help"]) == 0
    assert "OLD/results.json NEW/results.json" in capsys.readouterr().out


def test_the_suite_usage_mentions_the_diff() -> None:
    assert "mimic-conformance diff OLD/results.json NEW/results.json" in USAGE
