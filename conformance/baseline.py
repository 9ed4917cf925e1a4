"""A baseline of known failures, for gating CI on "no new failures" (``--baseline FILE``).

A baseline names (requirement, operation) pairs that are known to fail, each with a reason. A
run with a baseline exits 0 when every failure it finds is one the baseline names, and non-zero
when a failure is new, or when a known one now passes: the entry is stale and must go, so a
baseline only ever shrinks. ``--write-baseline FILE`` writes one from a run.

The file is TOML (or YAML, by its ``.yaml``/``.yml`` suffix)::

    [[known_failures]]
    requirement = "ERR-UNKNOWN-MODEL"
    operation = "POST /v1/chat/completions"
    reason = "we answer 400 here until v2 (issue 123)"

Why not a JUnit "expected failures" file or pytest's xfail: the suite's cases are
(requirement, operation) pairs, not pytest items (one item may judge several operations, and
item names change with the spec), and the reason must travel with the entry into every report.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "BaselineError",
    "KnownFailure",
    "Triage",
    "read_baseline",
    "render_baseline",
    "triage",
    "write_baseline",
]

_FAILED = ("fail", "error")
_YAML_SUFFIXES = (".yaml", ".yml")


class BaselineError(ValueError):
    """A baseline file that cannot be read, or that names what the kit does not know."""


@dataclass(frozen=True)
class KnownFailure:
    """One (requirement, operation) pair known to fail, and why that is accepted."""

    requirement: str
    operation: str
    reason: str

    @property
    def key(self) -> tuple[str, str]:
        """(requirement, operation): what the entry matches in a run."""
        return (self.requirement, self.operation)

    def to_dict(self) -> dict[str, str]:
        """The entry as written in a baseline file and in ``results.json``."""
        return {"requirement": self.requirement, "operation": self.operation, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "entry") -> KnownFailure:
        """Read one entry; BaselineError names ``where`` if a field is missing or not text."""
        values = []
        for name in ("requirement", "operation", "reason"):
            value = data.get(name) if isinstance(data, Mapping) else None
            if not isinstance(value, str) or not value.strip():
                raise BaselineError(f"{where}: {name!r} must be a non-empty string")
            values.append(value.strip())
        requirement, operation, reason = values
        return cls(requirement.upper(), operation, reason)


@dataclass(frozen=True)
class Triage:
    """A run's failures sorted against a baseline.

    ``expected`` and ``new`` are the (requirement, operation) pairs that failed or errored,
    named by the baseline or not; ``stale`` the entries whose pair passed.
    """

    expected: tuple[tuple[str, str], ...]
    new: tuple[tuple[str, str], ...]
    stale: tuple[KnownFailure, ...]


def triage(known: Iterable[KnownFailure], outcomes: Mapping[tuple[str, str], str]) -> Triage:
    """Sort ``outcomes`` ((requirement, operation) -> pass/fail/error/skip) against ``known``.

    An entry whose pair was not judged, or was skipped, is neither expected nor stale: the run
    cannot tell whether it still fails.
    """
    entries = {entry.key: entry for entry in known}
    failed = [key for key, outcome in outcomes.items() if str(outcome) in _FAILED]
    return Triage(
        expected=tuple(key for key in failed if key in entries),
        new=tuple(key for key in failed if key not in entries),
        stale=tuple(
            entry for key, entry in entries.items() if str(outcomes.get(key, "")) == "pass"
        ),
    )


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in _YAML_SUFFIXES:
        return yaml.safe_load(text) or {}
    return tomllib.loads(text)


def read_baseline(path: Path, requirement_ids: Collection[str]) -> tuple[KnownFailure, ...]:
    """The entries of the baseline at ``path``; every requirement must be in ``requirement_ids``.

    Raises BaselineError with a message that names the file and the problem.
    """
    try:
        document = _parse(path)
    except OSError as error:
        raise BaselineError(f"baseline {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BaselineError(f"baseline {path} is not valid TOML or YAML: {first_line}") from None
    items = document.get("known_failures", []) if isinstance(document, Mapping) else None
    if not isinstance(items, list):
        raise BaselineError(f"baseline {path}: 'known_failures' must be a list of entries")
    entries = tuple(
        KnownFailure.from_dict(item, f"baseline {path}, entry {number}")
        for number, item in enumerate(items, 1)
    )
    unknown = sorted({e.requirement for e in entries} - set(requirement_ids))
    if unknown:
        raise BaselineError(f"baseline {path} names unknown requirements: {', '.join(unknown)}")
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.key in seen:
            raise BaselineError(
                f"baseline {path} names {entry.requirement} on {entry.operation} twice"
            )
        seen.add(entry.key)
    return entries


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string.

    Quotes, backslashes and control characters are escaped; a code point UTF-8 cannot carry (a
    lone surrogate) becomes U+FFFD.
    """
    out = ['"']
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def render_baseline(
    entries: Sequence[KnownFailure], *, yaml_format: bool = False, header: Sequence[str] = ()
) -> str:
    """The text of a baseline file holding ``entries``, with ``header`` as comment lines."""
    comments = "".join(f"# {line}\n" for line in header)
    if yaml_format:
        body = yaml.safe_dump(
            {"known_failures": [entry.to_dict() for entry in entries]},
            sort_keys=False,
            allow_unicode=True,
            width=100,
        )
        return comments + body
    blocks = [
        "[[known_failures]]\n"
        + "".join(f"{name} = {_toml_string(value)}\n" for name, value in entry.to_dict().items())
        for entry in entries
    ]
    return comments + ("\n".join(blocks) if blocks else "known_failures = []\n")


def write_baseline(path: Path, entries: Sequence[KnownFailure], header: Sequence[str] = ()) -> Path:
    """Write a baseline file (YAML for a ``.yaml``/``.yml`` path, else TOML); return its path."""
    path = Path(path)
    yaml_format = path.suffix.lower() in _YAML_SUFFIXES
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_baseline(entries, yaml_format=yaml_format, header=header), "utf-8")
    return path
