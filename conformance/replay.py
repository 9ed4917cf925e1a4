"""``mimic-conformance replay``: judge again exactly what failed in a run, in seconds.

    mimic-conformance replay reports/results.json [--target URL] [--api-key KEY] [pytest options]

It reads the run record, and runs the suite again narrowed to the (requirement, operation)
pairs that failed or errored (``--case``), with the run's own seed, profile, example budget,
timeout and hostile-traffic choice: the same requests as the first time, judged by the same
checks. The target is the recorded one unless ``--target`` says otherwise; the API key, which
no record keeps, comes from ``--api-key`` or ``MIMIC_API_KEY`` as usual. The reports go to a
``replay`` directory beside the record (``--report-dir`` changes that), never over it. Then it
prints what the replay fixed and what still fails. The exit status is the replay run's: 0 when
every replayed failure now passes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from conformance.results import Outcome, RunRecord

__all__ = ["PROG", "failing_cases", "main", "replay_arguments"]

PROG = "mimic-conformance replay"
_FAILED = (Outcome.FAIL, Outcome.ERROR)


def failing_cases(record: RunRecord) -> list[tuple[str, str]]:
    """The (requirement, operation) pairs that failed or errored in ``record``, in report order."""
    return [
        (requirement_id, operation)
        for requirement_id, by_operation in record.matrix().items()
        for operation, outcome in by_operation.items()
        if outcome in _FAILED
    ]


def _has(arguments: Sequence[str], option: str) -> bool:
    return any(arg == option or arg.startswith(option + "=") for arg in arguments)


def replay_arguments(record: RunRecord, results_path: Path, extra: Sequence[str] = ()) -> list[str]:
    """The suite's arguments that replay ``record``'s failures; ``extra`` are the user's own.

    The user's own options win over the recorded ones (a new ``--target``, say).
    """
    options = record.options
    recorded: list[tuple[str, object]] = [
        ("--target", record.target),
        ("--seed", record.seed),
        ("--profile", options.get("profile")),
        ("--max-examples", options.get("max_examples")),
        ("--timeout", options.get("timeout")),
        ("--report-dir", results_path.parent / "replay"),
    ]
    spec_path = options.get("spec")
    if spec_path and Path(str(spec_path)).is_file():
        recorded.append(("--spec", spec_path))
    arguments = [
        f"{option}={value}"
        for option, value in recorded
        if value is not None and not _has(extra, option)
    ]
    for flag in ("robust", "gate_should"):
        option = "--" + flag.replace("_", "-")
        if options.get(flag) and not _has(extra, option):
            arguments.append(option)
    arguments += [f"--case={rid}@{operation}" for rid, operation in failing_cases(record)]
    return [*arguments, *extra]


def main(argv: Sequence[str]) -> int:
    """Replay the failures of the ``results.json`` named first in ``argv``; return the status."""
    from conformance.cli import pytest_args  # the command's own module imports this one
    from conformance.run_diff import diff_records, read_record, render_diff

    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} RESULTS.json [suite or pytest options]\n\n{__doc__}")
        return 0 if argv else 2
    results_path, extra = Path(argv[0]), list(argv[1:])
    try:
        record = read_record(results_path)
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    cases = failing_cases(record)
    if not cases:
        print(f"{PROG}: {results_path} has no failures to replay.")
        return 0
    arguments = replay_arguments(record, results_path, extra)
    print(f"{PROG}: {len(cases)} failing case{'s' * (len(cases) != 1)} of {results_path}")
    status = int(pytest.main(pytest_args(arguments)))
    replayed_path = _report_dir(arguments) / "results.json"
    if replayed_path.is_file():
        replayed = read_record(replayed_path)
        chosen = set(cases)
        before = replace(
            record, cases=[c for c in record.cases if (c.requirement_id, c.operation) in chosen]
        )
        print(render_diff(diff_records(before, replayed), before, replayed), end="")
    return status


def _report_dir(arguments: Sequence[str]) -> Path:
    """The ``--report-dir`` among ``arguments`` (the last one wins, as it does for pytest)."""
    found = "reports"
    for index, arg in enumerate(arguments):
        if arg.startswith("--report-dir="):
            found = arg.split("=", 1)[1]
        elif arg == "--report-dir" and index + 1 < len(arguments):
            found = arguments[index + 1]
    return Path(found)
