"""The run's reports, all rendered from one :class:`~conformance.results.RunRecord`.

``results.json`` is canonical: :func:`write_reports` writes it first and renders
``report.html``, ``junit.xml`` and ``summary.md`` from the record read back from it, so the
other three never say anything the JSON does not. :func:`render_from_json` does the same for a
``results.json`` from an earlier run (the ``mimic-conformance-report`` command's job).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conformance.report._html import render_html, write_html
from conformance.report._json import read_json, write_json
from conformance.report._junit import render_junit, write_junit
from conformance.report._markdown import render_markdown, write_markdown
from conformance.results import RunRecord

__all__ = [
    "HTML_NAME",
    "JSON_NAME",
    "JUNIT_NAME",
    "MARKDOWN_NAME",
    "ReportPaths",
    "read_json",
    "render_from_json",
    "render_html",
    "render_junit",
    "render_markdown",
    "write_html",
    "write_json",
    "write_junit",
    "write_markdown",
    "write_reports",
]

JSON_NAME = "results.json"
HTML_NAME = "report.html"
JUNIT_NAME = "junit.xml"
MARKDOWN_NAME = "summary.md"


@dataclass(frozen=True)
class ReportPaths:
    """Where the four reports of a run were written."""

    json: Path
    html: Path
    junit: Path
    markdown: Path


def _render_beside(record: RunRecord, json_path: Path, directory: Path) -> ReportPaths:
    directory.mkdir(parents=True, exist_ok=True)
    html = write_html(record, directory / HTML_NAME, json_name=_relative(json_path, directory))
    return ReportPaths(
        json=json_path,
        html=html,
        junit=write_junit(record, directory / JUNIT_NAME),
        markdown=write_markdown(record, directory / MARKDOWN_NAME, html_path=html),
    )


def _relative(path: Path, directory: Path) -> str:
    try:
        return path.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def write_reports(record: RunRecord, directory: Path) -> ReportPaths:
    """Write ``results.json``, then the HTML, JUnit and Markdown reports, into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = write_json(record, directory / JSON_NAME)
    return _render_beside(read_json(json_path), json_path, directory)


def render_from_json(path: Path, directory: Path | None = None) -> ReportPaths:
    """Render the HTML, JUnit and Markdown reports of an existing ``results.json``.

    They are written into ``directory``, by default the one holding ``path``.
    """
    path = Path(path)
    return _render_beside(read_json(path), path, Path(directory) if directory else path.parent)
