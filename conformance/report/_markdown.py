"""``summary.md``: a few lines for a CI job page (GitHub's ``$GITHUB_STEP_SUMMARY``, say).

The verdict, the counts, what is known of a target that stopped answering, one line per
requirement that failed or errored, and where the full report is. Text that came from the target
is escaped, since CI pages render Markdown and HTML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from conformance.baseline import KnownFailure, Triage
from conformance.outage import TargetDown
from conformance.report._measurements import measured_rows
from conformance.results import LevelSummary, Outcome, RunRecord

_MAX_LISTED = 50
_MAX_MESSAGE = 200
# What can start markup in the middle of a line (lines never start with target text).
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>|~&])")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def escape_markdown(text: str, limit: int = _MAX_MESSAGE) -> str:
    """``text`` on one line, control characters and Markdown syntax escaped, cut at ``limit``."""
    text = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", " ".join(text.split()))
    if len(text) > limit:
        text = text[:limit] + "…"
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _percent(level: LevelSummary) -> str:
    return "n/a" if level.percent is None else f"{level.percent:.1f} %"


def _fenced(text: str, info: str = "") -> list[str]:
    """A code block of ``text``, fenced longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    visible = _CONTROL_BUT_NEWLINE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return [fence + info, visible, fence]


def _down_lines(down: TargetDown) -> list[str]:
    """The details of a target that stopped answering (the verdict already says that it did)."""
    lines = ["### The target stopped answering", ""]
    if down.last_answered:
        answered_at = escape_markdown(down.last_answered_at or "")
        lines += [f"The last request it answered ({answered_at}):", ""]
        lines += [*_fenced(down.last_answered, "sh"), ""]
    if down.first_failed:
        lines += [f"The first it did not: {escape_markdown(down.first_failure)}", ""]
        lines += [*_fenced(down.first_failed, "sh"), ""]
    if down.server_log_tail:
        lines += ["The last lines of the reference server's log:", ""]
        lines += [*_fenced("\n".join(down.server_log_tail)), ""]
    return lines


def _baseline_lines(sorted_out: Triage, known: Sequence[KnownFailure]) -> list[str]:
    """The stale entries of the run's baseline, then the failures it expected."""
    reasons = {entry.key: entry.reason for entry in known}
    lines = []
    if sorted_out.stale:
        lines += ["### Stale baseline entries (they now pass: remove them)", ""]
        lines += [
            f"- **{entry.requirement}** — {escape_markdown(entry.operation)}: "
            f"{escape_markdown(entry.reason)}"
            for entry in sorted_out.stale[:_MAX_LISTED]
        ]
        lines.append("")
    if sorted_out.expected:
        lines += [f"### Expected failures (in the baseline: {len(sorted_out.expected)})", ""]
        lines += [
            f"- **{rid}** — {escape_markdown(operation)}: "
            f"{escape_markdown(reasons[(rid, operation)])}"
            for rid, operation in sorted_out.expected[:_MAX_LISTED]
        ]
        if len(sorted_out.expected) > _MAX_LISTED:
            lines.append(f"- … and {len(sorted_out.expected) - _MAX_LISTED} more")
        lines.append("")
    return lines


def render_markdown(record: RunRecord, *, html_path: str | Path | None = None) -> str:
    """Return the Markdown summary of ``record``; ``html_path`` is shown as the full report."""
    verdict = record.verdict()
    summary = record.summary()
    mark = "✅" if verdict.conformant else "❌"
    lines = [
        f"## {mark} {record.contract_title} conformance: {verdict.headline}",
        "",
        escape_markdown(verdict.reason, limit=1000),
        "",
        f"Target {escape_markdown(record.target)} · contract {record.contract} · "
        f"spec {escape_markdown(record.spec_version)} "
        f"({record.spec_sha256[:12]}) · kit {escape_markdown(record.kit_version)} · "
        f"seed {record.seed if record.seed is not None else 'none'} · "
        + ("hostile traffic sent (--robust)" if record.options.get("robust") else "no --robust"),
        "",
        "| Level | Pass | Fail | Error | Skip | N/A | Conformance |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for level in (summary.must, summary.should):
        lines.append(
            f"| {level.level} | {level.passed} | {level.failed} | {level.errored} | "
            f"{level.skipped} | {level.not_applicable} | {_percent(level)} |"
        )
    lines.append("")
    if record.target_down is not None:
        lines += _down_lines(record.target_down)
    sorted_out = record.triage()
    expected = set(sorted_out.expected) if sorted_out is not None else set()
    bad = [
        result
        for result in record.requirement_results()
        if any(
            case.outcome in (Outcome.FAIL, Outcome.ERROR)
            and (case.requirement_id, case.operation) not in expected
            for case in result.cases
        )
    ]
    if bad:
        title = "New failures (not in the baseline)" if sorted_out else "Requirements not met"
        lines += [f"### {title}", ""]
        for result in bad[:_MAX_LISTED]:
            requirement = result.requirement
            first = next(
                case
                for case in result.cases
                if case.outcome in (Outcome.FAIL, Outcome.ERROR)
                and (case.requirement_id, case.operation) not in expected
            )
            lines.append(
                f"- **{requirement.id}** ({requirement.level}, {result.outcome}) "
                f"{escape_markdown(requirement.statement)} — {escape_markdown(first.operation)}: "
                f"{escape_markdown(first.explanation)}"
            )
        if len(bad) > _MAX_LISTED:
            lines.append(f"- … and {len(bad) - _MAX_LISTED} more")
        lines.append("")
    if sorted_out is not None and record.known_failures is not None:
        lines += _baseline_lines(sorted_out, record.known_failures)
    lines += _measurement_lines(record)
    if html_path is not None:
        lines += [f"Full report: `{Path(html_path).as_posix()}`", ""]
    return "\n".join(lines)


def _measurement_lines(record: RunRecord) -> list[str]:
    """The "Stream timings" table, if some case measured something."""
    labels, rows = measured_rows(record)
    if not rows:
        return []
    lines = [
        "### Stream timings",
        "",
        "Measured on the suite's long stream per operation: information, not verdicts.",
        "",
        "| Operation | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for row in rows:
        cells = [escape_markdown(row.operation), *(row.values[label] for label in labels)]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_markdown(record: RunRecord, path: Path, *, html_path: str | Path | None = None) -> Path:
    """Write the Markdown summary of ``record`` to ``path``; return the path."""
    path = Path(path)
    path.write_text(render_markdown(record, html_path=html_path), encoding="utf-8")
    return path
