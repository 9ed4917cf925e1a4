"""``report.html``: one self-contained page a person reads to fix their server.

Rendered with Jinja2, autoescaping on (every byte of evidence came from the target), no script,
no external asset, so it also reads in a terminal browser. This module turns the record into
plain view data; the template (``templates/report.html.j2``) only lays it out.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

import spec
from conformance.report._measurements import measured_rows
from conformance.report._sources import sources_view
from conformance.results import (
    CaseResult,
    LevelSummary,
    Outcome,
    Requirement,
    RequirementResult,
    RunRecord,
)
from conformance.sources import kit_library

MAX_DETAILED_CASES = 300
"""Failures and errors shown in full; the rest are counted (results.json has them all)."""

# C0/C1 controls other than tab and line ends: invalid in HTML, and in a terminal browser an
# ESC from a hostile body would reach the terminal. Every value is shown with them escaped.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _visible(value: Any) -> Any:
    # A macro's output (Markup) is made of values that already came through here.
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", value)
    return value


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("conformance", "templates"),
    autoescape=True,
    finalize=_visible,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _percent(level: LevelSummary) -> str:
    return "n/a" if level.percent is None else f"{level.percent:.1f} %"


def _size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def _body_view(excerpt: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if excerpt is None:
        return None
    notes = []
    if excerpt["truncated"]:
        shown = len(excerpt["text"].encode())
        notes.append(f"truncated: the first {shown} bytes of {_size(excerpt['size'])} shown")
    if excerpt["binary"]:
        notes.append("not UTF-8: bytes shown as \\x escapes")
    text = excerpt["text"]
    if not excerpt["truncated"] and not excerpt["binary"]:
        # Pretty-printed for reading; the curl command keeps the exact bytes.
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    return {"text": text, "size": _size(excerpt["size"]), "notes": notes}


def _events_view(events: list[dict[str, Any]], omitted: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if index and omitted and event["number"] - events[index - 1]["number"] > 1:
            rows.append({"gap": event["number"] - events[index - 1]["number"] - 1})
        received = event["received_at"]
        rows.append(
            {
                "gap": 0,
                "number": event["number"],
                "time": "" if received is None else f"{received:.3f} s",
                "data": event["data"],
                "truncated": event["truncated"],
                "labels": [
                    f"{key}: {event[key]}" for key in ("event_type", "id") if event[key] is not None
                ],
            }
        )
    return rows


def _case_view(index: int, requirement: Requirement, case: CaseResult) -> dict[str, Any]:
    evidence = case.evidence
    view: dict[str, Any] = {
        "anchor": f"case-{index}",
        "requirement": requirement,
        "operation": case.operation,
        "outcome": str(case.outcome),
        "open": case.outcome is Outcome.FAIL,
        "reason": case.reason,
        "duration": f"{case.duration:.3f} s",
        "evidence": None,
    }
    if evidence is None:
        return view
    request, response = evidence.request, evidence.response
    view["evidence"] = {
        "message": evidence.message,
        "curl": evidence.curl,
        "request": None if request is None else {**request, "body": _body_view(request["body"])},
        "response": None
        if response is None
        else {**response, "body": _body_view(response["body"])},
        "events": _events_view(evidence.events, evidence.events_omitted),
        "events_omitted": evidence.events_omitted,
        "events_count": len(evidence.events) + evidence.events_omitted,
        "deviations": evidence.deviations,
        "extra": json.dumps(evidence.extra, indent=2, ensure_ascii=False) if evidence.extra else "",
    }
    return view


def _matrix_view(record: RunRecord, results: list[RequirementResult]) -> dict[str, Any]:
    operations = record.operations()
    rows = []
    for result in results:
        cells = []
        for operation in operations:
            outcome = result.by_operation.get(operation)
            cells.append(str(outcome) if outcome is not None else None)
        rows.append({"requirement": result.requirement, "cells": cells})
    return {
        "operations": [
            {
                "name": operation,
                "method": operation.partition(" ")[0],
                "path": operation.partition(" ")[2],
            }
            for operation in operations
        ],
        "rows": rows,
    }


def _context(record: RunRecord, json_name: str) -> dict[str, Any]:
    results = record.requirement_results()
    summary = record.summary()
    detailed = []
    index = 0
    sorted_out = record.triage()
    expected = set(sorted_out.expected) if sorted_out is not None else set()
    for result in results:
        for case in result.cases:
            if case.outcome in (Outcome.FAIL, Outcome.ERROR):
                index += 1
                view = _case_view(index, result.requirement, case)
                view["expected"] = (case.requirement_id, case.operation) in expected
                detailed.append(view)
    first_anchor: dict[tuple[str, str], str] = {}
    for view in detailed:
        first_anchor.setdefault((view["requirement"].id, view["operation"]), view["anchor"])
    metadata = [
        ("Target", record.target),
        ("Contract", f"{record.contract_title} ({record.contract})"),
        ("Spec", f"{record.spec_title} {record.spec_version}"),
        ("Spec SHA-256", record.spec_sha256),
        ("Kit version", record.kit_version),
        ("Seed", "none" if record.seed is None else str(record.seed)),
        ("Started", record.started_at),
        ("Finished", record.finished_at or "not finished"),
        ("Gate on SHOULD", "yes" if record.gate_should else "no"),
        (
            "Hostile traffic (ROBUST-*)",
            "sent (--robust)" if record.options.get("robust") else "not sent (no --robust)",
        ),
    ]
    source_links, sources = sources_view(record.requirements, kit_library())
    measured_labels, measured = measured_rows(record)
    return {
        "measured_labels": measured_labels,
        "measured": measured,
        "baseline": _baseline_view(record),
        "record": record,
        "verdict": record.verdict(),
        "down": record.target_down,
        "summary": summary,
        "levels": [
            {"summary": level, "percent": _percent(level)}
            for level in (summary.must, summary.should)
        ],
        "metadata": metadata,
        "options": json.dumps(record.options, indent=2, ensure_ascii=False, sort_keys=True),
        "results": results,
        "matrix": _matrix_view(record, results),
        "first_failure": {rid: a for (rid, _), a in reversed(first_anchor.items())},
        "anchors": {f"{rid}\n{operation}": a for (rid, operation), a in first_anchor.items()},
        "detailed": detailed[:MAX_DETAILED_CASES],
        "not_detailed": max(0, len(detailed) - MAX_DETAILED_CASES),
        "skipped": [result for result in results if result.outcome is Outcome.SKIP],
        "not_applicable": [
            result for result in results if result.outcome is Outcome.NOT_APPLICABLE
        ],
        "json_name": json_name,
        "outcomes": [str(outcome) for outcome in Outcome],
        "source_links": source_links,
        "sources": sources,
        "sources_note": _sources_note(record),
    }


def _sources_note(record: RunRecord) -> str | None:
    """Why the appendix may not match the run: it shows the kit's spec, the run used another."""
    own = spec.sha256()
    if record.spec_sha256 == own:
        return None
    return (
        f"This run judged a spec with SHA-256 {record.spec_sha256[:12]}; the spec fragments "
        f"below come from the kit's own spec ({own[:12]}), which may differ."
    )


def _baseline_view(record: RunRecord) -> dict[str, Any] | None:
    """What the run's baseline expected, what is new and what is stale, as table rows."""
    sorted_out = record.triage()
    if sorted_out is None or record.known_failures is None:
        return None
    reasons = {entry.key: entry.reason for entry in record.known_failures}
    cases = {(case.requirement_id, case.operation): case for case in record.cases}

    def row(key: tuple[str, str], reason: str) -> dict[str, str]:
        return {"requirement": key[0], "operation": key[1], "reason": reason}

    def new_reason(key: tuple[str, str]) -> str:
        case = cases.get(key)
        return case.explanation.splitlines()[0] if case and case.explanation else ""

    return {
        "path": record.options.get("baseline") or "",
        "entries": len(record.known_failures),
        "new": [row(key, new_reason(key)) for key in sorted_out.new],
        "expected": [row(key, reasons[key]) for key in sorted_out.expected],
        "stale": [row(entry.key, entry.reason) for entry in sorted_out.stale],
    }


def render_html(record: RunRecord, *, json_name: str = "results.json") -> str:
    """Return ``report.html`` for ``record``; ``json_name`` is how the page refers to the JSON."""
    return _ENVIRONMENT.get_template("report.html.j2").render(_context(record, json_name))


def write_html(record: RunRecord, path: Path, *, json_name: str = "results.json") -> Path:
    """Write ``report.html`` for ``record`` to ``path``; return the path."""
    path = Path(path)
    path.write_text(render_html(record, json_name=json_name), encoding="utf-8")
    return path
