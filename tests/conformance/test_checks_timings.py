"""Stream timings and STREAM-INCREMENTAL on streams with made-up arrival times."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.checks.streaming import StreamObservation
from conformance.checks.timings import MIN_CONTENT_EVENTS, StreamTimings, check_incremental
from conformance.sse import Event


def _chunk(content: str | None, **extra: Any) -> str:
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mythomax",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        "usage": None,
        **extra,
    }
    return json.dumps(body)


def _observed(datas: list[str], times: list[float]) -> StreamObservation:
    events = [
        Event(number, data, None, None, f"data: {data}\n\n", 0, at)
        for number, (data, at) in enumerate(zip(datas, times, strict=True), start=1)
    ]
    return StreamObservation(200, "text/event-stream", tuple(events), (), "eof")


def _stream(times: list[float], completion_tokens: int | None = None) -> StreamObservation:
    """A role chunk at 0.05 s, one content chunk per time, a usage chunk, then [DONE]."""
    usage = {"prompt_tokens": 3, "completion_tokens": completion_tokens, "total_tokens": 9}
    datas = [_chunk(""), *(_chunk("tok") for _ in times)]
    stamps = [0.05, *times]
    if completion_tokens is not None:
        datas.append(json.dumps({**json.loads(_chunk(None)), "choices": [], "usage": usage}))
        stamps.append(times[-1])
    return _observed([*datas, "[DONE]"], [*stamps, times[-1]])


def test_timings_of_a_stream_sent_as_generated() -> None:
    times = [0.10 + 0.01 * i for i in range(11)]  # first token at 100 ms, then one each 10 ms
    timings = StreamTimings.of(_stream(times, completion_tokens=11))
    assert timings.arrivals == tuple(times)  # the role chunk and the usage chunk carry no text
    figures = timings.measurements()
    assert figures["ttft_s"] == pytest.approx(0.10)
    assert figures["itl_median_s"] == pytest.approx(0.01)
    assert figures["itl_p90_s"] == pytest.approx(0.01)
    assert figures["tokens_per_s"] == pytest.approx(100.0)
    assert figures["content_events"] == 11
    assert check_incremental(timings) == []


def test_a_stream_held_back_and_sent_together_fails() -> None:
    times = [2.0 + 0.0001 * i for i in range(10)]
    (finding,) = check_incremental(StreamTimings.of(_stream(times)))
    assert finding.requirement_id == "STREAM-INCREMENTAL"
    assert "the 10 content events arrived within 1 ms of each other" in finding.message
    assert "held back" in finding.message
    assert finding.details["measurements"]["content_events"] == 10


def test_a_short_stream_is_not_judged() -> None:
    times = [2.0] * (MIN_CONTENT_EVENTS - 1)
    timings = StreamTimings.of(_stream(times))
    assert len(timings.arrivals) == MIN_CONTENT_EVENTS - 1
    assert check_incremental(timings) == []


def test_the_threshold_is_a_fifth_of_the_time_to_the_last_event() -> None:
    # Spread 0.21 s of a 1.0 s total passes; 0.19 s does not.
    passing = [0.79 + 0.21 * i / 9 for i in range(10)]
    failing = [0.81 + 0.19 * i / 9 for i in range(10)]
    assert check_incremental(StreamTimings.of(_stream(passing))) == []
    assert check_incremental(StreamTimings.of(_stream(failing)))


def test_tool_call_pieces_count_as_content() -> None:
    piece = {"index": 0, "function": {"arguments": "{"}}
    call = json.loads(_chunk(None))
    call["choices"][0]["delta"] = {"tool_calls": [piece]}
    timings = StreamTimings.of(_observed([json.dumps(call), "[DONE]"], [0.3, 0.3]))
    assert timings.arrivals == (0.3,)
    assert timings.measurements() == {"ttft_s": 0.3, "content_events": 1}


def test_a_stream_without_content_gives_only_a_count() -> None:
    timings = StreamTimings.of(_observed([_chunk(""), "[DONE]"], [0.1, 0.1]))
    assert timings.measurements() == {"content_events": 0}
