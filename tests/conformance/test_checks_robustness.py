"""The hostile-traffic checks: what counts as surviving a hostile request."""

from __future__ import annotations

from conformance.checks.robustness import (
    check_hostile_answer,
    check_stalled_closed,
    check_still_serving,
)
from conformance.exchange import Exchange, RequestSpec, TransportFailure

RID = "ROBUST-FLOOD"
DOCUMENTED = frozenset({"200", "400", "422", "500"})


def answer(status: int, body: bytes = b'{"detail": []}') -> Exchange:
    return Exchange(RequestSpec("POST", "/v1/completions"), status, [], body)


def no_answer(kind: str, message: str = "connection refused") -> Exchange:
    return Exchange(RequestSpec("POST", "/v1/completions"), failure=TransportFailure(kind, message))  # type: ignore[arg-type]


def judge(exchange: Exchange, *, client_error: bool = True) -> list[str]:
    findings = check_hostile_answer(
        RID, exchange, "a flood", bound=10, documented=DOCUMENTED, client_error=client_error
    )
    assert all(f.requirement_id == RID for f in findings)
    return [f.message for f in findings]


def test_a_fast_documented_4xx_with_a_json_body_passes() -> None:
    assert judge(answer(422)) == []
    assert judge(answer(400, b'{"error": "x"}')) == []


def test_a_5xx_fails_even_when_documented() -> None:
    (message,) = judge(answer(500, b'{"error": "boom"}'))
    assert "answered 500" in message and "never caused by input" in message


def test_an_empty_or_non_json_body_fails() -> None:
    messages = judge(answer(500, b""))
    assert len(messages) == 2 and "empty body" in messages[1]
    (message,) = judge(answer(422, b"<html>"))
    assert "not JSON" in message


def test_no_answer_is_the_targets_failure() -> None:
    (message,) = judge(no_answer("timeout"))
    assert "no answer within 10 s" in message
    (message,) = judge(no_answer("reset", "the connection dropped"))
    assert "the connection dropped" in message


def test_invalid_input_must_be_a_4xx_but_other_input_may_be_served() -> None:
    (message,) = judge(answer(200, b"{}"))
    assert "answered 4xx" in message
    assert judge(answer(200, b"{}"), client_error=False) == []


def test_an_undocumented_status_fails() -> None:
    (message,) = judge(answer(413, b"{}"))
    assert "does not document" in message


def test_still_serving() -> None:
    assert check_still_serving(RID, answer(200, b"{}"), "a flood", bound=5) == []
    (finding,) = check_still_serving(RID, answer(503, b"{}"), "a flood", bound=5)
    assert finding.message == "After a flood, a valid request was answered 503, not a 2xx."
    (finding,) = check_still_serving(RID, no_answer("connect"), "a flood", bound=5)
    assert "After a flood, a valid request got no answer (connection refused)" in finding.message


def test_stalled_closed() -> None:
    rid = "ROBUST-STALLED-CLOSED"
    assert check_stalled_closed(rid, "a stalled head", 10.2, None, bound=60) == []
    assert check_stalled_closed(rid, "a stalled head", 10.2, 408, bound=60) == []
    (finding,) = check_stalled_closed(rid, "a stalled head", None, None, bound=60)
    assert finding.message == "A connection with a stalled head was still open after 60 s."
    (finding,) = check_stalled_closed(rid, "a stalled head", 1.0, 500, bound=60)
    assert "answered 500" in finding.message
