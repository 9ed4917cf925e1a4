"""``junit.xml``: one test case per (requirement, operation), for CI systems that read JUnit.

The requirement ID is the class name and ``[LEVEL] operation`` the test name, so a SHOULD
failure, which is still a JUnit failure, is visibly one; the level is also a test property.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.results import CaseResult, Outcome, Requirement, RunRecord

_SUITE_NAME = "mimic-conformance"
# Characters XML 1.0 cannot carry at all, not even escaped; server bodies may contain them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(
        parent, tag, {key: _xml_text(value) for key, value in attributes.items()}
    )
    if text is not None:
        element.text = _xml_text(text)
    return element


def _properties(parent: ET.Element, values: dict[str, str]) -> None:
    properties = _sub(parent, "properties")
    for name, value in values.items():
        _sub(properties, "property", name=name, value=value)


def _failure_text(requirement: Requirement, case: CaseResult) -> str:
    lines = [f"{requirement.id} ({requirement.level}): {requirement.statement}"]
    lines.append(f"Source: {requirement.source}")
    if case.reason:
        lines.append(case.reason)
    evidence = case.evidence
    if evidence is not None:
        lines.append(evidence.message)
        response = evidence.response or {}
        if response.get("status") is not None:
            lines.append(f"Response status: {response['status']}")
        if response.get("failure"):
            lines.append(f"Transport: {response['failure']['message']}")
        if evidence.curl:
            lines += ["", "Reproduce with:", evidence.curl]
    return "\n".join(lines)


def _testcase(
    suite: ET.Element,
    requirement: Requirement,
    case: CaseResult | None,
    expected_because: str | None = None,
) -> None:
    """One test case; ``expected_because`` (a baseline's reason) makes a failure a skip."""
    operation = case.operation if case is not None else "(no operation)"
    testcase = _sub(
        suite,
        "testcase",
        classname=requirement.id,
        name=f"[{requirement.level}] {operation}",
        time=f"{case.duration if case is not None else 0.0:.3f}",
    )
    _properties(
        testcase,
        {
            "level": str(requirement.level),
            "statement": requirement.statement,
            "source": requirement.source,
        },
    )
    if case is None:
        _sub(testcase, "skipped", message="no case ran")
        return
    summary = case.explanation.splitlines()[0] if case.explanation else str(case.outcome)
    if expected_because is not None and case.outcome in (Outcome.FAIL, Outcome.ERROR):
        message = f"expected {case.outcome} (in the baseline): {expected_because}"
        _sub(testcase, "skipped", _failure_text(requirement, case), message=message)
    elif case.outcome is Outcome.FAIL:
        message = f"[{requirement.level}] {summary}"
        _sub(
            testcase,
            "failure",
            _failure_text(requirement, case),
            message=message,
            type=str(requirement.level),
        )
    elif case.outcome is Outcome.ERROR:
        _sub(testcase, "error", _failure_text(requirement, case), message=summary, type="error")
    elif case.outcome is Outcome.SKIP:
        _sub(testcase, "skipped", message=summary)
    elif case.outcome is Outcome.NOT_APPLICABLE:
        _sub(testcase, "skipped", message=f"not applicable: {summary}")


def render_junit(record: RunRecord) -> str:
    """Return ``junit.xml`` text for ``record``."""
    results = record.requirement_results()
    rows: list[tuple[Requirement, CaseResult | None]] = []
    for result in results:
        rows += [(result.requirement, case) for case in result.cases] or [
            (result.requirement, None)
        ]
    sorted_out = record.triage()
    reasons = {entry.key: entry.reason for entry in record.known_failures or ()}
    expected = {
        key: reasons[key] for key in (sorted_out.expected if sorted_out is not None else ())
    }
    stale = sorted_out.stale if sorted_out is not None else ()
    count = {outcome: 0 for outcome in Outcome}
    for _, case in rows:
        outcome = case.outcome if case is not None else Outcome.SKIP
        if case is not None and (case.requirement_id, case.operation) in expected:
            outcome = Outcome.SKIP
        count[outcome] += 1
    totals = {
        "tests": str(len(rows) + len(stale)),
        "failures": str(count[Outcome.FAIL] + len(stale)),
        "errors": str(count[Outcome.ERROR]),
        "skipped": str(count[Outcome.SKIP] + count[Outcome.NOT_APPLICABLE]),
        "time": f"{sum(case.duration for _, case in rows if case is not None):.3f}",
    }
    root = ET.Element("testsuites", {"name": _SUITE_NAME, **totals})
    suite = _sub(root, "testsuite", name=_SUITE_NAME, timestamp=record.started_at, **totals)
    _properties(
        suite,
        {
            "target": record.target,
            "contract": record.contract,
            "spec_title": record.spec_title,
            "spec_version": record.spec_version,
            "spec_sha256": record.spec_sha256,
            "kit_version": record.kit_version,
            "seed": "" if record.seed is None else str(record.seed),
            "verdict": str(record.verdict()),
        },
    )
    for requirement, case in rows:
        key = (case.requirement_id, case.operation) if case is not None else None
        _testcase(suite, requirement, case, expected.get(key) if key else None)
    for entry in stale:
        testcase = _sub(
            suite, "testcase", classname=entry.requirement, name=f"[baseline] {entry.operation}"
        )
        message = "stale baseline entry: this expected failure now passes; remove it"
        _sub(testcase, "failure", f"{message}.\nIts reason: {entry.reason}", message=message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(record: RunRecord, path: Path) -> Path:
    """Write ``junit.xml`` for ``record`` to ``path``; return the path."""
    path = Path(path)
    path.write_text(render_junit(record), encoding="utf-8")
    return path
