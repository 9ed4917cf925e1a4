"""``mimic-conformance``: the suite as a command, for those who install the kit with pip.

It runs pytest with the conformance plugin on the ``conformance.suite`` package, isolated from
any pytest configuration in the current directory (the user's own project may have one), and
passes every argument through: the plugin's options (``--target``, ``--api-key``, ``--seed``,
``--profile``, ...) and pytest's own (``-n 2``, ``-q``, ``-x``). The exit status is the run
record's: 0 if and only if no MUST requirement failed or errored.

``mimic-conformance diff OLD/results.json NEW/results.json`` runs no suite: it prints what was
fixed and what regressed between two runs, as Markdown (see :mod:`conformance.run_diff`).
``mimic-conformance replay results.json`` runs the suite narrowed to that run's failures (see
:mod:`conformance.replay`).
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence

import pytest

from conformance import replay, run_diff
from conformance._options import OPTIONS

__all__ = ["USAGE", "main", "pytest_args", "usage_text"]

_WIDTH = 100
_HELP_COLUMN = 22


def usage_text(options: Sequence[tuple[str, str, str]] = OPTIONS) -> str:
    """The ``--help`` text: what the command does, and each option of the suite's table.

    ``options`` rows are (option, environment variable, help), as the suite declares them
    for pytest, so that this text lists exactly the options the suite reads.
    """
    lines = [
        "usage: mimic-conformance [OPTION]... [pytest options, e.g. -n 2 -q]",
        "",
        *textwrap.wrap(
            "Judge a server against the Mimic API contract and write reports/ (results.json, "
            "report.html, junit.xml, summary.md). Exit status 0 if and only if no MUST "
            "requirement failed or errored.",
            _WIDTH,
        ),
        "",
        "options (each also read from the environment variable in brackets; the option wins):",
    ]
    indent = " " * _HELP_COLUMN
    for option, env, help_text in options:
        name = f"  {option}"
        if len(name) < _HELP_COLUMN - 1:
            first = name.ljust(_HELP_COLUMN)
        else:  # too long to share its line with the help
            lines.append(name)
            first = indent
        lines += textwrap.wrap(
            f"{help_text} [${env}]",
            _WIDTH,
            initial_indent=first,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )
    lines += [
        "",
        "Run `mimic-conformance --help-pytest` for every pytest option.",
        *textwrap.wrap(
            "Run `mimic-conformance diff OLD/results.json NEW/results.json` for what was fixed "
            "and what regressed between two runs, as Markdown.",
            _WIDTH,
        ),
        *textwrap.wrap(
            "Run `mimic-conformance replay reports/results.json` to judge again only what failed "
            "in that run: the same requests (same seed), the same checks.",
            _WIDTH,
        ),
    ]
    return "\n".join(lines) + "\n"


USAGE = usage_text()
"""What ``mimic-conformance --help`` prints."""


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
    """Run the suite, or a subcommand (``diff``, ``replay``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "diff":
        return run_diff.main(args[1:])
    if args and args[0] == "replay":
        return replay.main(args[1:])
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args and args[0] == "--help-pytest":
        args = ["--help"]
    return int(pytest.main(pytest_args(args)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
