"""A run record for tests that judge what is computed from one (verdicts, baselines, replays)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conformance.results import CaseResult, Requirement, RunRecord

__all__ = ["run_record"]


def run_record(
    requirements: Sequence[Requirement], cases: Sequence[CaseResult], **fields: Any
) -> RunRecord:
    """A finished record of ``cases`` over ``requirements``; ``fields`` replace the defaults."""
    defaults: dict[str, Any] = {
        "target": "http://127.0.0.1:8000",
        "spec_title": "Mimic API",
        "spec_version": "1.0.0",
        "spec_sha256": "ab" * 32,
        "kit_version": "0.1.0",
        "seed": 7,
        "started_at": "2026-01-01T00:00:00.000Z",
        "finished_at": "2026-01-01T00:00:01.000Z",
    }
    return RunRecord(**{**defaults, **fields}, requirements=list(requirements), cases=list(cases))
