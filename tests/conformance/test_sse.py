from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.sse import Deviation, DeviationKind, Event, SSEParser, parse


def _feed_all(chunks: list[bytes]) -> tuple[list[Event], list[Deviation]]:
    parser = SSEParser()
    events: list[Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.finish()
    return events, parser.deviations


def _kinds(deviations: list[Deviation]) -> list[str]:
    return [str(deviation.kind) for deviation in deviations]


# -- the WHATWG rules, one by one --------------------------------------------------------------


def test_conforming_stream_parses_without_deviations() -> None:
    events, deviations = parse(b'data: {"a": 1}\n\n: ping\n\ndata: [DONE]\n\n')
    assert [(e.number, e.data, e.event_type, e.id) for e in events] == [
        (1, '{"a": 1}', None, None),
        (2, "[DONE]", None, None),
    ]
    assert deviations == []


def test_event_records_raw_lines_and_byte_offset() -> None:
    body = b': hello\ndata: {"a": 1}\r\n\r\ndata: x\n\n'
    events, _ = parse(body)
    assert events[0].raw == ': hello\ndata: {"a": 1}\r\n\r\n'
    assert events[0].offset == 0
    assert events[1].offset == body.index(b"data: x")
    assert events[1].raw == "data: x\n\n"


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_every_line_end_is_recognised(line_end: bytes) -> None:
    events, deviations = parse(b"data: a" + line_end * 2 + b"data: b" + line_end * 2)
    assert [e.data for e in events] == ["a", "b"]
    assert deviations == []


def test_cr_at_chunk_end_and_lf_at_next_chunk_start_are_one_line_end() -> None:
    events, deviations = _feed_all([b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"])
    assert [e.data for e in events] == ["a", "b"]
    assert deviations == []
    assert events[0].raw == "data: a\r\n\r"  # dispatched at the CR, before its LF came
    assert events[1].offset == len(b"data: a\r\n\r\n")


def test_only_one_space_after_the_colon_is_stripped() -> None:
    events, deviations = parse(b"data:  two spaces\n\n")
    assert events[0].data == " two spaces"
    assert deviations == []


def test_value_splits_on_the_first_colon_only() -> None:
    events, _ = parse(b'data: {"url": "http://x"}\n\n')
    assert events[0].data == '{"url": "http://x"}'


def test_leading_bom_is_stripped_and_reported_as_legal() -> None:
    events, deviations = parse(b"\xef\xbb\xbfdata: a\n\n")
    assert [e.data for e in events] == ["a"]
    assert _kinds(deviations) == ["bom"]
    assert deviations[0].legal and deviations[0].offset == 0


def test_bom_split_across_chunks() -> None:
    events, deviations = _feed_all([b"\xef", b"\xbb", b"\xbfdata: a\n\n"])
    assert [e.data for e in events] == ["a"]
    assert _kinds(deviations) == ["bom"]


def test_second_bom_is_not_stripped() -> None:
    events, deviations = parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n")
    assert events == []  # the field name is "\ufeffdata": unknown
    assert _kinds(deviations) == ["bom", "unknown-field", "event-without-data"]


def test_multi_line_data_is_joined_and_reported() -> None:
    events, deviations = parse(b"data: a\ndata: b\ndata\n\n")
    assert events[0].data == "a\nb\n"
    assert _kinds(deviations) == ["multi-line-data", "field-without-colon"]
    assert all(deviation.legal for deviation in deviations)
    assert deviations[0].line == 2


def test_event_and_id_and_retry_fields() -> None:
    events, deviations = parse(b"event: delta\nid: 7\nretry: 1500\ndata: a\n\ndata: b\n\n")
    assert (events[0].event_type, events[0].id) == ("delta", "7")
    # The last event ID persists; the event type does not.
    assert (events[1].event_type, events[1].id) == (None, "7")
    assert _kinds(deviations) == ["event-field", "id-field", "retry-field"]
    assert all(deviation.legal for deviation in deviations)


def test_id_with_nul_and_bad_retry_are_ignored_but_reported() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: a\x00b\nretry: 15x\ndata: a\n\n")
    assert events[0].id is None
    assert parser.retry is None
    assert "ignored" in parser.deviations[0].message
    assert "ignored" in parser.deviations[1].message


def test_unknown_field_and_block_without_data() -> None:
    events, deviations = parse(b"foo: bar\n\n")
    assert events == []
    assert _kinds(deviations) == ["unknown-field", "event-without-data"]


def test_data_without_space_is_reported() -> None:
    events, deviations = parse(b'data:{"a":1}\n\n')
    assert events[0].data == '{"a":1}'
    assert _kinds(deviations) == ["data-without-space"]


def test_unterminated_event_is_not_dispatched_and_is_reported() -> None:
    body = b"data: a\n\ndata: [DONE]\n"
    events, deviations = parse(body)
    assert [e.data for e in events] == ["a"]
    assert _kinds(deviations) == ["unterminated-event"]
    deviation = deviations[0]
    assert not deviation.legal
    assert deviation.line == 3
    assert deviation.offset == body.index(b"data: [DONE]")
    assert "[DONE]" in deviation.text


def test_partial_line_at_eof_is_unterminated() -> None:
    events, deviations = parse(b"data: a\n\ndata: [DONE]")
    assert [e.data for e in events] == ["a"]
    assert _kinds(deviations) == ["unterminated-event"]
    _, deviations = parse(b"data: a\n\n: bye")
    assert _kinds(deviations) == ["unterminated-line"]


def test_invalid_utf8_is_replaced_and_reported_with_its_offset() -> None:
    body = b"data: ok\n\ndata: caf\xc3\n\n"
    events, deviations = parse(body)
    assert events[1].data == "caf\ufffd"
    assert _kinds(deviations) == ["invalid-utf8"]
    assert deviations[0].offset == body.index(b"\xc3")
    assert not deviations[0].legal


def test_utf8_sequence_split_across_chunks_is_fine() -> None:
    events, deviations = _feed_all([b"data: caf\xc3", b"\xa9\n\n"])
    assert events[0].data == "café"
    assert deviations == []


def test_received_at_comes_from_feed_or_clock() -> None:
    parser = SSEParser(clock=lambda: 1.5)
    assert parser.feed(b"data: a\n\n")[0].received_at == 1.5
    assert parser.feed(b"data: b\n\n", received_at=2.25)[0].received_at == 2.25
    assert SSEParser().feed(b"data: c\n\n")[0].received_at is None


def test_event_completed_by_a_later_chunk_gets_that_chunks_time() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n", received_at=1.0) == []
    assert parser.feed(b"\n", received_at=2.0)[0].received_at == 2.0


def test_deviation_text_is_truncated() -> None:
    _, deviations = parse(b"x" * 1000 + b"\n\n")
    assert len(deviations[0].text) <= 121
    assert deviations[0].text.endswith("…")


def test_deviations_are_capped_and_counted() -> None:
    parser = SSEParser(max_deviations=10)
    parser.feed(b"junk\n" * 50)
    assert len(parser.deviations) == 10
    assert parser.deviations_dropped == 40


def test_feed_after_finish_is_a_programming_error() -> None:
    parser = SSEParser()
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed(b"data: a\n\n")


def test_long_line_fed_byte_by_byte_stays_linear() -> None:
    parser = SSEParser()
    payload = b'data: {"x": "' + b"y" * 200_000 + b'"}\n\n'
    events: list[Event] = []
    for index in range(0, len(payload), 7):
        events += parser.feed(payload[index : index + 7])
    assert len(events) == 1 and len(events[0].data) == 200_000 + 9


def test_to_dict_is_json_safe() -> None:
    events, deviations = parse(b"event: x\ndata: a\n\n")
    assert events[0].to_dict()["data"] == "a"
    assert deviations[0].to_dict()["kind"] == "event-field"
    assert type(deviations[0].to_dict()["kind"]) is str


def test_deviation_kinds_are_stable_codes() -> None:
    assert {kind.value for kind in DeviationKind} >= {
        "invalid-utf8",
        "unterminated-event",
        "unknown-field",
        "multi-line-data",
        "field-without-colon",
        "event-field",
        "id-field",
        "retry-field",
        "bom",
    }


# -- properties --------------------------------------------------------------------------------

_data_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
)
_line_end = st.sampled_from([b"\n", b"\r\n", b"\r"])


def _chunked(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    return [body[start:end] for start, end in zip([0, *points], [*points, len(body)], strict=True)]


@st.composite
def _serialised_stream(draw: st.DrawFn) -> tuple[list[str], bytes]:
    """Events as a conforming server writes them, with any line ends and interleaved comments."""
    datas = draw(st.lists(_data_text, max_size=8))
    body = b""
    for data in datas:
        if draw(st.booleans()):
            body += b": " + draw(_data_text).encode() + draw(_line_end)
        first = draw(_line_end)
        # A CR then an LF would be one CRLF line end, not the blank line that ends the event.
        second = draw(_line_end.filter(lambda end, first=first: first + end != b"\r\n"))
        body += b"data: " + data.encode() + first + second
    return datas, body


@settings(max_examples=300)
@given(_serialised_stream(), st.lists(st.integers(min_value=0), max_size=12))
def test_any_serialisation_and_chunking_parses_back(
    stream: tuple[list[str], bytes], cuts: list[int]
) -> None:
    datas, body = stream
    events, deviations = _feed_all(_chunked(body, cuts))
    assert [event.data for event in events] == datas
    assert [event.number for event in events] == list(range(1, len(datas) + 1))
    assert deviations == []


def _without_final_lf(events: list[Event]) -> list[Event]:
    """Hide the one documented effect of chunking: the LF of a dispatching CRLF split off."""
    return [
        Event(**{**event.to_dict(), "raw": event.raw.removesuffix("\r\n") + "\r"})
        if event.raw.endswith("\r\n")
        else event
        for event in events
    ]


_hostile_bytes = st.lists(
    st.sampled_from(
        [b"data", b"data:", b": ", b":", b" ", b"\r", b"\n", b"\r\n", b"id", b"event", b"retry",
         b"x", b"0", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xa9", b"\x00", b"[DONE]", b"{}"]
    ),
    max_size=60,
).map(b"".join)  # fmt: skip


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=300), _hostile_bytes), st.lists(st.integers(min_value=0)))
def test_garbage_never_raises_and_chunking_never_matters(body: bytes, cuts: list[int]) -> None:
    whole_events, whole_deviations = parse(body)
    events, deviations = _feed_all(_chunked(body, cuts))
    assert _without_final_lf(events) == _without_final_lf(whole_events)
    assert deviations == whole_deviations
    for deviation in deviations:
        assert 0 <= deviation.offset <= len(body)
        assert deviation.line >= 1
        assert isinstance(deviation.kind, DeviationKind)
    for number, event in enumerate(events, start=1):
        assert event.number == number
        assert 0 <= event.offset < len(body)
