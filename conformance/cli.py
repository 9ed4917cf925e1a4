"""``mimic-conformance``: the suite as a command, for those who install the kit with pip.

It runs pytest with the conformance plugin on the ``conformance.suite`` package, isolated from
any pytest configuration in the current directory (the user's own project may have one), and
passes every argument through: the plugin's options (``--target``, ``--api-key``, ``--seed``,
``--profile``, ...) and pytest's own (``-n 2``, ``-q``, ``-x``). The exit status is the run
record's: 0 if and only if no MUST requirement failed or errored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import pytest

__all__ = ["main", "pytest_args"]

USAGE = """usage: mimic-conformance [--target URL] [--api-key KEY] [--seed N] [--max-examples N]
                         [--timeout S] [--report-dir DIR] [--requirement ID]...
                         [--skip-requirement ID]... [--gate-should] [--profile quick|full|thorough]
                         [--spec PATH] [pytest options, e.g. -n 2 -q]

Judge a server against the Mimic API contract and write reports/ (results.json, report.html,
junit.xml, summary.md). Without --target, the reference server is started on a free port.
Every option also reads an environment variable: MIMIC_TARGET, MIMIC_API_KEY, MIMIC_SEED, ...
Exit status 0 if and only if no MUST requirement failed or errored.
Run `mimic-conformance --help-pytest` for every pytest option.
"""


def pytest_args(argv: Sequence[str]) -> list[str]:
    """The pytest command line for a suite run with these arguments."""
    return [
        # The user's directory may hold a pytest configuration of its own (addopts, warnings as
        # errors, testpaths): the suite runs under none, from the directory it was started in.
        "-c",
        os.devnull,
        "--rootdir",
        os.getcwd(),
        "-p",
        "conformance.plugin",
        "-p",
        "no:cacheprovider",
        "-o",
        "console_output_style=count",
        "-r",
        "fE",
        # The plugin imports httpx, hence anyio, before pytest loads anyio's own plugin.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *argv,
        "--pyargs",
        "conformance.suite",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; return the run's exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args and args[0] == "--help-pytest":
        args = ["--help"]
    return int(pytest.main(pytest_args(args)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
