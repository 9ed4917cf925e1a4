"""A target that stopped answering during a run: when, after which request, and what it cost.

A :class:`TargetDown` is part of the run record (``results.json``'s ``target_down``) whenever
the target was down when the run ended. Every report says it once, in its headline, instead of
leaving a reader to guess why dozens of checks could not run. The checks themselves stay
errors: outcomes only say *what* the suite could conclude, this record says *why* it could not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TargetDown"]


@dataclass(frozen=True)
class TargetDown:
    """A target that had answered, then stopped, and had not come back when the run ended.

    ``since`` is the UTC time (ISO 8601) of the first request of the failing streak, ``cause``
    one phrase saying what the streak was ("3 requests in a row could not connect"), and
    ``first_failure`` the transport's message for its first request. ``last_answered`` is the
    curl command of the last request the target answered (at ``last_answered_at``) and
    ``first_failed`` that of the first one it did not. ``requests_answered`` counts the run's
    requests the target answered, ``checks_not_run`` the checks (requirement on operation) that
    ended in error once it was down. When the suite started the reference server itself,
    ``server_exit`` says how that process ended and ``server_log_tail`` holds the last lines of
    its log.
    """

    since: str
    cause: str
    first_failure: str
    last_answered: str | None = None
    last_answered_at: str | None = None
    first_failed: str | None = None
    requests_answered: int = 0
    checks_not_run: int = 0
    server_exit: str | None = None
    server_log_tail: tuple[str, ...] = field(default_factory=tuple)

    def sentence(self) -> str:
        """The one paragraph the reports put in their headline."""
        answered = f"{self.requests_answered} request{'' if self.requests_answered == 1 else 's'}"
        checks = f"{self.checks_not_run} check{'' if self.checks_not_run == 1 else 's'}"
        text = (
            f"The target stopped answering at {self.since}, after answering {answered}: "
            f"{self.cause} (the first: {self.first_failure}); {checks} could not run because "
            "of it."
        )
        if self.server_exit:
            text += f" The reference server {self.server_exit}."
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (``results.json``'s ``target_down``): every field, by name."""
        data = dataclasses.asdict(self)
        data["server_log_tail"] = list(self.server_log_tail)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetDown:
        """Rebuild one from :meth:`to_dict` output."""
        return cls(
            since=data["since"],
            cause=data["cause"],
            first_failure=data["first_failure"],
            last_answered=data.get("last_answered"),
            last_answered_at=data.get("last_answered_at"),
            first_failed=data.get("first_failed"),
            requests_answered=int(data.get("requests_answered", 0)),
            checks_not_run=int(data.get("checks_not_run", 0)),
            server_exit=data.get("server_exit"),
            server_log_tail=tuple(data.get("server_log_tail") or ()),
        )
