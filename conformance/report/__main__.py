"""``mimic-conformance-report``: render the reports of an earlier run from its ``results.json``.

    mimic-conformance-report reports/results.json [--out DIR]

Writes ``report.html``, ``junit.xml`` and ``summary.md`` beside the JSON (or into ``DIR``), from
the JSON alone: a run recorded on a CI machine can be read as HTML anywhere, and reports
re-rendered by a newer kit from an older run. Exit status 0, or 2 when the file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.report import render_from_json

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Render the reports of one ``results.json``; print where they went."""
    parser = argparse.ArgumentParser(
        prog="mimic-conformance-report",
        description="Render report.html, junit.xml and summary.md from a run's results.json.",
    )
    parser.add_argument("results", type=Path, help="a results.json written by mimic-conformance")
    parser.add_argument("--out", type=Path, help="where to write (default: beside the JSON)")
    args = parser.parse_args(argv)
    try:
        paths = render_from_json(args.results, args.out)
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        print(f"mimic-conformance-report: cannot read {args.results}: {reason}", file=sys.stderr)
        return 2
    for path in (paths.html, paths.junit, paths.markdown):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
