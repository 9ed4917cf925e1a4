"""``results.json``: the canonical record of a run, which every other report is rendered from."""

from __future__ import annotations

from pathlib import Path

from conformance.results import RunRecord


def write_json(record: RunRecord, path: Path) -> Path:
    """Write ``record`` as ``results.json`` text to ``path``; return the path."""
    path = Path(path)
    path.write_text(record.to_json(), encoding="utf-8")
    return path


def read_json(path: Path) -> RunRecord:
    """Read a ``results.json`` file back into a :class:`RunRecord`."""
    return RunRecord.from_json(Path(path).read_bytes())
