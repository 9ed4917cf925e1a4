"""``mimic-conformance --help``: generated from the options table the suite declares to pytest."""

from __future__ import annotations

import pytest

from conformance._options import OPTIONS
from conformance.cli import USAGE, main, usage_text


def _unwrapped(text: str) -> str:
    return " ".join(text.split())


def test_the_usage_lists_every_option_with_its_help_and_environment_variable() -> None:
    text = _unwrapped(USAGE)
    for option, env, help_text in OPTIONS:
        assert f"{option} {_unwrapped(help_text)} [${env}]" in text


def test_the_usage_lists_nothing_but_the_table() -> None:
    listed = [line.split()[0] for line in USAGE.splitlines() if line.startswith("  --")]
    assert listed == [option for option, _, _ in OPTIONS]


def test_the_usage_follows_a_changed_table() -> None:
    table = [
        ("--colour", "MIMIC_COLOUR", "paint the report"),
        ("--an-option-with-a-very-long-name", "MIMIC_LONG", "long " * 30),
    ]
    lines = usage_text(table).splitlines()
    assert "  --colour            paint the report [$MIMIC_COLOUR]" in lines
    long_at = lines.index("  --an-option-with-a-very-long-name")
    assert lines[long_at + 1].startswith(" " * 22 + "long long")
    assert any(line.endswith("[$MIMIC_LONG]") for line in lines[long_at:])
    assert all(len(line) <= 100 for line in lines)
    assert "--target" not in usage_text(table)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_prints_the_usage(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out == USAGE + "\n"
