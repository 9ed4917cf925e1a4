"""The suite's command-line options, their environment variables, and the run's settings.

Every option has an environment variable with the same meaning (``--api-key`` →
``MIMIC_API_KEY``); the command line wins. :func:`read_settings` checks them all and turns them
into one :class:`~conformance.profile.Settings`; a bad value is a :class:`pytest.UsageError`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

import spec
from conformance.baseline import BaselineError, KnownFailure, read_baseline
from conformance.profile import PROFILES, Settings
from conformance.requirements import REQUIREMENTS, hostile_only_patterns, unknown_patterns

__all__ = ["DEFAULT_TIMEOUT", "OPTIONS", "add_options", "read_settings"]

DEFAULT_TIMEOUT = 60.0
"""Seconds allowed for one request, body included, unless ``--timeout`` says otherwise."""

OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "--target",
        "MIMIC_TARGET",
        "base URL of the server to judge (default: start the reference server)",
    ),
    ("--api-key", "MIMIC_API_KEY", "a valid key for the target; enables the AUTH checks"),
    ("--seed", "MIMIC_SEED", "seed for every generated request (default: random, and recorded)"),
    ("--max-examples", "MIMIC_MAX_EXAMPLES", "schemathesis fuzzing cases per operation and mode"),
    (
        "--timeout",
        "MIMIC_TIMEOUT",
        f"seconds allowed for one request, body included (default {DEFAULT_TIMEOUT:g})",
    ),
    ("--report-dir", "MIMIC_REPORT_DIR", "where to write the reports (default reports/)"),
    ("--requirement", "MIMIC_REQUIREMENT", "judge only this requirement ID or glob (repeatable)"),
    (
        "--skip-requirement",
        "MIMIC_SKIP_REQUIREMENT",
        "do not judge this requirement ID or glob (repeatable)",
    ),
    (
        "--case",
        "MIMIC_CASE",
        "judge only this requirement on this operation, as 'ID@METHOD PATH' (repeatable; "
        "what `mimic-conformance replay` sends)",
    ),
    ("--gate-should", "MIMIC_GATE_SHOULD", "fail the run on SHOULD requirements too"),
    (
        "--robust",
        "MIMIC_ROBUST",
        "also judge the ROBUST-* requirements, which send hostile traffic (floods, idle "
        "connections), after every other check",
    ),
    (
        "--baseline",
        "MIMIC_BASELINE",
        "known failures (TOML or YAML): they do not fail the run; a new failure does, and so "
        "does a known one that now passes",
    ),
    (
        "--write-baseline",
        "MIMIC_WRITE_BASELINE",
        "write this run's failures to FILE, as a baseline for later runs",
    ),
    ("--profile", "MIMIC_PROFILE", "quick (local, < 30 s), full (CI; the default) or thorough"),
    (
        "--contract",
        "MIMIC_CONTRACT",
        "the contract to judge against: mimic (the default) or openai (the /v1 operations with "
        "OpenAI's 400 and error body, for any OpenAI-compatible server)",
    ),
    (
        "--spec",
        "MIMIC_SPEC",
        "the OpenAPI document to judge against: a path, or the name of a contract the kit ships",
    ),
)
"""Each option of the suite: (option, environment variable, help)."""


_FLAGS = ("--gate-should", "--robust")


def _spec_path(contract: Any, document: Any) -> Path:
    """The contract document a run judges against, from ``--contract`` and ``--spec``."""
    if contract and document:
        raise pytest.UsageError("give --contract or --spec, not both")
    if contract:
        if contract not in spec.CONTRACTS:
            names = " or ".join(spec.CONTRACTS)
            raise pytest.UsageError(f"--contract {contract}: no such contract (use {names})")
        return spec.CONTRACTS[contract]
    if document in spec.CONTRACTS:
        return spec.CONTRACTS[document]
    path = Path(document) if document else spec.SPEC_PATH
    if not path.is_file():
        raise pytest.UsageError(f"--spec {path}: no such file")
    return path


def _dest(option: str) -> str:
    return "mimic_" + option.lstrip("-").replace("-", "_")


def add_options(parser: pytest.Parser) -> None:
    """Register the suite's options (their environment variables are read by read_settings)."""
    group = parser.getgroup("mimic-conformance", "Mimic conformance suite")
    for option, env, help_text in OPTIONS:
        kwargs: dict[str, Any] = {"dest": _dest(option), "help": f"{help_text} [${env}]"}
        if option in _FLAGS:
            kwargs.update(action="store_true", default=None)
        elif option in ("--requirement", "--skip-requirement"):
            kwargs.update(action="append", default=None, metavar="ID")
        elif option == "--case":
            kwargs.update(action="append", default=None, metavar="ID@OPERATION")
        else:
            kwargs.update(default=None)
        names = [option]
        if option == "--timeout":
            names.append("--request-timeout")  # the same, for runs that load pytest-timeout
        try:
            group.addoption(*names, **kwargs)
        except ValueError:  # another plugin owns the name: keep only the alias
            group.addoption(*names[1:], **kwargs)


def _raw(config: pytest.Config, option: str, env: str) -> Any:
    value = config.getoption(_dest(option))
    if value is None or value == []:
        from_env = os.environ.get(env)
        if from_env not in (None, ""):
            return from_env
        return None
    return value


def _patterns(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())


def _cases(value: Any) -> tuple[tuple[str, str], ...]:
    """``--case`` values as (requirement ID, operation) pairs; UsageError for a malformed one."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    known = {requirement.id for requirement in REQUIREMENTS}
    cases = []
    for item in (str(item).strip() for item in items):
        if not item:
            continue
        requirement_id, at, operation = item.partition("@")
        requirement_id = requirement_id.strip().upper()
        if not at or not operation.strip():
            raise pytest.UsageError(f"--case {item!r}: write it as 'ID@METHOD PATH'")
        if requirement_id not in known:
            raise pytest.UsageError(f"--case {item!r}: no requirement {requirement_id}")
        cases.append((requirement_id, operation.strip()))
    return tuple(dict.fromkeys(cases))


def _known_failures(path: Path | None) -> tuple[KnownFailure, ...] | None:
    if path is None:
        return None
    try:
        return read_baseline(path, {requirement.id for requirement in REQUIREMENTS})
    except BaselineError as error:
        raise pytest.UsageError(str(error)) from None


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


def _number(value: Any, name: str, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{name} must be a {kind.__name__}, not {value!r}") from None
    if kind is not int and number <= 0:
        raise pytest.UsageError(f"{name} must be positive, not {value!r}")
    return number


def read_settings(config: pytest.Config, *, seed: int | None = None) -> Settings:
    """The run's settings from its options and environment; raise UsageError for a bad value.

    ``seed``, if given, wins over ``--seed`` (a pytest-xdist worker takes its controller's).
    """
    raw = {option: _raw(config, option, env) for option, env, _ in OPTIONS}
    profile_name = str(raw["--profile"] or "full")
    if profile_name not in PROFILES:
        raise pytest.UsageError(
            f"--profile must be one of {', '.join(PROFILES)}, not {profile_name!r}"
        )
    include, exclude = _patterns(raw["--requirement"]), _patterns(raw["--skip-requirement"])
    unknown = unknown_patterns(include + exclude)
    if unknown:
        raise pytest.UsageError(f"no requirement matches {', '.join(unknown)}")
    robust = _flag(raw["--robust"])
    cases = _cases(raw["--case"])
    hostile_only = hostile_only_patterns(include + tuple(rid for rid, _ in cases))
    if hostile_only and not robust:
        raise pytest.UsageError(
            f"{', '.join(hostile_only)} sends hostile traffic (floods, idle connections): "
            "add --robust to judge it"
        )
    if seed is None:
        if raw["--seed"] is not None:
            seed = _number(raw["--seed"], "--seed", int)
        else:
            seed = random.SystemRandom().randrange(2**32)
    max_examples = (
        None
        if raw["--max-examples"] is None
        else _number(raw["--max-examples"], "--max-examples", int)
    )
    if max_examples is not None and max_examples < 1:
        raise pytest.UsageError("--max-examples must be at least 1")
    baseline_path = Path(raw["--baseline"]) if raw["--baseline"] else None
    known_failures = _known_failures(baseline_path)
    spec_path = _spec_path(raw["--contract"], raw["--spec"])
    return Settings(
        target=str(raw["--target"]).rstrip("/") if raw["--target"] else None,
        api_key=str(raw["--api-key"]) if raw["--api-key"] else None,
        seed=seed,
        max_examples=max_examples,
        timeout=_number(raw["--timeout"], "--timeout", float)
        if raw["--timeout"]
        else DEFAULT_TIMEOUT,
        report_dir=Path(raw["--report-dir"] or "reports"),
        requirements=include,
        skip_requirements=exclude,
        gate_should=_flag(raw["--gate-should"]),
        robust=robust,
        cases=cases,
        profile=PROFILES[profile_name],
        spec_path=spec_path,
        baseline_path=baseline_path,
        known_failures=known_failures,
        write_baseline=Path(raw["--write-baseline"]) if raw["--write-baseline"] else None,
    )
