"""Requirements, outcomes, evidence and the run record: the suite's verdicts (VERDICTS.md).

A :class:`Requirement` is one check's stable ID, level, statement and source. Each time a check
runs against one operation it produces a :class:`CaseResult` with an :class:`Outcome`; a
failure carries :class:`Evidence` (the request, the response excerpt, a curl command, the
numbered events of a stream). A :class:`RunRecord` holds all of it plus the run's metadata; its
``to_dict`` is ``results.json``, the canonical output every report is rendered from.

Rules implemented here and nowhere else:

- a requirement's outcome over its cases is FAIL if any failed, else ERROR if any errored,
  else PASS if any passed, else SKIP;
- the exit status is 0 if and only if no MUST requirement failed or errored (optionally
  SHOULD too);
- conformance in percent is passed / (passed + failed + errored) over a level's requirements,
  skipped ones left out;
- option values whose name says they are secret never reach the record.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from pathlib import PurePath
from typing import Any

from conformance.baseline import KnownFailure, Triage, triage
from conformance.curl import SECRET_ENV_VAR, to_curl
from conformance.exchange import Exchange, RequestSpec, StreamResult
from conformance.outage import TargetDown
from conformance.sse import Deviation, Event

__all__ = [
    "BODY_EXCERPT_BYTES",
    "REDACTED",
    "RESULTS_FORMAT",
    "RESULTS_FORMAT_VERSION",
    "CaseResult",
    "Evidence",
    "Level",
    "LevelSummary",
    "Outcome",
    "Requirement",
    "RequirementResult",
    "RunRecord",
    "Summary",
    "Verdict",
    "aggregate",
    "body_excerpt",
    "operation_sort_key",
    "redact_options",
    "utc_now",
]

RESULTS_FORMAT = "mimic-conformance-results"
RESULTS_FORMAT_VERSION = 1
REDACTED = "***redacted***"
BODY_EXCERPT_BYTES = 4096
"""Bytes of a request or response body kept in evidence."""
EVENT_DATA_EXCERPT = 1000
"""Characters of one event's data kept in evidence."""
EVIDENCE_EVENTS_HEAD, EVIDENCE_EVENTS_TAIL = 100, 100
"""Events kept in evidence: the first and the last ones (the middle is counted, not kept)."""
EVIDENCE_DEVIATIONS = 100

_REQUIREMENT_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")
# Whole words, so that "max_tokens" stays visible while "api_key" and "accessToken" do not.
_SECRET_WORDS = frozenset(
    {"key", "keys", "apikey", "token", "secret", "secrets", "password", "passwd", "credentials"}
)
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^/@\s]*@")


CONTRACT_TITLES = {"mimic": "Mimic", "openai": "OpenAI-compatible", "custom": "Custom contract"}
"""Report titles of the contracts, by ``x-conformance.contract`` name."""


class Level(StrEnum):
    """How binding a requirement is: failing a MUST makes a server non-conformant."""

    MUST = "MUST"
    SHOULD = "SHOULD"


class Outcome(StrEnum):
    """What one check concluded. Only PASS counts as green."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"
    NOT_APPLICABLE = "not-applicable"
    """The requirement has no meaning under the contract judged (it lists no operation the
    requirement applies to, or names the requirement in ``x-conformance.not-applicable``): not
    a gap in the run, unlike a SKIP."""


_PRECEDENCE = (Outcome.FAIL, Outcome.ERROR, Outcome.PASS)


def aggregate(outcomes: Iterable[Outcome]) -> Outcome:
    """Combine outcomes: FAIL if any failed, else ERROR if any errored, else PASS, else SKIP.

    Only outcomes that are all NOT_APPLICABLE combine to NOT_APPLICABLE.
    """
    seen = set(outcomes)
    if seen == {Outcome.NOT_APPLICABLE}:
        return Outcome.NOT_APPLICABLE
    return next((outcome for outcome in _PRECEDENCE if outcome in seen), Outcome.SKIP)


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.000Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- JSON safety and redaction --------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    """Convert ``value`` to plain JSON types, so that a record round-trips through JSON exactly."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return _json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_json_safe(item) for item in value), key=repr)
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def _is_secret_name(name: str) -> bool:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    words = re.findall(r"[a-z0-9]+", spaced)
    return any(word in _SECRET_WORDS for word in words) or "".join(words) in _SECRET_WORDS


def _redact_url_password(text: str) -> str:
    return _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)


def redact_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Return JSON-safe ``options`` with secret values replaced by ``***redacted***``.

    A value is secret when its name contains one of the words key, token, secret, password
    (``api_key``, ``apiKey``, ``X-Api-Key``, ``access_token``; not ``max_tokens``), at any
    depth; passwords in URLs (``http://user:pw@host``) are redacted too. ``None`` and ``""``
    stay, since they reveal nothing.
    """

    def redact(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: REDACTED if _is_secret_name(key) and item not in (None, "") else redact(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            if len(value) == 2 and isinstance(value[0], str) and _is_secret_name(value[0]):
                return [value[0], REDACTED]  # a (name, value) header pair
            return [redact(item) for item in value]
        if isinstance(value, str):
            return _redact_url_password(value)
        return value

    return redact(_json_safe(dict(options)))


class _Redactor:
    """Replaces known secrets in evidence with the variable names the curl command uses."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = [secret for secret in dict.fromkeys(secrets) if secret]
        self.names = {
            secret: SECRET_ENV_VAR + (f"_{index + 1}" if index else "")
            for index, secret in enumerate(unique)
        }
        self._ordered = sorted(self.names, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._ordered:
            text = text.replace(secret, f"${self.names[secret]}")
        return text


# -- evidence -------------------------------------------------------------------------------


def body_excerpt(body: bytes | None, limit: int = BODY_EXCERPT_BYTES) -> dict[str, Any] | None:
    """Describe a body for evidence: up to ``limit`` bytes as text, its size, and whether cut.

    ``binary`` says the body is not UTF-8; its text then shows such bytes as backslash escapes.
    """
    if body is None:
        return None
    cut = min(len(body), limit)
    if cut < len(body):
        while cut > 0 and (body[cut] & 0xC0) == 0x80:  # do not split a UTF-8 sequence
            cut -= 1
    try:
        body.decode("utf-8")
        binary = False
    except UnicodeDecodeError:
        binary = True
    return {
        "text": body[:cut].decode("utf-8", "backslashreplace"),
        "size": len(body),
        "truncated": cut < len(body),
        "binary": binary,
    }


def _redact_excerpt(excerpt: dict[str, Any] | None, redact: _Redactor) -> dict[str, Any] | None:
    return None if excerpt is None else {**excerpt, "text": redact(excerpt["text"])}


def _request_dict(request: RequestSpec, redact: _Redactor) -> dict[str, Any]:
    return {
        "method": request.method,
        "url": redact(request.url),
        "headers": [[name, redact(value)] for name, value in request.headers],
        "body": _redact_excerpt(body_excerpt(request.body), redact),
    }


def _response_dict(
    exchange: Exchange, redact: _Redactor, ended_by: str | None = None
) -> dict[str, Any]:
    failure = exchange.failure
    return {
        "status": exchange.status,
        "headers": [[name, redact(value)] for name, value in exchange.headers],
        "body": _redact_excerpt(body_excerpt(exchange.body), redact),
        "cut_off": exchange.truncated,
        "elapsed": round(exchange.elapsed, 6),
        "failure": None if failure is None else {"kind": failure.kind, "message": failure.message},
        "ended_by": ended_by,
    }


def _event_dict(event: Event, redact: _Redactor) -> dict[str, Any]:
    data = redact(event.data)
    return {
        "number": event.number,
        "received_at": None if event.received_at is None else round(event.received_at, 6),
        "data": data[:EVENT_DATA_EXCERPT],
        "truncated": len(data) > EVENT_DATA_EXCERPT,
        "event_type": event.event_type,
        "id": event.id,
    }


@dataclass
class Evidence:
    """What a failure (or error) rests on: enough for a person to see and reproduce it.

    ``request`` and ``response`` are JSON-safe dicts with body excerpts (see
    :func:`body_excerpt`); ``curl`` reproduces the request; ``events`` lists a stream's numbered
    events (``number``, ``received_at``, ``data`` excerpt, ...), ``events_omitted`` counts those
    left out of the middle of a long stream; ``deviations`` are SSE framing deviations.
    Build it with :meth:`from_exchange` or :meth:`from_stream`, which also keep secrets out.
    """

    operation: str
    message: str
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    curl: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    events_omitted: int = 0
    deviations: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.extra = _json_safe(self.extra)

    @classmethod
    def from_exchange(
        cls,
        operation: str,
        message: str,
        exchange: Exchange,
        *,
        events: Sequence[Event] = (),
        deviations: Sequence[Deviation] = (),
        secrets: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
        ended_by: str | None = None,
    ) -> Evidence:
        """Build evidence from an exchange; every one of ``secrets`` is replaced, everywhere."""
        redact = _Redactor(secrets)
        head, tail = EVIDENCE_EVENTS_HEAD, EVIDENCE_EVENTS_TAIL
        kept = list(events) if len(events) <= head + tail else [*events[:head], *events[-tail:]]
        return cls(
            operation=operation,
            message=redact(message),
            request=_request_dict(exchange.request, redact),
            response=_response_dict(exchange, redact, ended_by),
            curl=to_curl(exchange.request, secrets=redact.names),
            events=[_event_dict(event, redact) for event in kept],
            events_omitted=len(events) - len(kept),
            deviations=[
                {**deviation.to_dict(), "text": redact(deviation.text)}
                for deviation in deviations[:EVIDENCE_DEVIATIONS]
            ],
            extra=dict(extra or {}),
        )

    @classmethod
    def from_stream(
        cls,
        operation: str,
        message: str,
        result: StreamResult,
        *,
        secrets: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> Evidence:
        """Build evidence from a streamed response, with its numbered events and deviations."""
        return cls.from_exchange(
            operation,
            message,
            result.exchange,
            events=result.events,
            deviations=result.deviations,
            secrets=secrets,
            extra=extra,
            ended_by=result.ended_by,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "operation": self.operation,
            "message": self.message,
            "request": self.request,
            "response": self.response,
            "curl": self.curl,
            "events": self.events,
            "events_omitted": self.events_omitted,
            "deviations": self.deviations,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Rebuild evidence from :meth:`to_dict` output."""
        return cls(**{key: data[key] for key in _EVIDENCE_KEYS})


_EVIDENCE_KEYS = tuple(Evidence.__dataclass_fields__)


# -- requirements and cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One check: a stable ID, a level, one sentence, and where in the spec it comes from."""

    id: str
    level: Level
    statement: str
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _REQUIREMENT_ID.match(self.id):
            raise ValueError(
                f"requirement ID {self.id!r} must look like STREAM-DONE-LAST "
                "(capitals and digits, in at least two parts joined by hyphens)"
            )
        try:
            object.__setattr__(self, "level", Level(self.level))
        except ValueError:
            raise ValueError(
                f"{self.id}: level must be MUST or SHOULD, not {self.level!r}"
            ) from None
        if not self.statement.strip() or not self.source.strip():
            raise ValueError(f"{self.id}: statement and source must not be empty")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "id": self.id,
            "level": str(self.level),
            "statement": self.statement,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirement:
        """Rebuild a requirement from :meth:`to_dict` output."""
        return cls(data["id"], Level(data["level"]), data["statement"], data["source"])


@dataclass
class CaseResult:
    """One check run against one operation.

    A FAIL must carry evidence; a SKIP must say why (``reason``); an ERROR needs a reason or
    evidence. ``duration`` is in seconds.
    """

    requirement_id: str
    operation: str
    outcome: Outcome
    evidence: Evidence | None = None
    reason: str | None = None
    duration: float = 0.0
    measurements: dict[str, float] | None = None
    """Figures measured while judging (stream timings), shown beside the verdict, never one."""

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.outcome)
        where = f"{self.requirement_id} on {self.operation}"
        if self.measurements is not None:
            if not isinstance(self.measurements, Mapping) or not all(
                isinstance(key, str)
                and isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                for key, value in self.measurements.items()
            ):
                raise ValueError(f"{where}: measurements must map names to finite numbers")
            self.measurements = dict(self.measurements)
        if self.outcome is Outcome.FAIL and self.evidence is None:
            raise ValueError(f"{where}: a failure must carry evidence")
        if self.outcome in (Outcome.SKIP, Outcome.NOT_APPLICABLE) and not self.reason:
            raise ValueError(f"{where}: a {self.outcome} case must give a reason")
        if self.outcome is Outcome.ERROR and not (self.reason or self.evidence):
            raise ValueError(f"{where}: an error must give a reason or evidence")
        if not (isinstance(self.duration, int | float) and self.duration >= 0):
            raise ValueError(f"{where}: duration must be a non-negative number of seconds")

    @property
    def explanation(self) -> str:
        """The one-line why of this case: the reason, else the evidence's message, else ''."""
        if self.reason:
            return self.reason
        return self.evidence.message if self.evidence is not None else ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "requirement_id": self.requirement_id,
            "operation": self.operation,
            "outcome": str(self.outcome),
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
            "reason": self.reason,
            "duration": self.duration,
            "measurements": self.measurements,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        """Rebuild a case from :meth:`to_dict` output."""
        evidence = data["evidence"]
        return cls(
            requirement_id=data["requirement_id"],
            operation=data["operation"],
            outcome=Outcome(data["outcome"]),
            evidence=None if evidence is None else Evidence.from_dict(evidence),
            reason=data["reason"],
            duration=data["duration"],
            measurements=data.get("measurements"),
        )


# -- aggregation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequirementResult:
    """A requirement with its aggregate outcome, its cases and its per-operation outcomes."""

    requirement: Requirement
    outcome: Outcome
    cases: tuple[CaseResult, ...]
    by_operation: dict[str, Outcome]

    @property
    def skip_reasons(self) -> list[str]:
        """Distinct reasons its cases were skipped (or that no case ran), for a SKIP."""
        if not self.cases:
            return ["no case ran"]
        reasons = (case.reason for case in self.cases if case.outcome is Outcome.SKIP)
        return list(dict.fromkeys(reason for reason in reasons if reason))

    @property
    def not_applicable_reasons(self) -> list[str]:
        """Distinct reasons the requirement has no meaning under the contract judged."""
        reasons = (case.reason for case in self.cases if case.outcome is Outcome.NOT_APPLICABLE)
        return list(dict.fromkeys(reason for reason in reasons if reason))


@dataclass(frozen=True)
class LevelSummary:
    """Requirement counts for one level; ``percent`` leaves skipped and inapplicable ones out."""

    level: Level
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    not_applicable: int = 0

    @property
    def total(self) -> int:
        """All requirements of the level, inapplicable ones included."""
        return self.passed + self.failed + self.errored + self.skipped + self.not_applicable

    @property
    def percent(self) -> float | None:
        """The level's conformance: passed / (passed + failed + errored) x 100, or ``None``."""
        judged = self.passed + self.failed + self.errored
        return None if judged == 0 else 100.0 * self.passed / judged

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "level": str(self.level),
            "passed": self.passed,
            "failed": self.failed,
            "errored": self.errored,
            "skipped": self.skipped,
            "not_applicable": self.not_applicable,
            "total": self.total,
            "percent": self.percent,
        }


@dataclass(frozen=True)
class Summary:
    """Counts per outcome, over cases and over requirements, and conformance per level."""

    cases: dict[Outcome, int]
    requirements: dict[Outcome, int]
    must: LevelSummary
    should: LevelSummary

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return {
            "cases": {str(outcome): count for outcome, count in self.cases.items()},
            "requirements": {str(outcome): count for outcome, count in self.requirements.items()},
            "must": self.must.to_dict(),
            "should": self.should.to_dict(),
        }


@dataclass(frozen=True)
class Verdict:
    """The run's conclusion: ``headline`` is CONFORMANT or NOT CONFORMANT, ``reason`` says why."""

    conformant: bool
    headline: str
    reason: str

    def __str__(self) -> str:
        return f"{self.headline}: {self.reason}"


def _named(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def operation_sort_key(operation: str) -> tuple[str, str]:
    """How reports order operations: by path, then method (``GET /v1/models`` -> path first)."""
    method, _, path = operation.partition(" ")
    return (path, method) if path else (operation, "")


def _verdict_against_baseline(
    sorted_out: Triage, failed: list[str], errored: list[str], levels: str, down: str
) -> Verdict | None:
    """The verdict of a run with a baseline that had failures or stale entries, else None.

    ``failed`` and ``errored`` are the gated requirements with failures the baseline does not
    name (new ones).
    """
    expected, stale = sorted_out.expected, sorted_out.stale
    known = f"{_count(len(expected), 'expected failure')} (in the baseline)"
    if failed or errored:
        parts = []
        if failed:
            noun = f"{levels} requirement"
            parts.append(f"new failures in {_count(len(failed), noun)} ({_named(failed)})")
        if errored:
            noun = "requirement"
            parts.append(
                f"{_count(len(errored), noun)} newly could not be checked ({_named(errored)})"
            )
        if expected:
            parts.append(known)
        if stale:
            parts.append(f"{_count(len(stale), 'stale baseline entry')}")
        return Verdict(False, "NOT CONFORMANT", "; ".join(parts) + "." + down)
    if stale:
        pairs = [f"{entry.requirement} on {entry.operation}" for entry in stale]
        verb = "passes" if len(stale) == 1 else "pass"
        reason = (
            f"{_count(len(stale), 'expected failure')} now {verb} ({_named(pairs, 3)}): remove "
            f"{'its entry' if len(stale) == 1 else 'their entries'} from the baseline, which "
            "only ever shrinks."
        )
        return Verdict(False, "STALE BASELINE", reason + down)
    if expected:
        ids = sorted({requirement_id for requirement_id, _ in expected})
        reason = f"every failure is one the baseline expects: {known}, of {_named(ids)}."
        return Verdict(True, "NO NEW FAILURES", reason + down)
    return None


# -- the run record -------------------------------------------------------------------------


@dataclass
class RunRecord:
    """Everything about one run; ``to_dict()`` is ``results.json``.

    ``started_at``/``finished_at`` are ISO 8601 UTC (see :func:`utc_now`). ``options`` are
    redacted on the way in (see :func:`redact_options`), so a record never holds a secret
    option. Every case must name a requirement of the record. ``options["gate_should"]``, when
    true, makes :attr:`gate_should` true: reports then judge SHOULD requirements as MUST.
    ``target_down``, if set, says that the target stopped answering and had not come back when
    the run ended; the verdict then says so. ``known_failures``, if set, is the run's baseline
    (``--baseline``): failures it names do not gate, and entries that now pass do (see
    :mod:`conformance.baseline`).
    """

    target: str
    spec_title: str
    spec_version: str
    spec_sha256: str
    kit_version: str
    seed: int | None
    started_at: str
    finished_at: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    requirements: list[Requirement] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    target_down: TargetDown | None = None
    known_failures: tuple[KnownFailure, ...] | None = None
    contract: str = "mimic"
    """The name of the contract judged (``x-conformance.contract``: mimic, openai, custom)."""

    @property
    def contract_title(self) -> str:
        """How reports name the contract judged: "Mimic", "OpenAI-compatible", ..."""
        return CONTRACT_TITLES.get(self.contract, self.contract)

    def __post_init__(self) -> None:
        self.target = _redact_url_password(self.target)
        self.options = redact_options(self.options)
        ids = [requirement.id for requirement in self.requirements]
        duplicates = sorted({rid for rid in ids if ids.count(rid) > 1})
        if duplicates:
            raise ValueError(f"requirement IDs must be unique: {', '.join(duplicates)}")
        for case in self.cases:
            self._check_case(case)

    def _check_case(self, case: CaseResult) -> None:
        if not any(requirement.id == case.requirement_id for requirement in self.requirements):
            raise ValueError(
                f"case for {case.requirement_id!r} on {case.operation}: no such requirement "
                "in this record (add the requirement first)"
            )

    def add_requirement(self, requirement: Requirement) -> None:
        """Add a requirement; its ID must be new."""
        if any(existing.id == requirement.id for existing in self.requirements):
            raise ValueError(f"requirement {requirement.id} is already in the record")
        self.requirements.append(requirement)

    def add_case(self, case: CaseResult) -> None:
        """Add a case; it must name a requirement of the record."""
        self._check_case(case)
        self.cases.append(case)

    @property
    def gate_should(self) -> bool:
        """Whether the run was asked to gate on SHOULD requirements too."""
        return bool(self.options.get("gate_should", False))

    # -- aggregation --

    def operations(self) -> list[str]:
        """The operations that have cases, sorted by path, then method."""
        return sorted({case.operation for case in self.cases}, key=operation_sort_key)

    def requirement_results(self) -> list[RequirementResult]:
        """Each requirement, in record order, with its aggregate and per-operation outcomes."""
        cases_by_id: dict[str, list[CaseResult]] = {req.id: [] for req in self.requirements}
        for case in self.cases:
            cases_by_id[case.requirement_id].append(case)
        results = []
        for requirement in self.requirements:
            cases = cases_by_id[requirement.id]
            per_operation: dict[str, list[Outcome]] = {}
            for case in cases:
                per_operation.setdefault(case.operation, []).append(case.outcome)
            results.append(
                RequirementResult(
                    requirement=requirement,
                    outcome=aggregate(case.outcome for case in cases),
                    cases=tuple(cases),
                    by_operation={
                        operation: aggregate(outcomes)
                        for operation, outcomes in sorted(
                            per_operation.items(), key=lambda item: operation_sort_key(item[0])
                        )
                    },
                )
            )
        return results

    def matrix(self) -> dict[str, dict[str, Outcome]]:
        """Requirement ID -> operation -> outcome, for the pairs that have cases."""
        return {result.requirement.id: result.by_operation for result in self.requirement_results()}

    def summary(self) -> Summary:
        """Counts per outcome (cases and requirements) and MUST / SHOULD conformance."""
        results = self.requirement_results()
        by_level: dict[Level, dict[Outcome, int]] = {level: {} for level in Level}
        for result in results:
            counts = by_level[result.requirement.level]
            counts[result.outcome] = counts.get(result.outcome, 0) + 1

        def level_summary(level: Level) -> LevelSummary:
            counts = by_level[level]
            return LevelSummary(
                level,
                passed=counts.get(Outcome.PASS, 0),
                failed=counts.get(Outcome.FAIL, 0),
                errored=counts.get(Outcome.ERROR, 0),
                skipped=counts.get(Outcome.SKIP, 0),
                not_applicable=counts.get(Outcome.NOT_APPLICABLE, 0),
            )

        return Summary(
            cases={o: sum(case.outcome is o for case in self.cases) for o in Outcome},
            requirements={o: sum(result.outcome is o for result in results) for o in Outcome},
            must=level_summary(Level.MUST),
            should=level_summary(Level.SHOULD),
        )

    def triage(self) -> Triage | None:
        """The failures sorted against the baseline, or None when the run had none."""
        if self.known_failures is None:
            return None
        outcomes = {
            (requirement_id, operation): str(outcome)
            for requirement_id, by_operation in self.matrix().items()
            for operation, outcome in by_operation.items()
        }
        return triage(self.known_failures, outcomes)

    def _blocking(self, gate_should: bool) -> dict[Outcome, list[str]]:
        """The gated requirements that failed or errored, less failures the baseline expects."""
        levels = {Level.MUST, Level.SHOULD} if gate_should else {Level.MUST}
        sorted_out = self.triage()
        expected = set(sorted_out.expected) if sorted_out is not None else set()
        blocking: dict[Outcome, list[str]] = {Outcome.FAIL: [], Outcome.ERROR: []}
        for result in self.requirement_results():
            if result.requirement.level not in levels:
                continue
            new = [
                outcome
                for operation, outcome in result.by_operation.items()
                if outcome in blocking and (result.requirement.id, operation) not in expected
            ]
            if new:
                blocking[aggregate(new)].append(result.requirement.id)
        return blocking

    def exit_status(self, gate_should: bool = False) -> int:
        """Return the process exit status: 0 if no MUST requirement failed or errored, else 1.

        With ``gate_should``, SHOULD requirements count too. With a baseline, failures it
        names do not count, and an entry that now passes (a stale one) does.
        """
        blocking = self._blocking(gate_should)
        if blocking[Outcome.FAIL] or blocking[Outcome.ERROR]:
            return 1
        sorted_out = self.triage()
        return 1 if sorted_out is not None and sorted_out.stale else 0

    def verdict(self, gate_should: bool | None = None) -> Verdict:
        """Say whether the target conforms, and why, consistently with :meth:`exit_status`.

        ``gate_should`` defaults to :attr:`gate_should`.
        """
        gate = self.gate_should if gate_should is None else gate_should
        blocking = self._blocking(gate)
        failed, errored = blocking[Outcome.FAIL], blocking[Outcome.ERROR]
        levels = "MUST or SHOULD" if gate else "MUST"
        down = f" {self.target_down.sentence()}" if self.target_down is not None else ""
        sorted_out = self.triage()
        if sorted_out is not None:
            against = _verdict_against_baseline(sorted_out, failed, errored, levels, down)
            if against is not None:
                return against
        if failed or errored:
            parts = []
            if failed:
                parts.append(
                    f"{_count(len(failed), f'{levels} requirement')} failed ({_named(failed)})"
                )
            if errored:
                noun = f"{levels} requirement" if not failed else "requirement"
                parts.append(
                    f"{_count(len(errored), noun)} could not be checked ({_named(errored)})"
                )
            return Verdict(False, "NOT CONFORMANT", "; ".join(parts) + "." + down)
        summary = self.summary()
        must, should = summary.must, summary.should
        if must.passed == 0:
            reason = (
                f"no MUST requirement was checked ({_count(must.skipped, 'requirement')} skipped)."
                if must.total
                else "the run had no MUST requirement."
            )
            return Verdict(True, "CONFORMANT", reason + down)
        reason = f"all {_count(must.passed, 'checked MUST requirement')} passed"
        notes = []
        if not gate and (should.failed or should.errored):
            notes.append(f"{should.failed + should.errored} SHOULD not met")
        if must.skipped + should.skipped:
            notes.append(f"{must.skipped + should.skipped} skipped")
        if must.not_applicable + should.not_applicable:
            notes.append(f"{must.not_applicable + should.not_applicable} not applicable")
        reason += f" ({'; '.join(notes)})." if notes else "."
        return Verdict(True, "CONFORMANT", reason + down)

    # -- serialisation --

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-safe ``results.json`` document (stable key order)."""
        return {
            "format": RESULTS_FORMAT,
            "format_version": RESULTS_FORMAT_VERSION,
            "target": self.target,
            "spec": {
                "title": self.spec_title,
                "version": self.spec_version,
                "sha256": self.spec_sha256,
                "contract": self.contract,
            },
            "kit_version": self.kit_version,
            "seed": self.seed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "options": self.options,
            "verdict": str(self.verdict()),
            "exit_status": self.exit_status(self.gate_should),
            "summary": self.summary().to_dict(),
            "requirements": [
                {**result.requirement.to_dict(), "outcome": str(result.outcome)}
                for result in self.requirement_results()
            ],
            "cases": [case.to_dict() for case in self.cases],
            "target_down": None if self.target_down is None else self.target_down.to_dict(),
            "baseline": self._baseline_dict(),
        }

    def _baseline_dict(self) -> dict[str, Any] | None:
        sorted_out = self.triage()
        if self.known_failures is None or sorted_out is None:
            return None
        return {
            "known_failures": [entry.to_dict() for entry in self.known_failures],
            "expected": [list(key) for key in sorted_out.expected],
            "new": [list(key) for key in sorted_out.new],
            "stale": [entry.to_dict() for entry in sorted_out.stale],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """Rebuild a record from ``results.json`` (derived fields are recomputed, not read)."""
        if data.get("format") != RESULTS_FORMAT:
            raise ValueError(f"not a {RESULTS_FORMAT} document (format {data.get('format')!r})")
        if data.get("format_version") != RESULTS_FORMAT_VERSION:
            raise ValueError(
                f"results format version {data.get('format_version')!r} is not supported "
                f"(this kit reads version {RESULTS_FORMAT_VERSION})"
            )
        spec = data["spec"]
        return cls(
            target=data["target"],
            spec_title=spec["title"],
            spec_version=spec["version"],
            spec_sha256=spec["sha256"],
            contract=spec.get("contract", "mimic"),
            kit_version=data["kit_version"],
            seed=data["seed"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            options=dict(data["options"]),
            requirements=[Requirement.from_dict(item) for item in data["requirements"]],
            cases=[CaseResult.from_dict(item) for item in data["cases"]],
            target_down=None
            if data.get("target_down") is None
            else TargetDown.from_dict(data["target_down"]),
            known_failures=None
            if data.get("baseline") is None
            else tuple(
                KnownFailure.from_dict(entry) for entry in data["baseline"]["known_failures"]
            ),
        )

    def to_json(self) -> str:
        """Return ``results.json`` text: indented, UTF-8 friendly, strictly valid JSON."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> RunRecord:
        """Parse ``results.json`` text."""
        return cls.from_dict(json.loads(text))
