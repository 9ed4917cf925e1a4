"""How long the run waits on a target: the whole timeout, until the target has hung once.

Every request may take the run's ``--timeout``. A target that hangs (accepts a request and
never answers it, or starts an answer and goes silent with the connection open) would cost
that much on every request: hours over a run. So once it has hung past the timeout, the run
waits much less on it:

- after a request got no response head within the timeout, later requests get
  :data:`HEAD_BOUND` seconds for their response head;
- after an answer was still open when the timeout passed, later answers of the same kind
  (streamed, or plain) are cut off after :data:`IDLE_BOUND` seconds without a byte, and end
  ``stalled``. Each further stall in a row halves that bound, down to :data:`IDLE_FLOOR`; an
  answer of that kind that ends well restores it.

Neither bound ever goes below :data:`MARGIN` times the longest wait the target has shown for a
head, or for a piece of an answer, that did arrive: a slow target is never cut off for being as
slow as it always is. Both bounds are on silence, not on the whole answer, so a target that
stalls only sometimes still has its good answers judged, however long they take within the
timeout. The state lives in the run (one per pytest-xdist worker), never in the module.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.exchange import Exchange

__all__ = ["HEAD_BOUND", "IDLE_BOUND", "IDLE_FLOOR", "MARGIN", "Patience"]

HEAD_BOUND = 3.0
"""Seconds allowed for a response head once a request got none within the timeout."""
IDLE_BOUND = 2.0
"""Seconds of silence allowed in an answer once one of its kind was open past the timeout."""
IDLE_FLOOR = 0.1
"""The least silence allowed, however many answers stalled in a row."""
MARGIN = 4.0
"""How many times the longest wait the target has shown a bound on silence stays above."""


@dataclass
class _Kind:
    """What answers of one kind (streamed or plain) have shown."""

    stalled: bool = False
    stalls_in_a_row: int = 0
    longest_silence: float = 0.0


class Patience:
    """The bounds on silence for the next request, tightened by what the target did before.

    :meth:`head_timeout` and :meth:`idle_timeout` are ``None`` (only the run's timeout applies)
    until the target has hung.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._head_stalled = False
        self._longest_head = 0.0
        self._kinds = {True: _Kind(), False: _Kind()}

    def head_timeout(self) -> float | None:
        """Seconds allowed for the next response head, or ``None`` for the whole timeout."""
        if not self._head_stalled:
            return None
        return min(self.timeout, max(HEAD_BOUND, MARGIN * self._longest_head))

    def idle_timeout(self, streamed: bool) -> float | None:
        """Seconds of silence allowed in the next answer of that kind, or ``None``."""
        kind = self._kinds[streamed]
        if not kind.stalled:
            return None
        halved = IDLE_BOUND / 2 ** max(0, kind.stalls_in_a_row - 1)
        return min(self.timeout, max(IDLE_FLOOR, MARGIN * kind.longest_silence, halved))

    def observe(self, exchange: Exchange) -> None:
        """Learn from one request that was sent."""
        kind = self._kinds[exchange.request.expects_stream]
        if exchange.head_elapsed is not None:
            self._longest_head = max(self._longest_head, exchange.head_elapsed)
        kind.longest_silence = max(kind.longest_silence, exchange.longest_silence)
        failure = exchange.failure
        if failure is None:
            kind.stalls_in_a_row = 0
            return
        if failure.kind != "timeout":
            return
        if exchange.status is None:
            self._head_stalled = True
            return
        kind.stalled = True
        kind.stalls_in_a_row += 1
