"""``mimic-conformance diff``: what got fixed and what regressed between two runs.

    mimic-conformance diff OLD/results.json NEW/results.json

Compares two run records pair by pair, a pair being one requirement on one operation with the
outcome the report's matrix shows for it (its cases aggregated), and prints the changes as
Markdown on stdout. The two runs may be of one target (before and after a change) or of two
targets (one implementation against another). A pair that failed before and is skipped or
absent now is "no longer judged", not fixed. Exit status 1 if anything regressed or newly
failed, else 0; 2 when a file cannot be read as a ``results.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.report._markdown import escape_markdown
from conformance.results import Level, Outcome, RunRecord, operation_sort_key

__all__ = ["PROG", "PairChange", "RunDiff", "diff_records", "main", "read_record", "render_diff"]

PROG = "mimic-conformance diff"
_FAILED = frozenset({Outcome.FAIL, Outcome.ERROR})
_MAX_MESSAGE = 200
_NOT_RUN = "not run"

# The kinds of change, by the name of their field in RunDiff: listed ones, in report order...
_LISTED = (
    ("regressed", "Regressed"),
    ("new_failures", "New failures"),
    ("fixed", "Fixed"),
    ("still_failing", "Still failing"),
    ("no_longer_judged", "No longer judged"),
)
# ... and counted ones.
_COUNTED = ("unchanged_passes", "newly_passing", "passes_no_longer_judged", "never_judged")


@dataclass(frozen=True)
class PairChange:
    """One requirement on one operation, with its outcome in the old run and in the new.

    ``old`` and ``new`` are the pair's aggregated outcomes, ``None`` when that run has no case
    for the pair. ``message`` is the new run's failure message (the evidence's message, else the
    reason) when ``new`` is FAIL or ERROR, else ``None``.
    """

    requirement_id: str
    level: Level
    operation: str
    old: Outcome | None
    new: Outcome | None
    message: str | None = None


@dataclass(frozen=True)
class RunDiff:
    """The pairs of two runs, by kind of change; the uneventful kinds are only counted.

    Listed: ``regressed`` (pass, then fail or error), ``new_failures`` (not judged, then fail
    or error), ``fixed`` (fail or error, then pass), ``still_failing`` (fail or error in both),
    ``no_longer_judged`` (fail or error, then skipped or absent). Counted:
    ``unchanged_passes``, ``newly_passing`` (not judged, then pass),
    ``passes_no_longer_judged`` (pass, then skipped or absent) and ``never_judged`` (skipped or
    absent in both). "Not judged" means skipped or absent.
    """

    regressed: tuple[PairChange, ...] = ()
    new_failures: tuple[PairChange, ...] = ()
    fixed: tuple[PairChange, ...] = ()
    still_failing: tuple[PairChange, ...] = ()
    no_longer_judged: tuple[PairChange, ...] = ()
    unchanged_passes: int = 0
    newly_passing: int = 0
    passes_no_longer_judged: int = 0
    never_judged: int = 0

    @property
    def got_worse(self) -> bool:
        """Whether any pair regressed or newly failed."""
        return bool(self.regressed or self.new_failures)

    def exit_status(self) -> int:
        """Return 1 if any pair regressed or newly failed, else 0."""
        return 1 if self.got_worse else 0


# -- comparing ----------------------------------------------------------------------------------


def _kind(old: Outcome | None, new: Outcome | None) -> str:
    """The name of the :class:`RunDiff` field a pair with these outcomes belongs to."""
    if old in _FAILED:
        if new is Outcome.PASS:
            return "fixed"
        return "still_failing" if new in _FAILED else "no_longer_judged"
    if old is Outcome.PASS:
        if new in _FAILED:
            return "regressed"
        return "unchanged_passes" if new is Outcome.PASS else "passes_no_longer_judged"
    if new in _FAILED:
        return "new_failures"
    return "newly_passing" if new is Outcome.PASS else "never_judged"


def _failure_messages(record: RunRecord) -> dict[tuple[str, str, Outcome], str]:
    """The first failure message of each (requirement ID, operation, FAIL or ERROR) in a run."""
    messages: dict[tuple[str, str, Outcome], str] = {}
    for case in record.cases:
        if case.outcome in _FAILED:
            evidence = case.evidence.message if case.evidence is not None else ""
            key = (case.requirement_id, case.operation, case.outcome)
            messages.setdefault(key, evidence or case.reason or "")
    return messages


def _levels(old: RunRecord, new: RunRecord) -> dict[str, Level]:
    """Each requirement's level, the new record's when both have it."""
    return {req.id: req.level for req in (*old.requirements, *new.requirements)}


def _pairs(old: RunRecord, new: RunRecord, levels: dict[str, Level]) -> list[tuple[str, str]]:
    """Every (requirement ID, operation) with a case in either run, in report order.

    MUST before SHOULD; then in record order (the new record's, then requirements only the old
    one has); then by path and method.
    """
    ids = (req.id for req in (*new.requirements, *old.requirements))
    order = {rid: index for index, rid in enumerate(dict.fromkeys(ids))}
    pairs = {(case.requirement_id, case.operation) for case in (*old.cases, *new.cases)}
    return sorted(
        pairs,
        key=lambda pair: (
            levels[pair[0]] is not Level.MUST,
            order[pair[0]],
            operation_sort_key(pair[1]),
        ),
    )


def diff_records(old: RunRecord, new: RunRecord) -> RunDiff:
    """Classify every (requirement, operation) pair of either run by how its outcome changed.

    Outcomes are those of :meth:`RunRecord.matrix` (a pair's cases aggregated); see
    :class:`RunDiff` for the kinds.
    """
    old_matrix, new_matrix = old.matrix(), new.matrix()
    levels = _levels(old, new)
    messages = _failure_messages(new)
    listed: dict[str, list[PairChange]] = {name: [] for name, _ in _LISTED}
    counted = dict.fromkeys(_COUNTED, 0)
    for rid, operation in _pairs(old, new, levels):
        before = old_matrix.get(rid, {}).get(operation)
        after = new_matrix.get(rid, {}).get(operation)
        kind = _kind(before, after)
        if kind in counted:
            counted[kind] += 1
            continue
        message = messages.get((rid, operation, after)) if after in _FAILED else None
        listed[kind].append(PairChange(rid, levels[rid], operation, before, after, message))
    return RunDiff(**{name: tuple(changes) for name, changes in listed.items()}, **counted)


# -- rendering ----------------------------------------------------------------------------------


def _plural(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def _run_line(label: str, record: RunRecord) -> str:
    verdict = record.verdict()
    seed = record.seed if record.seed is not None else "none"
    return (
        f"- {label}: target {escape_markdown(record.target)} · seed {seed} · "
        f"started {escape_markdown(record.started_at)} · "
        f"kit {escape_markdown(record.kit_version)} · "
        f"**{verdict.headline}**: {escape_markdown(verdict.reason, limit=1000)}"
    )


def _spec_lines(old: RunRecord, new: RunRecord) -> list[str]:
    """A note when the two runs judged different versions of the spec, else nothing."""
    if old.spec_sha256 == new.spec_sha256:
        return []

    def spec(record: RunRecord) -> str:
        version, digest = record.spec_version, record.spec_sha256[:12]
        return f"{escape_markdown(version)} ({escape_markdown(digest)})"

    return [f"The runs judged different specs: {spec(old)} before, {spec(new)} after.", ""]


def _outcome(outcome: Outcome | None) -> str:
    return _NOT_RUN if outcome is None else str(outcome)


def _table(title: str, changes: Sequence[PairChange]) -> list[str]:
    """A section: its heading, then one table row per change (with the failure, if any)."""
    with_failure = any(change.new in _FAILED for change in changes)
    header = "| Requirement | Level | Operation | Before → after |"
    rule = "|---|---|---|---|"
    if with_failure:
        header, rule = header + " Failure |", rule + "---|"
    lines = [f"### {title} ({len(changes)})", "", header, rule]
    for change in changes:
        row = (
            f"| {escape_markdown(change.requirement_id)} | {change.level} | "
            f"{escape_markdown(change.operation)} "
            f"| {_outcome(change.old)} → {_outcome(change.new)} |"
        )
        if with_failure:
            row += f" {escape_markdown(change.message or '', limit=_MAX_MESSAGE)} |"
        lines.append(row)
    return [*lines, ""]


def _counts(diff: RunDiff) -> str:
    """The one-line count summary; the rarer counted kinds only when there are some."""
    parts = [
        f"{len(diff.fixed)} fixed",
        f"{len(diff.regressed)} regressed",
        _plural(len(diff.new_failures), "new failure", "new failures"),
        f"{len(diff.still_failing)} still failing",
        f"{len(diff.no_longer_judged)} no longer judged",
        _plural(diff.unchanged_passes, "unchanged pass", "unchanged passes"),
    ]
    extras: Iterable[tuple[int, str]] = (
        (diff.newly_passing, f"{diff.newly_passing} newly passing"),
        (
            diff.passes_no_longer_judged,
            f"{diff.passes_no_longer_judged} passed before, not judged now",
        ),
        (diff.never_judged, f"{diff.never_judged} judged in neither run"),
    )
    parts += [text for number, text in extras if number]
    return ", ".join(parts) + "."


def render_diff(diff: RunDiff, old: RunRecord, new: RunRecord) -> str:
    """Return the Markdown of ``diff``, the comparison of run ``old`` with run ``new``.

    A heading (which says whether two runs or two targets are compared), a line per run, a
    table per kind of change that has any (Regressed, New failures, Fixed, Still failing, No
    longer judged), then the counts. Text that came from a target is escaped.
    """
    between = "two runs" if old.target == new.target else "two targets"
    lines = [
        f"## Mimic conformance: what changed between {between}",
        "",
        _run_line("Before", old),
        _run_line("After", new),
        "",
        *_spec_lines(old, new),
    ]
    for name, title in _LISTED:
        changes: tuple[PairChange, ...] = getattr(diff, name)
        if changes:
            lines += _table(title, changes)
    lines += [_counts(diff), ""]
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------

_UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError)


def _why(path: Path, error: Exception) -> str:
    """One line saying why ``path`` could not be read as a run record."""
    if isinstance(error, OSError):
        return f"cannot read {path}: {error.strerror or error}"
    detail = f"it has no {error} field" if isinstance(error, KeyError) else str(error)
    return f"{path} is not a results.json: {' '.join(detail.split())}"


def read_record(path: Path) -> RunRecord:
    """Read ``path`` as a ``results.json``; raise ``ValueError`` with a one-line reason if not."""
    try:
        return RunRecord.from_json(Path(path).read_bytes())
    except _UNREADABLE as error:
        raise ValueError(_why(Path(path), error)) from error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Print, as Markdown, what was fixed and what regressed between two runs "
        "(or two targets). Exit status 1 if anything regressed or newly failed, else 0; "
        "2 when a file cannot be read.",
    )
    parser.add_argument("old", type=Path, metavar="OLD/results.json", help="the earlier run")
    parser.add_argument("new", type=Path, metavar="NEW/results.json", help="the later run")
    return parser


def main(argv: Sequence[str]) -> int:
    """Print the Markdown diff of two ``results.json``; return the exit status (0, 1 or 2)."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as stop:  # --help, or arguments argparse refused (it said why)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        old, new = read_record(args.old), read_record(args.new)
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    diff = diff_records(old, new)
    print(render_diff(diff, old, new), end="")
    return diff.exit_status()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
