"""Cut streamed text at the first stop sequence, even one that spans several tokens."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["StopMatcher"]


class StopMatcher:
    """Releases streamed text that cannot be part of a stop sequence, and finds the first one.

    Text arrives a token at a time, so a stop sequence may begin in one chunk and end several
    chunks later. The matcher holds back the longest tail that is still the beginning of some
    stop sequence, and releases it as soon as it can no longer be one. Released text therefore
    never contains, nor ends inside, a stop sequence. (llama-cpp-python does the same inside
    ``create_completion``, mixed with its bytes handling; it has no reusable piece for it.)

    When stop sequences overlap, the one that is complete first wins (the earliest to end; of
    those, the earliest to begin): generation stops the moment a stop sequence is complete, so
    this is the only rule whose answer does not depend on how the text was cut into chunks.
    """

    __slots__ = ("_held", "_longest", "_stops")

    def __init__(self, stops: Sequence[str]) -> None:
        if not stops or not all(stops):
            raise ValueError("StopMatcher needs at least one non-empty stop sequence")
        self._stops = tuple(stops)
        self._longest = max(map(len, self._stops))
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Take the next chunk; return the text now safe to release and whether a stop matched.

        After a match, the text before the stop sequence is returned and the rest is dropped;
        the caller should push nothing more.
        """
        buffer = self._held + text
        found = [(i + len(stop), i) for stop in self._stops if (i := buffer.find(stop)) >= 0]
        if found:
            self._held = ""
            return buffer[: min(found)[1]], True
        held = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - held :]
        return buffer[: len(buffer) - held], False

    def flush(self) -> str:
        """Release the held-back tail: the stream ended, so it can no longer become a stop."""
        held, self._held = self._held, ""
        return held

    def _partial_tail(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that begins some stop sequence."""
        for size in range(min(len(buffer), self._longest - 1), 0, -1):
            tail = buffer[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
