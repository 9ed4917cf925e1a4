"""Small readers shared by the checks: a response's choices, and values quoted in findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["choices", "clip", "listed"]


def choices(response: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The choices that are objects, of an answer or a streamed chunk; none if not a list."""
    found = response.get("choices")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def clip(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters for a finding's message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def listed(numbers: Sequence[int], shown: int = 5) -> str:
    """Event numbers for a finding's message: the first ``shown``, then "and N more"."""
    more = len(numbers) - shown
    return ", ".join(str(n) for n in numbers[:shown]) + (f" and {more} more" if more > 0 else "")
