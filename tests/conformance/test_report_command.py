from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conformance.report import JSON_NAME, write_reports
from conformance.report.__main__ import main
from tests.conformance.test_report import sample_record


def test_renders_the_reports_of_an_earlier_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = write_reports(sample_record(), tmp_path / "run")
    for path in (written.html, written.junit, written.markdown):
        path.unlink()
    assert main([str(written.json), "--out", str(tmp_path / "again")]) == 0
    again = tmp_path / "again"
    assert {p.name for p in again.iterdir()} == {"report.html", "junit.xml", "summary.md"}
    assert str(again / "report.html") in capsys.readouterr().out


def test_an_unreadable_file_is_one_clear_line(tmp_path: Path) -> None:
    broken = tmp_path / JSON_NAME
    broken.write_text("{not json", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "conformance.report", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("mimic-conformance-report: cannot read")
    assert "Traceback" not in done.stderr
