from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.exchange import Exchange, RequestSpec, StreamResult, TransportFailure
from conformance.outage import TargetDown
from conformance.results import (
    REDACTED,
    CaseResult,
    Evidence,
    Level,
    Outcome,
    Requirement,
    RunRecord,
    aggregate,
    body_excerpt,
    redact_options,
    utc_now,
)
from conformance.sse import parse
from tests.conformance._records import run_record

P, F, E, S = Outcome.PASS, Outcome.FAIL, Outcome.ERROR, Outcome.SKIP
N = Outcome.NOT_APPLICABLE
OP = "POST /v1/chat/completions"


def _evidence(message: str = "it broke") -> Evidence:
    return Evidence(operation=OP, message=message)


def _case(requirement_id: str, outcome: Outcome, operation: str = OP) -> CaseResult:
    return CaseResult(
        requirement_id,
        operation,
        outcome,
        evidence=_evidence() if outcome in (F, E) else None,
        reason="because" if outcome in (S, E, N) else None,
    )


def _record(requirements: list[Requirement], cases: list[CaseResult], **options: Any) -> RunRecord:
    return run_record(requirements, cases, options=options)


MUST_A = Requirement("MUST-A", Level.MUST, "A holds.", "test")
MUST_B = Requirement("MUST-B", Level.MUST, "B holds.", "test")
SHOULD_C = Requirement("SHOULD-C", Level.SHOULD, "C holds.", "test")


# -- requirements and cases --------------------------------------------------------------------


@pytest.mark.parametrize(
    "good", ["STREAM-DONE-LAST", "A-1", "ERROR-422-SHAPE", "X1-Y2-Z3", "AUTH-BEARER"]
)
def test_requirement_ids_that_are_accepted(good: str) -> None:
    assert Requirement(good, Level.MUST, "s", "src").id == good


@pytest.mark.parametrize(
    "bad", ["STREAM", "stream-done", "-A-B", "A--B", "A-B-", "1A-B", "A_B", "A-b", "A B", ""]
)
def test_requirement_ids_that_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="must look like STREAM-DONE-LAST"):
        Requirement(bad, Level.MUST, "s", "src")


def test_requirement_level_from_string_and_validation() -> None:
    assert Requirement("A-B", "SHOULD", "s", "src").level is Level.SHOULD  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="MUST or SHOULD"):
        Requirement("A-B", "MAY", "s", "src")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        Requirement("A-B", Level.MUST, " ", "src")


def test_case_results_must_explain_themselves() -> None:
    with pytest.raises(ValueError, match="failure must carry evidence"):
        CaseResult("A-B", OP, F)
    with pytest.raises(ValueError, match="skip case must give a reason"):
        CaseResult("A-B", OP, S)
    with pytest.raises(ValueError, match="not-applicable case must give a reason"):
        CaseResult("A-B", OP, N)
    with pytest.raises(ValueError, match="error must give a reason or evidence"):
        CaseResult("A-B", OP, E)
    with pytest.raises(ValueError, match="duration"):
        CaseResult("A-B", OP, P, duration=-1)
    assert CaseResult("A-B", OP, "pass").outcome is P  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], S),
        ([S, S], S),
        ([P], P),
        ([P, S], P),
        ([P, E], E),
        ([E, S], E),
        ([P, E, F], F),
        ([F, S], F),
        ([S, P, P, E, P], E),
        ([N], N),
        ([N, N], N),
        ([N, S], S),
        ([N, P], P),
        ([N, F], F),
    ],
)
def test_aggregate(outcomes: list[Outcome], expected: Outcome) -> None:
    assert aggregate(outcomes) is expected


# -- exit status, summary, verdict -------------------------------------------------------------


@pytest.mark.parametrize(
    ("must", "should", "status", "gated_status"),
    [
        ([P, P], [P], 0, 0),
        ([P, S], [F], 0, 1),
        ([P, P], [E], 0, 1),
        ([F, P], [P], 1, 1),
        ([E, P], [P], 1, 1),
        ([S, S], [S], 0, 0),
        ([P, F], [F], 1, 1),
    ],
)
def test_exit_status(
    must: list[Outcome], should: list[Outcome], status: int, gated_status: int
) -> None:
    cases = [_case("MUST-A", must[0]), _case("MUST-B", must[1]), _case("SHOULD-C", should[0])]
    record = _record([MUST_A, MUST_B, SHOULD_C], cases)
    assert record.exit_status() == status
    assert record.exit_status(gate_should=True) == gated_status
    assert record.verdict(gate_should=False).conformant is (status == 0)
    assert record.verdict(gate_should=True).conformant is (gated_status == 0)


def test_exit_status_aggregates_cases_across_operations() -> None:
    cases = [_case("MUST-A", P, "GET /a"), _case("MUST-A", F, "GET /b"), _case("MUST-B", P)]
    record = _record([MUST_A, MUST_B], cases)
    assert record.exit_status() == 1
    assert record.matrix() == {"MUST-A": {"GET /a": P, "GET /b": F}, "MUST-B": {OP: P}}


def test_gate_should_option_drives_the_default_verdict() -> None:
    cases = [_case("MUST-A", P), _case("SHOULD-C", F)]
    assert _record([MUST_A, SHOULD_C], cases).verdict().conformant
    gated = _record([MUST_A, SHOULD_C], cases, gate_should=True)
    assert not gated.verdict().conformant
    assert gated.to_dict()["exit_status"] == 1


def test_summary_counts_and_percent() -> None:
    cases = [
        _case("MUST-A", P),
        _case("MUST-A", P, "GET /x"),
        _case("MUST-B", F),
        _case("SHOULD-C", S),
    ]
    extra = Requirement("MUST-D", Level.MUST, "D.", "test")
    summary = _record([MUST_A, MUST_B, SHOULD_C, extra], cases).summary()
    assert summary.cases == {P: 2, F: 1, E: 0, S: 1, N: 0}
    assert summary.requirements == {P: 1, F: 1, E: 0, S: 2, N: 0}
    assert (summary.must.passed, summary.must.failed, summary.must.skipped) == (1, 1, 1)
    assert summary.must.percent == 50.0
    assert summary.should.percent is None  # nothing judged
    assert summary.to_dict()["must"]["total"] == 3


def test_verdict_text() -> None:
    cases = [_case("MUST-A", F), _case("MUST-B", E), _case("SHOULD-C", F)]
    verdict = _record([MUST_A, MUST_B, SHOULD_C], cases).verdict()
    assert str(verdict) == (
        "NOT CONFORMANT: 1 MUST requirement failed (MUST-A); "
        "1 requirement could not be checked (MUST-B)."
    )
    ok = _record([MUST_A, MUST_B, SHOULD_C], [_case("MUST-A", P), _case("SHOULD-C", F)])
    assert str(ok.verdict()) == (
        "CONFORMANT: all 1 checked MUST requirement passed (1 SHOULD not met; 1 skipped)."
    )
    nothing = _record([MUST_A], [_case("MUST-A", S)])
    assert nothing.verdict().reason == "no MUST requirement was checked (1 requirement skipped)."


def test_not_applicable_is_counted_apart_and_left_out_of_the_percent() -> None:
    cases = [_case("MUST-A", P), _case("MUST-B", N), _case("SHOULD-C", N)]
    record = _record([MUST_A, MUST_B, SHOULD_C], cases)
    summary = record.summary()
    assert (summary.must.passed, summary.must.not_applicable, summary.must.skipped) == (1, 1, 0)
    assert summary.must.percent == 100.0
    assert summary.to_dict()["must"]["not_applicable"] == 1
    assert str(record.verdict()) == (
        "CONFORMANT: all 1 checked MUST requirement passed (2 not applicable)."
    )
    reasons = {r.requirement.id: r.not_applicable_reasons for r in record.requirement_results()}
    assert reasons["MUST-B"] == ["because"]
    assert record.exit_status() == 0


def test_skip_reasons() -> None:
    record = _record([MUST_A, MUST_B], [CaseResult("MUST-A", OP, S, reason="no --api-key")])
    reasons = {r.requirement.id: r.skip_reasons for r in record.requirement_results()}
    assert reasons == {"MUST-A": ["no --api-key"], "MUST-B": ["no case ran"]}


def test_record_refuses_unknown_and_duplicate_requirements() -> None:
    with pytest.raises(ValueError, match="no such requirement"):
        _record([MUST_A], [_case("MUST-B", P)])
    with pytest.raises(ValueError, match="must be unique"):
        _record([MUST_A, MUST_A], [])
    record = _record([MUST_A], [])
    with pytest.raises(ValueError, match="no such requirement"):
        record.add_case(_case("NOPE-X", P))
    with pytest.raises(ValueError, match="already in the record"):
        record.add_requirement(MUST_A)


def test_operations_are_sorted_by_path_then_method() -> None:
    cases = [_case("MUST-A", P, op) for op in ["POST /b", "GET /b", "GET /a", "POST /a"]]
    assert _record([MUST_A], cases).operations() == ["GET /a", "POST /a", "GET /b", "POST /b"]


# -- redaction ---------------------------------------------------------------------------------


def test_redact_options() -> None:
    options = {
        "api_key": "sk-1",
        "apiKey": "sk-2",
        "X-Api-Key": "sk-3",
        "access_token": "t",
        "client_secret": "s",
        "password": "p",
        "keys": ["a", "b"],
        "max_tokens": 16,
        "monkey": "banana",
        "api_key_unset": None,
        "nested": {"headers": {"Authorization": "Bearer x", "samwise_key": "k"}},
        "header_pairs": [["X-API-KEY", "k"], ["Accept", "*/*"]],
        "target": "http://user:pw@host:8000/x",
        "path": __import__("pathlib").Path("/tmp/reports"),
    }
    redacted = redact_options(options)
    for name in ("api_key", "apiKey", "X-Api-Key", "access_token", "client_secret", "password"):
        assert redacted[name] == REDACTED, name
    assert redacted["keys"] == REDACTED
    assert redacted["max_tokens"] == 16
    assert redacted["monkey"] == "banana"
    assert redacted["api_key_unset"] is None
    assert redacted["nested"]["headers"]["samwise_key"] == REDACTED
    assert redacted["header_pairs"] == [["X-API-KEY", REDACTED], ["Accept", "*/*"]]
    assert redacted["target"] == f"http://user:{REDACTED}@host:8000/x"
    assert redacted["path"] == "/tmp/reports"
    assert json.loads(json.dumps(redacted)) == redacted
    assert redact_options(redacted) == redacted  # idempotent


def test_record_redacts_on_the_way_in() -> None:
    record = _record([MUST_A], [], api_key="sk-secret", timeout=3.0)
    assert record.options == {"api_key": REDACTED, "timeout": 3.0}
    assert "sk-secret" not in record.to_json()


# -- evidence ----------------------------------------------------------------------------------

KEY = "sk-evidence-key"


def test_evidence_from_exchange_keeps_secrets_out_everywhere() -> None:
    request = RequestSpec.json(
        "POST",
        "http://h/v1/completions",
        {"prompt": f"my key is {KEY}"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    exchange = Exchange(
        request=request,
        status=401,
        headers=[("Content-Type", "application/json"), ("X-Echo", KEY)],
        body=json.dumps({"error": f"unknown key {KEY}"}).encode(),
        elapsed=0.01,
    )
    evidence = Evidence.from_exchange(
        "POST /v1/completions", f"the key {KEY} was refused", exchange, secrets=[KEY]
    )
    dumped = json.dumps(evidence.to_dict())
    assert KEY not in dumped
    assert "$MIMIC_API_KEY" in evidence.message
    assert evidence.request is not None and evidence.response is not None
    assert evidence.request["headers"][1] == ["Authorization", "Bearer $MIMIC_API_KEY"]
    assert evidence.curl is not None and '"$MIMIC_API_KEY"' in evidence.curl
    assert evidence.response["status"] == 401


def test_evidence_body_excerpt_is_capped_and_marked() -> None:
    body = ("é" * 3000).encode()  # 6000 bytes; the cap falls inside a character
    exchange = Exchange(request=RequestSpec("GET", "http://h/"), status=200, body=body)
    evidence = Evidence.from_exchange("GET /", "too big", exchange)
    excerpt = evidence.response["body"]  # type: ignore[index]
    assert excerpt["truncated"] and excerpt["size"] == 6000 and not excerpt["binary"]
    assert excerpt["text"] == "é" * 2048


def test_body_excerpt_of_binary_and_empty_bodies() -> None:
    assert body_excerpt(None) is None
    assert body_excerpt(b"") == {"text": "", "size": 0, "truncated": False, "binary": False}
    binary = body_excerpt(b"\xff\x00ok")
    assert binary == {"text": "\\xff\x00ok", "size": 4, "truncated": False, "binary": True}


def test_evidence_from_stream_keeps_numbered_events_head_and_tail() -> None:
    body = b"".join(b"data: %d\n\n" % n for n in range(1, 501)) + b"data: [DON"
    events, deviations = parse(body)
    request = RequestSpec.json("POST", "http://h/v1/chat/completions", {"stream": True})
    exchange = Exchange(request=request, status=200, body=body)
    result = StreamResult(exchange, events, deviations, "eof", True)
    evidence = Evidence.from_stream(OP, "no [DONE]", result)
    numbers = [event["number"] for event in evidence.events]
    assert numbers == [*range(1, 101), *range(401, 501)]
    assert evidence.events_omitted == 300
    assert evidence.events[-1]["data"] == "500"
    assert [d["kind"] for d in evidence.deviations] == ["unterminated-event"]
    assert evidence.response is not None and evidence.response["ended_by"] == "eof"
    assert evidence.curl is not None and " -N " in evidence.curl


def test_evidence_of_a_transport_failure() -> None:
    exchange = Exchange(
        request=RequestSpec("GET", "http://h/v1/models"),
        failure=TransportFailure("timeout", "no complete response within 1 s"),
        elapsed=1.0,
    )
    evidence = Evidence.from_exchange("GET /v1/models", "no answer", exchange)
    assert evidence.response is not None
    assert evidence.response["failure"] == {
        "kind": "timeout",
        "message": "no complete response within 1 s",
    }
    assert evidence.response["status"] is None


# -- serialisation -----------------------------------------------------------------------------


def test_utc_now_is_iso_8601_utc() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())


def test_from_dict_rejects_other_formats_and_versions() -> None:
    document = _record([MUST_A], []).to_dict()
    with pytest.raises(ValueError, match="not a mimic-conformance-results document"):
        RunRecord.from_dict({**document, "format": "junit"})
    with pytest.raises(ValueError, match="version 99 is not supported"):
        RunRecord.from_dict({**document, "format_version": 99})


_ids = st.from_regex(r"\A[A-Z][A-Z0-9]{0,4}(-[A-Z0-9]{1,4}){1,3}\Z")
_text = st.text(max_size=30)
_operations = st.sampled_from([OP, "GET /v1/models", "POST /{model}/v1/completions"])


@st.composite
def _records(draw: st.DrawFn) -> RunRecord:
    ids = draw(st.lists(_ids, min_size=1, max_size=5, unique=True))
    requirements = [
        Requirement(rid, draw(st.sampled_from(Level)), draw(_text) + ".", draw(_text) + "src")
        for rid in ids
    ]
    cases = []
    for _ in range(draw(st.integers(0, 8))):
        outcome = draw(st.sampled_from(Outcome))
        evidence = None
        if outcome in (F, E) or draw(st.booleans()):
            evidence = Evidence(
                operation=draw(_operations),
                message=draw(_text),
                extra=draw(st.dictionaries(_text, st.integers() | _text | st.none(), max_size=3)),
                events=[
                    {
                        "number": 1,
                        "received_at": 0.25,
                        "data": draw(_text),
                        "truncated": False,
                        "event_type": None,
                        "id": None,
                    }
                ],
            )
        cases.append(
            CaseResult(
                draw(st.sampled_from(ids)),
                draw(_operations),
                outcome,
                evidence=evidence,
                reason=draw(_text.map(lambda t: t + "!")) if outcome in (S, E, N) else None,
                duration=draw(st.floats(0, 100, allow_nan=False)),
                measurements=draw(
                    st.none()
                    | st.dictionaries(
                        _text,
                        st.integers(0, 10**6) | st.floats(0, 1e6, allow_nan=False),
                        max_size=3,
                    )
                ),
            )
        )
    return RunRecord(
        target=draw(_text),
        spec_title=draw(_text),
        spec_version="1.0.0",
        spec_sha256="0" * 64,
        kit_version="0.1.0",
        seed=draw(st.none() | st.integers()),
        started_at=utc_now(),
        finished_at=draw(st.none() | st.just(utc_now())),
        options=draw(st.dictionaries(_text, st.integers() | _text | st.booleans(), max_size=4)),
        requirements=requirements,
        cases=cases,
        target_down=draw(st.none() | _target_downs),
    )


_target_downs = st.builds(
    TargetDown,
    since=st.just(utc_now()),
    cause=_text,
    first_failure=_text,
    last_answered=st.none() | _text,
    last_answered_at=st.none() | st.just(utc_now()),
    first_failed=st.none() | _text,
    requests_answered=st.integers(0, 10**6),
    checks_not_run=st.integers(0, 10**6),
    server_exit=st.none() | _text,
    server_log_tail=st.lists(_text, max_size=3).map(tuple),
)


@settings(max_examples=150)
@given(_records())
def test_records_round_trip_exactly_through_json(record: RunRecord) -> None:
    text = record.to_json()
    again = RunRecord.from_json(text)
    assert again == record
    assert again.to_json() == text
    assert again.exit_status() == record.exit_status()


def test_a_target_that_went_down_is_named_once_in_the_verdict() -> None:
    down = TargetDown(
        since="2026-01-01T00:00:00.500Z",
        cause="3 requests in a row could not connect",
        first_failure="could not connect: [Errno 111] Connection refused",
        last_answered="curl -sS http://127.0.0.1:8000/v1/models",
        requests_answered=49,
        checks_not_run=42,
        server_exit="was killed by SIGILL (illegal instruction)",
    )
    record = _record([MUST_A, MUST_B], [_case("MUST-A", E), _case("MUST-B", P)])
    record.target_down = down
    reason = record.verdict().reason
    assert reason.startswith("1 MUST requirement could not be checked (MUST-A). ")
    assert reason.count("stopped answering") == 1
    assert (
        "The target stopped answering at 2026-01-01T00:00:00.500Z, after answering 49 requests: "
        "3 requests in a row could not connect (the first: could not connect: [Errno 111] "
        "Connection refused); 42 checks could not run because of it. The reference server was "
        "killed by SIGILL (illegal instruction)." in reason
    )
    document = record.to_dict()
    assert document["target_down"]["checks_not_run"] == 42
    assert RunRecord.from_dict(document).target_down == down
    assert _record([MUST_A], [_case("MUST-A", P)]).to_dict()["target_down"] is None


def test_measurements_ride_with_a_case_and_old_cases_load_without_them() -> None:
    case = CaseResult("A-B", OP, P, measurements={"ttft_s": 0.25, "content_events": 12})
    data = case.to_dict()
    assert data["measurements"] == {"ttft_s": 0.25, "content_events": 12}
    assert CaseResult.from_dict(data) == case
    del data["measurements"]  # a results.json written before measurements existed
    assert CaseResult.from_dict(data).measurements is None


@pytest.mark.parametrize("bad", [{"ttft_s": float("nan")}, {"x": "fast"}, {1: 2.0}, {"x": True}])
def test_measurements_are_finite_numbers_by_name(bad: Any) -> None:
    with pytest.raises(ValueError, match="measurements"):
        CaseResult("A-B", OP, P, measurements=bad)
