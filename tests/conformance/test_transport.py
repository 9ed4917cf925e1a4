from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from conformance.exchange import RequestSpec, ResponseNotJSONError, TransportFailure
from conformance.server_process import free_port
from conformance.transport import Transport, probe
from tests.conformance.hostile import hostile_server, read_request, recording_server

T = TypeVar("T")
TIMEOUT = 1.0
# A call must return within its bound + SLACK, whatever the server does. Generous: a loaded CI
# machine may pause any thread for a while, but a call that ignores its bound hangs far longer.
# Lower bounds (it waited for the bound) are exact: a slow machine only makes waits longer.
SLACK = 5.0
CAP = 1 << 20

MODELS = RequestSpec("GET", "/v1/models")
STREAM = RequestSpec.json(
    "POST", "/v1/chat/completions", {"model": "mythomax", "messages": [], "stream": True}
)


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _against(mode: str, call: Callable[[Transport], T]) -> tuple[T, float]:
    """``call``'s result on a transport to a hostile server of ``mode``, and how long it took."""
    with (
        hostile_server(mode) as base_url,
        Transport(base_url, timeout=TIMEOUT, max_body_bytes=CAP) as transport,
    ):
        return _timed(lambda: call(transport))


@pytest.mark.parametrize(
    ("mode", "kind", "status"),
    [
        ("silent", "timeout", None),
        ("headers-then-stall", "timeout", 200),
        ("sse-forever", "timeout", 200),
        ("trickle", "timeout", 200),
        ("trickle-head", "timeout", None),
        ("sse-done-then-hang", "timeout", 200),
        ("endless-body", "too-large", 200),
        ("garbage", "protocol", None),
        ("reset", "reset", None),
        ("close-mid-body", "reset", 200),
        ("reset-mid-stream", "reset", 200),
        ("json", None, 200),
        ("sse", None, 200),
    ],
)
def test_send_returns_in_bounded_time_with_the_right_failure(
    mode: str, kind: str | None, status: int | None
) -> None:
    exchange, elapsed = _against(mode, lambda transport: transport.send(MODELS))
    assert elapsed < TIMEOUT + SLACK
    assert exchange.status == status
    assert (exchange.failure.kind if exchange.failure else None) == kind
    if kind == "timeout":
        assert elapsed >= TIMEOUT * 0.9  # it waited for the deadline, no longer
        assert "1 s" in exchange.failure.message  # type: ignore[union-attr]
    if kind == "too-large":
        assert exchange.truncated and len(exchange.body) == CAP
    # The exchange's own clock measures the call: within it, and past the deadline it reports.
    assert 0 <= exchange.elapsed <= elapsed
    if kind == "timeout":
        assert exchange.elapsed >= TIMEOUT * 0.9


def test_a_trickle_is_cut_at_the_overall_deadline_not_per_read() -> None:
    # One byte every 100 ms never trips a per-read timeout; only an overall deadline stops it.
    with hostile_server("trickle") as base_url, Transport(base_url, timeout=0.5) as transport:
        exchange, elapsed = _timed(lambda: transport.send(MODELS))
    assert 0.45 <= elapsed < 0.5 + SLACK
    assert exchange.failure is not None and exchange.failure.kind == "timeout"
    # The bytes that came before the deadline are kept: no more than one per 100 ms of the call.
    assert 2 <= len(exchange.body) <= 1 + elapsed / 0.1


def test_stream_events_of_a_well_behaved_stream() -> None:
    with hostile_server("sse") as base_url, Transport(base_url, timeout=TIMEOUT) as transport:
        result = transport.stream_events(STREAM)
    assert result.ended_by == "eof" and result.parsed
    assert result.exchange.failure is None
    assert result.exchange.media_type == "text/event-stream"
    assert [event.number for event in result.events] == [1, 2, 3, 4]
    assert result.events[-1].data == "[DONE]"
    assert result.deviations == []
    times = [event.received_at for event in result.events]
    assert all(t is not None for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    assert result.raw.endswith(b"data: [DONE]\n\n")


def test_stream_events_cuts_an_endless_stream_at_the_deadline() -> None:
    with (
        hostile_server("sse-forever") as base_url,
        Transport(base_url, timeout=TIMEOUT) as transport,
    ):
        result, elapsed = _timed(lambda: transport.stream_events(STREAM))
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + SLACK
    assert result.ended_by == "deadline"
    assert result.exchange.failure is not None and result.exchange.failure.kind == "timeout"
    assert 5 <= len(result.events) <= 1 + elapsed / 0.05  # one every 50 ms
    assert [event.number for event in result.events] == list(range(1, len(result.events) + 1))
    # Each event's time is counted from the request's start, within the exchange.
    received = [event.received_at for event in result.events]
    assert all(0 < at <= result.exchange.elapsed for at in received)  # type: ignore[operator]
    # Cut off by the suite, so the event in flight is not reported as the server's fault.
    assert result.deviations == []


def test_stream_events_after_done_waits_only_until_the_deadline() -> None:
    with (
        hostile_server("sse-done-then-hang") as base_url,
        Transport(base_url, timeout=TIMEOUT) as transport,
    ):
        result, elapsed = _timed(lambda: transport.stream_events(STREAM))
    assert elapsed < TIMEOUT + SLACK
    assert result.ended_by == "deadline"
    assert [event.data for event in result.events][-1] == "[DONE]"


def test_stream_events_reports_a_reset_mid_stream() -> None:
    with (
        hostile_server("reset-mid-stream") as base_url,
        Transport(base_url, timeout=TIMEOUT) as transport,
    ):
        result = transport.stream_events(STREAM)
    assert result.ended_by == "error"
    assert result.exchange.failure is not None and result.exchange.failure.kind == "reset"
    assert len(result.events) == 2


@pytest.mark.parametrize(
    ("mode", "ended_by"),
    [
        ("endless-body", "too-large"),
        ("trickle", "deadline"),
        ("garbage", "error"),
        ("silent", "deadline"),
    ],
)
def test_stream_events_against_hostile_servers(mode: str, ended_by: str) -> None:
    result, elapsed = _against(mode, lambda transport: transport.stream_events(STREAM))
    assert elapsed < TIMEOUT + SLACK
    assert result.ended_by == ended_by
    assert len(result.raw) <= CAP


def test_stream_events_caps_the_number_of_events() -> None:
    with (
        hostile_server("sse-forever") as base_url,
        Transport(base_url, timeout=30.0, max_events=5) as transport,
    ):
        result, elapsed = _timed(lambda: transport.stream_events(STREAM))
    assert elapsed < SLACK  # cut by the cap, long before the deadline
    assert result.ended_by == "too-large"
    assert len(result.events) == 5


def test_stream_events_does_not_parse_an_error_response() -> None:
    def not_found(conn: socket.socket, stop: threading.Event) -> None:
        if read_request(conn, stop):
            body = b'{"error": "no", "errorCode": 404}'
            conn.sendall(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    with hostile_server(not_found) as base_url, Transport(base_url, timeout=TIMEOUT) as transport:
        result = transport.stream_events(STREAM)
    assert result.exchange.status == 404 and not result.parsed
    assert result.events == [] and result.deviations == []
    assert result.exchange.json() == {"error": "no", "errorCode": 404}


def test_stream_yields_timestamped_chunks_and_stops_when_the_reader_does() -> None:
    with (
        hostile_server("sse-forever") as base_url,
        Transport(base_url, timeout=TIMEOUT) as transport,
    ):
        with transport.stream(STREAM) as body:
            assert body.exchange.status == 200
            chunks = []
            for chunk in body:
                chunks.append(chunk)
                if len(chunks) == 3:
                    break
        assert body.ended_by == "stopped"
        assert body.exchange.failure is None
        assert [chunk.received_at for chunk in chunks] == sorted(c.received_at for c in chunks)
        assert body.exchange.body == b"".join(chunk.data for chunk in chunks)
        # The transport is still usable afterwards.
        with transport.stream(MODELS, timeout=SLACK) as again:
            assert again.exchange.status == 200


def test_a_silent_body_is_cut_off_by_the_idle_bound_as_stalled() -> None:
    with (
        hostile_server("headers-then-stall") as base_url,
        Transport(base_url, timeout=30.0) as transport,
    ):
        result, elapsed = _timed(lambda: transport.stream_events(STREAM, idle_timeout=0.3))
    assert 0.25 <= elapsed < 0.3 + SLACK
    assert result.ended_by == "stalled"
    assert result.exchange.status == 200
    assert result.exchange.failure == TransportFailure("timeout", "nothing arrived for 0.3 s")


def test_the_idle_bound_leaves_a_stream_that_keeps_sending_to_the_deadline() -> None:
    with (
        hostile_server("sse-forever") as base_url,
        Transport(base_url, timeout=2.0) as transport,
    ):
        # An event every 50 ms: a bound on silence twenty times that leaves room for a pause.
        result, elapsed = _timed(lambda: transport.stream_events(STREAM, idle_timeout=1.0))
    assert 2.0 * 0.9 <= elapsed < 2.0 + SLACK
    assert result.ended_by == "deadline"
    assert 0 < result.exchange.longest_silence < 1.0


def test_a_good_stream_ends_well_under_the_idle_bound() -> None:
    with hostile_server("sse") as base_url, Transport(base_url, timeout=TIMEOUT) as transport:
        result = transport.stream_events(STREAM, idle_timeout=0.5)
    assert result.ended_by == "eof" and result.exchange.failure is None
    assert [event.data for event in result.events][-1] == "[DONE]"
    assert result.exchange.head_elapsed is not None
    assert 0 <= result.exchange.head_elapsed <= result.exchange.elapsed


def test_a_missing_head_is_cut_off_by_the_head_bound() -> None:
    with hostile_server("silent") as base_url, Transport(base_url, timeout=30.0) as transport:
        exchange, elapsed = _timed(lambda: transport.send(MODELS, head_timeout=0.3))
    assert 0.25 <= elapsed < 0.3 + SLACK
    assert exchange.status is None and exchange.head_elapsed is None
    assert exchange.failure == TransportFailure("timeout", "no response head within 0.3 s")


def test_the_overall_deadline_still_wins_over_looser_bounds() -> None:
    with hostile_server("silent") as base_url, Transport(base_url, timeout=0.3) as transport:
        exchange, elapsed = _timed(lambda: transport.send(MODELS, head_timeout=30, idle_timeout=30))
    assert elapsed < 0.3 + SLACK
    assert exchange.failure == TransportFailure("timeout", "no complete response within 0.3 s")


def test_per_call_timeout_overrides_the_default() -> None:
    with hostile_server("silent") as base_url, Transport(base_url, timeout=30.0) as transport:
        exchange, elapsed = _timed(lambda: transport.send(MODELS, timeout=0.3))
    assert 0.25 <= elapsed < 0.3 + SLACK
    assert exchange.failure is not None and exchange.failure.kind == "timeout"


def test_connection_refused_is_a_connect_failure() -> None:
    with Transport(f"http://127.0.0.1:{free_port()}", timeout=30.0) as transport:
        exchange, elapsed = _timed(lambda: transport.send(MODELS))
    assert elapsed < SLACK  # at once, not at the deadline
    assert exchange.status is None
    assert exchange.failure is not None and exchange.failure.kind == "connect"


def test_request_goes_out_exactly_as_specified_plus_defaults() -> None:
    with (
        recording_server() as (base_url, received),
        Transport(
            base_url, timeout=TIMEOUT, headers={"Authorization": "Bearer k", "X-Trace": "default"}
        ) as transport,
    ):
        request = RequestSpec.json(
            "POST", "/v1/completions", {"prompt": "héllo"}, headers=[("X-Trace", "mine")]
        )
        exchange = transport.send(request)
    assert exchange.status == 204 and exchange.failure is None
    assert exchange.request.url == base_url + "/v1/completions"
    assert exchange.request.header("authorization") == "Bearer k"
    (seen,) = received
    assert (seen.method, seen.target) == ("POST", "/v1/completions")
    assert seen.body == '{"prompt":"héllo"}'.encode()
    assert sorted(name.lower() for name, _ in seen.headers) == [
        "authorization", "content-length", "content-type", "host", "x-trace"
    ]  # fmt: skip
    assert seen.header("x-trace") == "mine"  # the request's own header wins over the default
    assert seen.header("content-type") == "application/json"


def test_keep_alive_connections_are_reused_safely() -> None:
    connections = []

    def keep_alive(conn: socket.socket, stop: threading.Event) -> None:
        connections.append(conn)
        while raw := read_request(conn, stop):
            body = raw.split(b" ", 2)[1]
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    with hostile_server(keep_alive) as base_url, Transport(base_url, timeout=TIMEOUT) as transport:
        bodies = [transport.send(RequestSpec("GET", f"/{n}")).body for n in range(3)]
    assert bodies == [b"/0", b"/1", b"/2"]
    assert len(connections) == 1


def test_exchange_json_explains_a_body_that_is_not_json() -> None:
    with (
        hostile_server("close-mid-body") as base_url,
        Transport(base_url, timeout=TIMEOUT) as transport,
    ):
        cut = transport.send(MODELS)
    with pytest.raises(ResponseNotJSONError, match="no complete response"):
        cut.json()
    with hostile_server("sse") as base_url, Transport(base_url, timeout=TIMEOUT) as transport:
        stream = transport.send(MODELS)
    with pytest.raises(ResponseNotJSONError, match=r"the body of the 200 response is not JSON"):
        stream.json()


@pytest.mark.parametrize(
    ("mode", "kind"), [("json", "http"), ("garbage", "not-http"), ("silent", "not-http")]
)
def test_probe(mode: str, kind: str) -> None:
    with hostile_server(mode) as base_url:
        result, elapsed = _timed(lambda: probe(base_url, TIMEOUT))
    assert elapsed < TIMEOUT + SLACK
    assert result.kind == kind
    assert result.answers_http is (kind == "http")
    assert base_url in result.message and "\n" not in result.message


def test_probe_unreachable() -> None:
    result = probe(f"http://127.0.0.1:{free_port()}", TIMEOUT)
    assert result.kind == "unreachable"
    assert "unreachable" in result.message


def test_request_spec_validates_and_normalises() -> None:
    request = RequestSpec("GET", "/x", {"A": "1"})  # type: ignore[arg-type]
    assert request.headers == (("A", "1"),)
    with pytest.raises(ValueError, match="line break"):
        RequestSpec("GET", "/x", (("X-Bad", "a\r\nInjected: yes"),))
    with pytest.raises(ValueError, match="invalid HTTP method"):
        RequestSpec("GE T", "/x")
    assert RequestSpec("POST", "/x", body=bytearray(b"ab")).body == b"ab"  # type: ignore[arg-type]
    assert STREAM.expects_stream and not MODELS.expects_stream
    assert RequestSpec("GET", "/x", (("Accept", "text/event-stream"),)).expects_stream
    assert STREAM.header("CONTENT-TYPE") == "application/json"


def test_transport_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="absolute http"):
        Transport("localhost:8000")
    with pytest.raises(ValueError, match="timeout"):
        Transport("http://localhost", timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        Transport("http://localhost", timeout=float("inf"))
