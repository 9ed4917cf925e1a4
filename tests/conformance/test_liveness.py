"""Telling a dead or hung target from a live one, from the run's own requests."""

from __future__ import annotations

from conformance.exchange import Exchange, RequestSpec, TransportFailure
from conformance.suite._liveness import (
    DEAD_AFTER,
    RECHECK_INTERVAL,
    UNRESPONSIVE_AFTER,
    Liveness,
)

REFUSED = TransportFailure("connect", "could not connect: [Errno 111] Connection refused")
RESET = TransportFailure("reset", "the connection was reset")
TIMED_OUT = TransportFailure("timeout", "no response head within 3 s")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(number: int) -> RequestSpec:
    return RequestSpec("GET", f"http://t/v1/models?n={number}")


def answer(liveness: Liveness, number: int) -> None:
    liveness.observe(Exchange(request(number), status=200), failed=False)


def fail(liveness: Liveness, number: int, failure: TransportFailure) -> None:
    liveness.observe(Exchange(request(number), failure=failure, elapsed=0.5), failed=True)


def test_a_target_that_answered_then_refuses_connections_is_dead() -> None:
    liveness = Liveness(Clock())
    for number in range(50):
        answer(liveness, number)
    for number in range(50, 50 + DEAD_AFTER - 1):
        fail(liveness, number, REFUSED)
        assert not liveness.down
    fail(liveness, 99, REFUSED)
    outage = liveness.outage
    assert outage is not None
    assert outage.cause == f"{DEAD_AFTER} requests in a row could not connect"
    assert outage.last_answered == request(49)
    assert outage.first_failed == request(50) and outage.first_failure == REFUSED
    assert outage.since.endswith("Z") and liveness.answered == 50


def test_resets_and_mixed_failures_name_their_cause() -> None:
    reset = Liveness(Clock())
    answer(reset, 0)
    for number in range(DEAD_AFTER):
        fail(reset, number, RESET)
    assert reset.outage is not None and "lost their connection" in reset.outage.cause
    mixed = Liveness(Clock())
    answer(mixed, 0)
    for number, failure in enumerate([REFUSED, RESET, REFUSED]):
        fail(mixed, number, failure)
    assert mixed.outage is not None and "could not connect or lost" in mixed.outage.cause


def test_an_answer_in_between_means_it_is_not_dead() -> None:
    liveness = Liveness(Clock())
    answer(liveness, 0)
    for number in range(10):
        fail(liveness, number, REFUSED)
        fail(liveness, number, REFUSED)
        answer(liveness, number)
    assert not liveness.down


def test_a_target_that_never_answered_is_down_only_after_more_failures() -> None:
    liveness = Liveness(Clock())
    for number in range(UNRESPONSIVE_AFTER - 1):
        fail(liveness, number, REFUSED)
    assert not liveness.down
    fail(liveness, 9, TIMED_OUT)
    assert liveness.outage is not None
    assert liveness.outage.cause == f"{UNRESPONSIVE_AFTER} requests in a row failed"


def gone_down() -> tuple[Clock, Liveness]:
    """A liveness whose target answered once, then refused every request until it was down."""
    clock = Clock()
    liveness = Liveness(clock)
    answer(liveness, 0)
    for number in range(DEAD_AFTER):
        fail(liveness, number, REFUSED)
    return clock, liveness


def test_while_down_requests_fail_fast_but_one_is_sent_now_and_then() -> None:
    clock, liveness = gone_down()
    refusal = liveness.refusal()
    assert refusal is not None and refusal.message.startswith("not sent: the target stopped")
    clock.now += RECHECK_INTERVAL
    assert liveness.refusal() is None  # a recheck goes out...
    assert liveness.refusal() is not None  # ...one at a time
    fail(liveness, 7, REFUSED)
    clock.now += RECHECK_INTERVAL / 2
    assert liveness.refusal() is not None  # the next recheck waits from the last one's end
    assert liveness.down


def test_a_target_that_comes_back_is_not_down() -> None:
    clock, liveness = gone_down()
    clock.now += RECHECK_INTERVAL
    assert liveness.refusal() is None
    answer(liveness, 8)
    assert not liveness.down and liveness.refusal() is None
