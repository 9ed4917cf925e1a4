"""When a stream's content arrived: the timings a load tester reports, and STREAM-INCREMENTAL.

A server, or a proxy in front of it, that holds a stream back and sends it whole at the end
keeps every framing rule and still defeats the point of streaming: the client sees nothing
until the generation is over. Only the arrival times show it. The suite stamps every event
with the time its last byte arrived (seconds since the request was sent), so one long stream
gives both the verdict and the figures that llmperf-style load testers print: time to first
token, inter-token latency (median and p90) and tokens per second.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conformance.checks._answers import choices
from conformance.checks._finding import Finding
from conformance.checks.streaming import StreamObservation

__all__ = [
    "LEAST_SPREAD",
    "MIN_CONTENT_EVENTS",
    "StreamTimings",
    "check_incremental",
]

MIN_CONTENT_EVENTS = 8
"""Fewer content events than this are too short a stream to judge STREAM-INCREMENTAL on."""
LEAST_SPREAD = 0.2
"""The least share of the time from the request to the last content event that the content
events must spread over: a fifth. A streamed generation spreads them over nearly all of it
(only the prompt's evaluation comes first); a stream held back and sent together, over none."""


def _carries_content(choice: Mapping[str, Any]) -> bool:
    """Whether a chunk's choice carries generated output: text or a tool call's piece."""
    delta = choice.get("delta")
    if isinstance(delta, Mapping) and any(delta.get(k) for k in ("content", "tool_calls")):
        return True
    return bool(choice.get("text"))


@dataclass(frozen=True)
class StreamTimings:
    """The arrival times of a stream's content events and its count of completion tokens.

    ``arrivals`` are seconds since the request was sent, one per event that carries
    generated output, in order; ``completion_tokens`` is the usage chunk's count, if any.
    """

    arrivals: tuple[float, ...]
    completion_tokens: int | None = None

    @classmethod
    def of(cls, obs: StreamObservation) -> StreamTimings:
        """The timings of an observed stream (events without an arrival time are left out)."""
        received = {event.number: event.received_at for event in obs.events}
        arrivals = []
        completion = None
        for chunk in obs.chunks:
            usage = chunk.body.get("usage")
            if isinstance(usage, Mapping) and isinstance(usage.get("completion_tokens"), int):
                completion = usage["completion_tokens"]
            at = received.get(chunk.number)
            if at is not None and any(_carries_content(c) for c in choices(chunk.body)):
                arrivals.append(at)
        return cls(tuple(arrivals), completion)

    @property
    def spread(self) -> float:
        """Seconds from the first content event to the last."""
        return self.arrivals[-1] - self.arrivals[0] if self.arrivals else 0.0

    def measurements(self) -> dict[str, float]:
        """The figures for the report, those that this stream can give.

        ``ttft_s``, ``itl_median_s``, ``itl_p90_s``, ``tokens_per_s`` and ``content_events``.
        """
        if not self.arrivals:
            return {"content_events": 0}
        figures: dict[str, float] = {
            "ttft_s": self.arrivals[0],
            "content_events": len(self.arrivals),
        }
        gaps = [b - a for a, b in itertools.pairwise(self.arrivals)]
        if gaps:
            figures["itl_median_s"] = statistics.median(gaps)
            figures["itl_p90_s"] = (
                statistics.quantiles(gaps, n=10, method="inclusive")[-1]
                if len(gaps) > 1
                else gaps[0]
            )
        tokens = self.completion_tokens or len(self.arrivals)
        if self.spread > 0 and tokens > 1:
            figures["tokens_per_s"] = (tokens - 1) / self.spread
        return figures


def check_incremental(timings: StreamTimings) -> list[Finding]:
    """STREAM-INCREMENTAL: the content events spread over a fifth of the time to the last one.

    A stream with fewer than :data:`MIN_CONTENT_EVENTS` content events is not judged here
    (an empty list: the caller says it was too short).
    """
    if len(timings.arrivals) < MIN_CONTENT_EVENTS:
        return []
    total = timings.arrivals[-1]
    if total <= 0 or timings.spread >= LEAST_SPREAD * total:
        return []
    return [
        Finding(
            "STREAM-INCREMENTAL",
            f"the {len(timings.arrivals)} content events arrived within "
            f"{timings.spread * 1000:.0f} ms of each other, the last {total:.2f} s after the "
            f"request: spread over {timings.spread / total:.0%} of that time, not at least "
            f"{LEAST_SPREAD:.0%}, so the stream was held back and sent together (by the server "
            "or a proxy in front of it) instead of as it was generated.",
            details={"measurements": timings.measurements()},
        )
    ]
