"""What a check returns: findings, each naming the requirement it breaks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from jsonschema.exceptions import best_match

__all__ = ["Finding", "ResponseLike", "Validator", "schema_problems"]


@dataclass(frozen=True)
class Finding:
    """One way the target broke one requirement.

    ``message`` is one or two sentences for the person fixing the server. ``event_numbers``
    points at the stream events concerned (1-based, as the report numbers them); ``details``
    holds anything else worth showing (JSON-safe).
    """

    requirement_id: str
    message: str
    event_numbers: tuple[int, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


class ResponseLike(Protocol):
    """What the error checks read from a response (a `conformance.exchange.Exchange` fits)."""

    status: int | None
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header, any case."""
        ...


class Validator(Protocol):
    """A compiled JSON Schema validator (`jsonschema.Draft202012Validator` fits)."""

    def iter_errors(self, instance: Any) -> Iterable[Any]:
        """Every validation error of ``instance``."""
        ...


def schema_problems(validator: Validator, instance: Any, *, limit: int = 3) -> list[str]:
    """Readable validation errors of ``instance``: the most relevant first, at most ``limit``.

    Each reads ``at <json path>: <message>``; an empty list means the instance is valid.
    """
    errors = list(validator.iter_errors(instance))
    if not errors:
        return []
    first = best_match(errors)
    ordered = [first, *(error for error in errors if error is not first)]
    problems = []
    for error in ordered[:limit]:
        where = error.json_path if hasattr(error, "json_path") else "$"
        message = error.message if len(error.message) <= 300 else error.message[:300] + "…"
        problems.append(f"at {where}: {message}")
    return problems
