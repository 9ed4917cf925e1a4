"""Whether the target still answers, judged from the run's own requests.

A target that has answered and then fails :data:`DEAD_AFTER` requests in a row without a
response head, because the connection was refused or reset, is taken for dead: its process
exited, crashed or closed its socket. A target that fails :data:`UNRESPONSIVE_AFTER` requests in
a row in any way (timeouts included) is taken for down too, answered or not. Either way the
:class:`Outage` starts at the first failure of the streak.

While the target is down, requests are not sent: :meth:`Liveness.refusal` gives the failure to
record instead, so that a dead target costs nothing per check and a hung one no timeout per
check. One real request every :data:`RECHECK_INTERVAL` seconds still goes out; if one is
answered the target has come back and the outage is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from conformance.exchange import Exchange, RequestSpec, TransportFailure

__all__ = ["DEAD_AFTER", "RECHECK_INTERVAL", "UNRESPONSIVE_AFTER", "Liveness", "Outage"]

DEAD_AFTER = 3
"""Refused or reset connections in a row after which a target that has answered is dead."""
UNRESPONSIVE_AFTER = 5
"""Failed requests in a row (of any kind) after which the target is taken for down."""
RECHECK_INTERVAL = 10.0
"""Seconds between the real requests sent to a target taken for down, to see if it is back."""

_DEAD_KINDS = frozenset({"connect", "reset"})


def _utc_ago(seconds: float) -> str:
    """The UTC time (ISO 8601, milliseconds) ``seconds`` ago: when a request was sent."""
    moment = datetime.now(UTC) - timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Outage:
    """Since when, and why, the target is taken for down.

    ``since`` is UTC (ISO 8601) and ``started`` the same instant on the monotonic clock;
    ``first_failed`` is the first request of the failing streak and ``first_failure`` what
    happened to it; ``last_answered`` is the last request that got a response head before it.
    """

    since: str
    started: float
    cause: str
    first_failed: RequestSpec
    first_failure: TransportFailure
    last_answered: RequestSpec | None
    last_answered_at: str | None


@dataclass(frozen=True)
class _Failure:
    request: RequestSpec
    failure: TransportFailure
    at: str
    started: float


class Liveness:
    """Counts answers and failures in a row; says when the target is down, and since when."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.answered = 0
        """Requests that got a response head."""
        self.outage: Outage | None = None
        self._last_answered: RequestSpec | None = None
        self._last_answered_at: str | None = None
        self._first: _Failure | None = None
        self._failed = 0
        self._dead = 0
        self._dead_kinds: set[str] = set()
        self._next_check = 0.0

    @property
    def down(self) -> bool:
        """Whether the target is taken for down now."""
        return self.outage is not None

    def refusal(self) -> TransportFailure | None:
        """The failure to record instead of sending a request, or ``None`` to send it."""
        outage = self.outage
        if outage is None:
            return None
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + RECHECK_INTERVAL
            return None
        return TransportFailure(
            "other", f"not sent: the target stopped answering at {outage.since}"
        )

    def observe(self, exchange: Exchange, *, failed: bool) -> None:
        """Count one request that was sent; ``failed`` says whether it counts as a failure.

        A request that got a response head counts as answered even if it failed later (a body
        cut at the deadline, say); only one that did not fail ends an outage.
        """
        if exchange.status is not None:
            self.answered += 1
            self._last_answered = exchange.request
            self._last_answered_at = _utc_ago(0.0)
            self._dead, self._dead_kinds = 0, set()
        if not failed:
            self._first, self._failed, self.outage = None, 0, None
            return
        failure = exchange.failure or TransportFailure("other", "no complete answer")
        if self._first is None:
            elapsed = exchange.elapsed
            sent, started = _utc_ago(elapsed), self._clock() - elapsed
            self._first = _Failure(exchange.request, failure, sent, started)
        self._failed += 1
        if exchange.status is None and failure.kind in _DEAD_KINDS:
            self._dead += 1
            self._dead_kinds.add(failure.kind)
        if self.outage is not None:  # a recheck that failed: wait a while before the next one
            self._next_check = self._clock() + RECHECK_INTERVAL
            return
        cause = self._cause()
        if cause is not None:
            self._begin(cause)

    def _cause(self) -> str | None:
        if self.answered and self._dead >= DEAD_AFTER:
            if self._dead_kinds == {"connect"}:
                what = "could not connect"
            elif self._dead_kinds == {"reset"}:
                what = "lost their connection before an answer"
            else:
                what = "could not connect or lost their connection before an answer"
            return f"{self._dead} requests in a row {what}"
        if self._failed >= UNRESPONSIVE_AFTER:
            return f"{self._failed} requests in a row failed"
        return None

    def _begin(self, cause: str) -> None:
        first = self._first
        assert first is not None
        self.outage = Outage(
            since=first.at,
            started=first.started,
            cause=cause,
            first_failed=first.request,
            first_failure=first.failure,
            last_answered=self._last_answered,
            last_answered_at=self._last_answered_at,
        )
        self._next_check = self._clock() + RECHECK_INTERVAL
