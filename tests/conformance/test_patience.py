"""The run's patience with a target that hangs: bounds on silence, tightened by what it did."""

from __future__ import annotations

import pytest

from conformance.exchange import Exchange, RequestSpec, TransportFailure
from conformance.suite._patience import HEAD_BOUND, IDLE_BOUND, IDLE_FLOOR, MARGIN, Patience

STREAMED = RequestSpec.json("POST", "http://t/v1/chat/completions", {"stream": True})
PLAIN = RequestSpec.json("POST", "http://t/v1/chat/completions", {"stream": False})
TIMEOUT = 60.0
CUT = TransportFailure("timeout", f"no complete response within {TIMEOUT:g} s")


def answered(request: RequestSpec, silence: float = 0.01, head: float = 0.01) -> Exchange:
    return Exchange(request, status=200, head_elapsed=head, longest_silence=silence)


def stalled(request: RequestSpec, silence: float = 0.01) -> Exchange:
    return Exchange(request, status=200, failure=CUT, head_elapsed=0.01, longest_silence=silence)


def unanswered(request: RequestSpec) -> Exchange:
    return Exchange(request, failure=CUT)


def test_only_the_timeout_applies_until_the_target_hangs() -> None:
    patience = Patience(TIMEOUT)
    for exchange in (answered(STREAMED), answered(PLAIN)):
        patience.observe(exchange)
    patience.observe(Exchange(PLAIN, failure=TransportFailure("reset", "the connection broke")))
    assert patience.head_timeout() is None
    assert patience.idle_timeout(True) is None and patience.idle_timeout(False) is None


def test_after_a_request_gets_no_head_later_ones_get_a_short_bound_for_theirs() -> None:
    patience = Patience(TIMEOUT)
    patience.observe(unanswered(PLAIN))
    assert patience.head_timeout() == HEAD_BOUND
    assert patience.idle_timeout(True) is None  # answers that do start are not cut short


def test_stalls_of_one_kind_tighten_that_kind_only_halving_down_to_the_floor() -> None:
    patience = Patience(TIMEOUT)
    patience.observe(stalled(STREAMED))
    assert patience.idle_timeout(True) == IDLE_BOUND
    assert patience.idle_timeout(False) is None
    bounds = []
    for _ in range(8):
        patience.observe(stalled(STREAMED))
        bounds.append(patience.idle_timeout(True))
    assert bounds[:3] == [IDLE_BOUND / 2, IDLE_BOUND / 4, IDLE_BOUND / 8]
    assert bounds[-1] == IDLE_FLOOR
    assert bounds == sorted(bounds, reverse=True)


def test_a_stream_that_ends_well_restores_the_first_bound() -> None:
    patience = Patience(TIMEOUT)
    for _ in range(5):
        patience.observe(stalled(STREAMED))
    patience.observe(answered(STREAMED))
    assert patience.idle_timeout(True) == IDLE_BOUND
    patience.observe(answered(PLAIN))  # a plain answer says nothing about streams
    patience.observe(stalled(STREAMED))
    assert patience.idle_timeout(True) == IDLE_BOUND


@pytest.mark.parametrize("silence", [0.3, 1.5])
def test_bounds_never_cut_what_the_target_always_does(silence: float) -> None:
    patience = Patience(TIMEOUT)
    for _ in range(10):
        patience.observe(stalled(STREAMED, silence=silence))
    assert patience.idle_timeout(True) == max(MARGIN * silence, IDLE_FLOOR)
    patience.observe(answered(PLAIN, head=2.0))
    patience.observe(unanswered(PLAIN))
    assert patience.head_timeout() == MARGIN * 2.0


def test_bounds_never_exceed_the_timeout() -> None:
    patience = Patience(1.0)
    patience.observe(stalled(STREAMED))
    patience.observe(unanswered(PLAIN))
    assert patience.idle_timeout(True) == 1.0
    assert patience.head_timeout() == 1.0
