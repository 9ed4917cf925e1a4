"""A strict, incremental parser for server-sent events that reports every deviation.

It implements the WHATWG HTML "event stream interpretation" (section 9.2.6) exactly: UTF-8
decoding, one optional leading BOM, CRLF / LF / CR line ends (a CR that ends one chunk and an LF
that starts the next are one line end), comment lines, the field/value split on the first colon
with one optional space stripped, the ``data``/``event``/``id``/``retry`` fields, data lines
joined with LF, dispatch on a blank line, and no dispatch of an event left unterminated at the
end of the stream.

Why not httpx-sse or sseclient: both are lenient by design. They join multi-line data, skip
junk, tolerate unterminated events and never say so, which is right for a client and wrong for
a conformance suite. The Mimic contract (its stream x-mimic-decision) is narrower than WHATWG:
each event is exactly ``data: <one JSON object>`` and a blank line, comments allowed. So this
parser produces the events a browser would, and beside them a :class:`Deviation` for everything
that differs from that narrow shape, with its line number and byte offset. Each deviation says
whether WHATWG itself allows it (``legal``); the checks decide what level each one deserves.
The suite's rules for reading streams are in ``VERDICTS.md`` ("Event-stream parsing").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Deviation", "DeviationKind", "Event", "SSEParser", "parse"]

_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"[\r\n]")
_CR, _LF = 0x0D, 0x0A
_TEXT_LIMIT = 120


class DeviationKind(StrEnum):
    """Stable codes for the ways a stream can differ from ``data: <JSON>`` + blank line."""

    INVALID_UTF8 = "invalid-utf8"
    BOM = "bom"
    UNTERMINATED_EVENT = "unterminated-event"
    UNTERMINATED_LINE = "unterminated-line"
    UNKNOWN_FIELD = "unknown-field"
    MULTI_LINE_DATA = "multi-line-data"
    DATA_WITHOUT_SPACE = "data-without-space"
    FIELD_WITHOUT_COLON = "field-without-colon"
    EVENT_FIELD = "event-field"
    ID_FIELD = "id-field"
    RETRY_FIELD = "retry-field"
    EVENT_WITHOUT_DATA = "event-without-data"


# Whether the WHATWG grammar (stream = [bom] *event; every line ends with an end-of-line)
# admits the construct; everything else it admits is merely outside the Mimic contract.
_LEGAL_PER_WHATWG: dict[DeviationKind, bool] = {
    DeviationKind.INVALID_UTF8: False,
    DeviationKind.BOM: True,
    DeviationKind.UNTERMINATED_EVENT: False,
    DeviationKind.UNTERMINATED_LINE: False,
    DeviationKind.UNKNOWN_FIELD: True,
    DeviationKind.MULTI_LINE_DATA: True,
    DeviationKind.DATA_WITHOUT_SPACE: True,
    DeviationKind.FIELD_WITHOUT_COLON: True,
    DeviationKind.EVENT_FIELD: True,
    DeviationKind.ID_FIELD: True,
    DeviationKind.RETRY_FIELD: True,
    DeviationKind.EVENT_WITHOUT_DATA: True,
}


@dataclass(frozen=True)
class Event:
    """One dispatched event, as a WHATWG-conforming client would see it.

    ``number`` counts dispatched events from 1. ``event_type`` is ``None`` when no ``event``
    field set one (clients then use ``"message"``); ``id`` is the stream's last event ID at
    dispatch, ``None`` if no ``id`` field has been seen. ``raw`` holds the exact lines of the
    event, comments and final blank line included (except that when the CRLF of that blank line
    is split between two chunks, its LF is missing: the event is dispatched as soon as its CR
    arrives, as WHATWG says, not one chunk later); ``offset`` is the byte offset of its first
    line in the stream; ``received_at`` is the arrival time (seconds since the stream started)
    of the chunk that completed it, or ``None`` if nobody supplied a time.
    """

    number: int
    data: str
    event_type: str | None
    id: str | None
    raw: str
    offset: int
    received_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of all fields."""
        return asdict(self)


@dataclass(frozen=True)
class Deviation:
    """A place where the stream departs from ``data: <one JSON object>`` + blank line.

    ``line`` is 1-based, ``offset`` is the byte offset (in the raw stream, BOM included) where
    the offending construct starts, ``text`` is the offending text truncated to 120
    characters, and ``legal`` says whether WHATWG's grammar allows the construct at all.
    """

    kind: DeviationKind
    line: int
    offset: int
    text: str
    message: str
    legal: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict of all fields (``kind`` as its string code)."""
        return {**asdict(self), "kind": str(self.kind)}


def _truncate(text: str, limit: int = _TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class SSEParser:
    r"""Incremental WHATWG event-stream parser that records deviations instead of hiding them.

    Feed it the body in whatever chunks the network delivers; it never raises on bad input.

    >>> parser = SSEParser()
    >>> [event.data for event in parser.feed(b'data: {"a": 1}\n\ndata: [DO')]
    ['{"a": 1}']
    >>> [event.data for event in parser.feed(b"NE]\n\n")]
    ['[DONE]']
    >>> parser.finish(), parser.deviations
    ([], [])

    ``clock``, if given, returns seconds since the stream started; it stamps events whose
    ``feed`` call passes no ``received_at``. At most ``max_deviations`` deviations are kept (a
    hostile stream can produce millions); the rest are only counted in ``deviations_dropped``.
    """

    def __init__(
        self, *, clock: Callable[[], float] | None = None, max_deviations: int = 1000
    ) -> None:
        if max_deviations < 0:
            raise ValueError("max_deviations must not be negative")
        self._clock = clock
        self._max_deviations = max_deviations
        self.deviations_dropped = 0
        """How many deviations were found beyond ``max_deviations`` and not kept."""
        self._buffer = bytearray()
        self._buffer_offset = 0  # stream offset of self._buffer[0]
        self._scanned = 0  # bytes of self._buffer already searched for a line end
        self._bom_checked = False
        self._skip_lf = False
        self._finished = False
        self._line_number = 0
        self._dispatched = 0
        self._last_event_id: str | None = None
        self._retry: int | None = None
        self._reset_block()
        self.deviations: list[Deviation] = []
        """Every deviation found so far, in stream order."""

    @property
    def retry(self) -> int | None:
        """The last valid ``retry`` value (milliseconds) the stream set, if any."""
        return self._retry

    @property
    def bytes_seen(self) -> int:
        """How many bytes have been fed so far."""
        return self._buffer_offset + len(self._buffer)

    def feed(self, chunk: bytes, received_at: float | None = None) -> list[Event]:
        """Parse another piece of the body; return the events it completed, in order."""
        if self._finished:
            raise RuntimeError("SSEParser.feed() called after finish()")
        if received_at is None and self._clock is not None:
            received_at = self._clock()
        self._buffer += chunk
        if not self._bom_checked and not self._consume_bom(final=False):
            return []
        if self._skip_lf and self._buffer:
            if self._buffer[0] == _LF:
                self._consume(1)
                if self._block_raw:
                    self._block_raw[-1] += "\n"
            self._skip_lf = False
        return self._split_lines(received_at)

    def finish(self) -> list[Event]:
        """Signal the end of the stream; return the events it completes.

        Always an empty list: WHATWG discards an event that was not ended by a blank line. The
        loss is recorded as an ``unterminated-event`` deviation (or ``unterminated-line`` when
        only a partial comment was cut off).
        """
        if self._finished:
            return []
        self._finished = True
        if not self._bom_checked:
            self._consume_bom(final=True)
        partial = bytes(self._buffer)
        partial_offset = self._buffer_offset
        if partial:
            self._line_number += 1
            self._decode(partial, partial_offset)
        pending_event = self._data_lines or self._block_has_fields
        partial_is_field = bool(partial) and not partial.startswith(b":")
        if pending_event or partial_is_field:
            raw = "".join(self._block_raw) + partial.decode("utf-8", "replace")
            if self._block_start is None:
                offset, line = partial_offset, self._line_number
            else:
                offset, line = self._block_start, self._block_start_line
            self._deviate(
                DeviationKind.UNTERMINATED_EVENT,
                offset,
                raw,
                "the stream ended inside an event (no blank line after it); "
                "WHATWG clients discard it",
                line=line,
            )
        elif partial:
            self._deviate(
                DeviationKind.UNTERMINATED_LINE,
                partial_offset,
                partial.decode("utf-8", "replace"),
                "the stream ended in the middle of a line",
            )
        self._buffer.clear()
        return []

    # -- internals ------------------------------------------------------------------------

    def _reset_block(self) -> None:
        self._data_lines: list[str] = []
        self._event_type = ""
        self._block_raw: list[str] = []
        self._block_start: int | None = None
        self._block_start_line = 0
        self._block_has_fields = False

    def _consume(self, count: int) -> None:
        del self._buffer[:count]
        self._buffer_offset += count
        self._scanned = max(0, self._scanned - count)

    def _consume_bom(self, *, final: bool) -> bool:
        """Strip one leading BOM; return False while too few bytes decide whether there is one."""
        head = bytes(self._buffer[:3])
        if not final and len(head) < 3 and _BOM.startswith(head):
            return False
        self._bom_checked = True
        if head == _BOM:
            self._deviate(
                DeviationKind.BOM,
                0,
                "\ufeff",
                "the stream starts with a byte order mark (stripped, as WHATWG says)",
                line=1,
            )
            self._consume(3)
        return True

    def _split_lines(self, received_at: float | None) -> list[Event]:
        events: list[Event] = []
        buffer = self._buffer
        start = 0
        position = self._scanned
        while True:
            match = _LINE_END.search(buffer, position)
            if match is None:
                break
            end = match.start()
            if buffer[end] == _CR:
                if end + 1 < len(buffer):
                    after = end + 2 if buffer[end + 1] == _LF else end + 1
                else:
                    after = end + 1
                    self._skip_lf = True  # an LF that opens the next chunk belongs to this CR
            else:
                after = end + 1
            event = self._process_line(
                bytes(buffer[start:end]),
                bytes(buffer[start:after]),
                self._buffer_offset + start,
                received_at,
            )
            if event is not None:
                events.append(event)
            start = position = after
        self._consume(start)
        self._scanned = len(self._buffer)
        return events

    def _decode(self, line: bytes, offset: int) -> str:
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError as error:
            text = line.decode("utf-8", "replace")
            self._deviate(
                DeviationKind.INVALID_UTF8,
                offset + error.start,
                text,
                f"invalid UTF-8 at byte {offset + error.start} ({error.reason}); "
                "decoded with U+FFFD replacement characters",
            )
            return text

    def _process_line(
        self, line: bytes, raw: bytes, offset: int, received_at: float | None
    ) -> Event | None:
        self._line_number += 1
        text = self._decode(line, offset)
        if not text:
            self._block_raw.append(raw.decode("utf-8", "replace"))
            return self._dispatch(received_at)
        if self._block_start is None:
            self._block_start = offset
            self._block_start_line = self._line_number
        self._block_raw.append(raw.decode("utf-8", "replace"))
        if text.startswith(":"):
            return None
        self._block_has_fields = True
        name, colon, value = text.partition(":")
        if not colon:
            self._deviate(
                DeviationKind.FIELD_WITHOUT_COLON,
                offset,
                text,
                f"line {text!r} has no colon: WHATWG reads it as field {text!r} with an "
                "empty value",
            )
        elif value.startswith(" "):
            value = value[1:]
        elif name == "data" and value:
            self._deviate(
                DeviationKind.DATA_WITHOUT_SPACE,
                offset,
                text,
                "no space after 'data:' (legal, but the contract writes 'data: <JSON>')",
            )
        self._apply_field(name, value, text, offset, reported=not colon)
        return None

    def _apply_field(
        self, name: str, value: str, text: str, offset: int, *, reported: bool
    ) -> None:
        """Apply one field as WHATWG says; report it unless the line was already reported."""
        if name == "data":
            if self._data_lines and not reported:
                self._deviate(
                    DeviationKind.MULTI_LINE_DATA,
                    offset,
                    text,
                    f"data line {len(self._data_lines) + 1} of one event: clients join the "
                    "lines with a newline",
                )
            self._data_lines.append(value)
        elif name == "event":
            self._event_type = value
            if not reported:
                self._deviate(
                    DeviationKind.EVENT_FIELD,
                    offset,
                    text,
                    f"'event' field sets the event type to {value!r}: clients listening for "
                    "'message' events never see this one",
                )
        elif name == "id":
            ignored = "\x00" in value
            if not ignored:
                self._last_event_id = value
            if not reported:
                note = " (ignored: it contains U+0000)" if ignored else ""
                self._deviate(DeviationKind.ID_FIELD, offset, text, f"'id' field {value!r}{note}")
        elif name == "retry":
            valid = value.isascii() and value.isdigit()
            if valid:
                self._retry = int(value)
            if not reported:
                note = "" if valid else " (ignored: not only ASCII digits)"
                self._deviate(
                    DeviationKind.RETRY_FIELD, offset, text, f"'retry' field {value!r}{note}"
                )
        elif not reported:
            self._deviate(
                DeviationKind.UNKNOWN_FIELD,
                offset,
                text,
                f"unknown field {name!r} (WHATWG clients ignore it)",
            )

    def _dispatch(self, received_at: float | None) -> Event | None:
        if not self._data_lines:
            if self._block_has_fields:
                raw = "".join(self._block_raw[:-1])  # the fields, not the blank line
                assert self._block_start is not None
                self._deviate(
                    DeviationKind.EVENT_WITHOUT_DATA,
                    self._block_start,
                    raw,
                    "a block of fields without a 'data' field ended: WHATWG dispatches nothing",
                    line=self._block_start_line,
                )
            self._reset_block()
            return None
        self._dispatched += 1
        assert self._block_start is not None
        event = Event(
            number=self._dispatched,
            data="\n".join(self._data_lines),
            event_type=self._event_type or None,
            id=self._last_event_id,
            raw="".join(self._block_raw),
            offset=self._block_start,
            received_at=received_at,
        )
        self._reset_block()
        return event

    def _deviate(
        self, kind: DeviationKind, offset: int, text: str, message: str, *, line: int = 0
    ) -> None:
        if len(self.deviations) >= self._max_deviations:
            self.deviations_dropped += 1
            return
        self.deviations.append(
            Deviation(
                kind=kind,
                line=max(line or self._line_number, 1),
                offset=offset,
                text=_truncate(text),
                message=message,
                legal=_LEGAL_PER_WHATWG[kind],
            )
        )


def parse(body: bytes) -> tuple[list[Event], list[Deviation]]:
    """Parse a complete stream at once; return its events and deviations."""
    parser = SSEParser()
    events = parser.feed(body)
    events += parser.finish()
    return events, parser.deviations
