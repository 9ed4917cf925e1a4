"""The figures a run measured beside its verdicts (stream timings), as rows for the reports.

Each case may carry ``measurements`` (see :class:`conformance.results.CaseResult`); this module
alone knows their labels and how to show them, so that the HTML report and the Markdown
summary say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from conformance.results import RunRecord, operation_sort_key

__all__ = ["COLUMNS", "MeasuredRow", "measured_rows"]

COLUMNS: Mapping[str, str] = {
    "ttft_s": "time to first token",
    "itl_median_s": "inter-token latency, median",
    "itl_p90_s": "inter-token latency, p90",
    "tokens_per_s": "tokens/s",
    "content_events": "content events",
}
"""The known measurements, in the order the reports show them, with their labels."""


@dataclass(frozen=True)
class MeasuredRow:
    """One case's measurements, formatted: ``values`` maps each label to its text."""

    requirement_id: str
    operation: str
    values: Mapping[str, str]


def _shown(key: str, value: float) -> str:
    if key.endswith("_per_s"):
        return f"{value:.1f}"
    if key.endswith("_s"):
        return f"{value * 1000:.0f} ms"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def _labels(record: RunRecord) -> list[str]:
    """The labels of every measurement some case has: the known ones first, in order."""
    keys = {key for case in record.cases for key in (case.measurements or {})}
    known = [key for key in COLUMNS if key in keys]
    return [*known, *sorted(keys - set(known))]


def measured_rows(record: RunRecord) -> tuple[list[str], list[MeasuredRow]]:
    """The column labels and one row per case that measured something, by operation.

    A value a case did not measure is shown as an empty cell.
    """
    keys = _labels(record)
    labels = [COLUMNS.get(key, key) for key in keys]
    measured = [case for case in record.cases if case.measurements]
    measured.sort(key=lambda case: (operation_sort_key(case.operation), case.requirement_id))
    rows = []
    for case in measured:
        figures = case.measurements or {}
        values = {
            COLUMNS.get(key, key): _shown(key, figures[key]) if key in figures else ""
            for key in keys
        }
        rows.append(MeasuredRow(case.requirement_id, case.operation, values))
    return labels, rows
