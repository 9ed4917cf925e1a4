"""Stream-level rules: what schemathesis cannot see because it judges one event at a time.

Each ``check_*`` function judges one requirement over one observed stream and returns its
findings (empty: the stream keeps the rule). They are pure: a :class:`StreamObservation` holds
everything they read, built from a live :class:`conformance.exchange.StreamResult` or, in
tests, from raw bytes.

Chunk-level rules (ids, role, finish_reason, usage) read only the events whose data is a JSON
object with a ``choices`` list; malformed events are :func:`check_event_json`'s business, so
that one fault fails one requirement.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from conformance.checks._answers import choices
from conformance.checks._finding import Finding, Validator, schema_problems
from conformance.exchange import StreamResult
from conformance.sse import Deviation, Event, parse

__all__ = [
    "DONE",
    "EVENT_STREAM",
    "STREAM_CHECKS",
    "Chunk",
    "StreamObservation",
    "check_content_type",
    "check_done_last",
    "check_ends",
    "check_error_event",
    "check_event_json",
    "check_finish_once",
    "check_framing",
    "check_ids_constant",
    "check_role_first",
    "check_usage",
    "streamed_texts",
]

DONE = "[DONE]"
EVENT_STREAM = "text/event-stream"
_SHOWN = 5  # how many offending items a message lists before "and N more"


@dataclass(frozen=True)
class Chunk:
    """An event whose data is a JSON object with a ``choices`` list: a completion chunk."""

    number: int
    body: Mapping[str, Any]


@dataclass(frozen=True)
class StreamObservation:
    """One streamed response as the checks see it.

    ``ended_by`` is how reading ended (``eof``: the server closed it; ``deadline``; ``stalled``:
    silent for longer than the suite's bound on silence; ``too-large``; ``error``; ``stopped``).
    ``include_usage`` says whether the request asked for a usage chunk. ``timeout`` is the
    deadline the stream was read under and ``failure`` the transport's word on why reading
    ended early, if it did (both for messages).
    """

    status: int | None
    media_type: str | None
    events: Sequence[Event]
    deviations: Sequence[Deviation]
    ended_by: str
    raw: bytes = b""
    include_usage: bool = False
    timeout: float | None = None
    headers: Sequence[tuple[str, str]] = field(default_factory=tuple)
    failure: str | None = None

    @classmethod
    def from_result(
        cls, result: StreamResult, *, include_usage: bool, timeout: float | None = None
    ) -> StreamObservation:
        """Build one from what :meth:`conformance.transport.Transport.stream_events` returned."""
        exchange = result.exchange
        return cls(
            status=exchange.status,
            media_type=exchange.media_type,
            events=tuple(result.events),
            deviations=tuple(result.deviations),
            ended_by=result.ended_by,
            raw=result.raw,
            include_usage=include_usage,
            timeout=timeout,
            headers=tuple(exchange.headers),
            failure=None if exchange.failure is None else exchange.failure.message,
        )

    @classmethod
    def from_bytes(
        cls,
        body: bytes,
        *,
        status: int = 200,
        media_type: str | None = EVENT_STREAM,
        ended_by: str = "eof",
        include_usage: bool = False,
    ) -> StreamObservation:
        """Build one from a complete body, as if the server had sent exactly these bytes."""
        events, deviations = parse(body)
        if ended_by != "eof":  # the suite cut it off: an unfinished event is not the server's fault
            deviations = [d for d in deviations if d.kind != "unterminated-event"]
        return cls(
            status, media_type, tuple(events), tuple(deviations), ended_by, body, include_usage
        )

    @property
    def accepted(self) -> bool:
        """Whether the server accepted the request (2xx): only then do the stream rules apply."""
        return self.status is not None and 200 <= self.status < 300

    @cached_property
    def chunks(self) -> tuple[Chunk, ...]:
        """The events before the first ``[DONE]`` that are completion chunks, in order.

        What follows ``[DONE]`` is :func:`check_done_last`'s business alone.
        """
        found = []
        for event in self.events:
            if event.data == DONE:
                break
            body = _json_object(event.data)
            if body is not None and isinstance(body.get("choices"), list):
                found.append(Chunk(event.number, body))
        return tuple(found)

    @cached_property
    def error_events(self) -> tuple[int, ...]:
        """Numbers of events that carry an error body instead of a chunk (a failure after 200)."""
        return tuple(
            event.number
            for event in self.events
            if (body := _json_object(event.data)) is not None
            and "choices" not in body
            and "errorCode" in body
        )


def _json_object(data: str) -> dict[str, Any] | None:
    if data == DONE:
        return None
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _listed(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:_SHOWN])
    more = len(numbers) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------------- checks


def check_content_type(obs: StreamObservation) -> list[Finding]:
    """STREAM-CONTENT-TYPE: an accepted stream request gets 200 and text/event-stream."""
    found = []
    if obs.status != 200:
        found.append(f"the accepted stream request was answered {obs.status}, not 200")
    if obs.media_type != EVENT_STREAM:
        found.append(f"Content-Type is {obs.media_type!r}, not {EVENT_STREAM!r}")
    return [Finding("STREAM-CONTENT-TYPE", "; ".join(found) + ".")] if found else []


def check_framing(obs: StreamObservation) -> list[Finding]:
    """STREAM-FRAMING: no deviation from WHATWG framing or from ``data: <JSON>`` + blank line."""
    if obs.media_type != EVENT_STREAM or not obs.deviations:
        return []
    kinds = sorted({str(d.kind) for d in obs.deviations})
    first = obs.deviations[0]
    message = (
        f"{len(obs.deviations)} framing deviation(s) ({', '.join(kinds)}); the first, at line "
        f"{first.line} (byte {first.offset}): {first.message}."
    )
    details = {"deviations": [d.to_dict() for d in obs.deviations[:20]]}
    return [Finding("STREAM-FRAMING", message, details=details)]


def check_event_json(obs: StreamObservation, chunk_validator: Validator | None) -> list[Finding]:
    """STREAM-EVENT-JSON: every event but [DONE] is JSON valid against the chunk schema."""
    bad: list[int] = []
    first_problem = ""
    for event in obs.events:
        if event.data == DONE:
            continue
        try:
            value = json.loads(event.data)
        except ValueError as error:
            problem = f"event {event.number}'s data is not JSON ({error})"
        else:
            problems = schema_problems(chunk_validator, value) if chunk_validator else []
            if not problems:
                continue
            problem = f"event {event.number} does not match the chunk schema {problems[0]}"
        bad.append(event.number)
        first_problem = first_problem or problem
    if not bad:
        return []
    message = f"{len(bad)} event(s) are not valid chunks (events {_listed(bad)}); {first_problem}."
    return [Finding("STREAM-EVENT-JSON", message, event_numbers=tuple(bad))]


def check_done_last(obs: StreamObservation) -> list[Finding]:
    """STREAM-DONE-LAST: ``[DONE]`` exactly once, as the last event, with nothing after it."""
    done = [event for event in obs.events if event.data == DONE]
    if not done:
        how = "the server closed it" if obs.ended_by == "eof" else f"reading ended ({obs.ended_by})"
        return [
            Finding(
                "STREAM-DONE-LAST",
                f"no 'data: [DONE]' event among the {len(obs.events)} received before {how}.",
            )
        ]
    problems = []
    numbers = tuple(event.number for event in done)
    if len(done) > 1:
        problems.append(f"[DONE] came {len(done)} times (events {_listed(numbers)})")
    after = [
        event.number for event in obs.events if event.number > done[0].number and event.data != DONE
    ]
    if after:
        problems.append(
            f"{len(after)} event(s) followed the first [DONE] (events {_listed(after)})"
        )
    trailing = _bytes_after(obs.raw, done[-1])
    if not after and trailing.strip(b"\r\n"):
        problems.append(f"bytes followed [DONE]: {trailing[:80]!r}")
    if not problems:
        return []
    return [Finding("STREAM-DONE-LAST", "; ".join(problems) + ".", event_numbers=numbers)]


def _bytes_after(raw: bytes, event: Event) -> bytes:
    """The bytes of the stream after ``event`` (its raw text includes the closing blank line)."""
    end = event.offset + len(event.raw.encode("utf-8", "replace"))
    return raw[end:] if raw and end <= len(raw) else b""


def check_ids_constant(obs: StreamObservation) -> list[Finding]:
    """STREAM-IDS-CONSTANT: every chunk has the first chunk's ``id``, ``created`` and ``model``."""
    if not obs.chunks:
        return []
    keys = ("id", "created", "model")
    first = obs.chunks[0]
    reference = {key: first.body.get(key) for key in keys}
    differing = []
    first_difference = ""
    for chunk in obs.chunks[1:]:
        changed = [key for key in keys if chunk.body.get(key) != reference[key]]
        if changed:
            differing.append(chunk.number)
            if not first_difference:
                key = changed[0]
                first_difference = (
                    f"event {chunk.number} has {key} {chunk.body.get(key)!r} where event "
                    f"{first.number} had {reference[key]!r}"
                )
    if not differing:
        return []
    message = f"{len(differing)} chunk(s) change id/created/model mid-stream; {first_difference}."
    return [Finding("STREAM-IDS-CONSTANT", message, event_numbers=tuple(differing))]


def _choices_by_index(obs: StreamObservation) -> dict[Any, list[tuple[int, Mapping[str, Any]]]]:
    by_index: dict[Any, list[tuple[int, Mapping[str, Any]]]] = {}
    for chunk in obs.chunks:
        for choice in choices(chunk.body):
            by_index.setdefault(choice.get("index"), []).append((chunk.number, choice))
    return by_index


def check_role_first(obs: StreamObservation) -> list[Finding]:
    """STREAM-ROLE-FIRST: each choice's first chunk has ``delta.role == "assistant"``."""
    found = []
    for index, entries in _choices_by_index(obs).items():
        number, choice = entries[0]
        delta = choice.get("delta")
        role = delta.get("role") if isinstance(delta, Mapping) else None
        if role != "assistant":
            found.append(
                Finding(
                    "STREAM-ROLE-FIRST",
                    f"choice {index}'s first chunk (event {number}) has delta.role {role!r}, "
                    "not 'assistant'.",
                    event_numbers=(number,),
                )
            )
    return found


def check_finish_once(obs: StreamObservation) -> list[Finding]:
    """STREAM-FINISH-ONCE: each choice has a non-null ``finish_reason`` in exactly one chunk.

    A stream that failed after its 200 (an error event) has unfinished choices by design.
    """
    if obs.error_events:
        return []
    by_index = _choices_by_index(obs)
    if not by_index:
        if obs.chunks:
            return [Finding("STREAM-FINISH-ONCE", "no chunk of the stream carries a choice.")]
        return []
    found = []
    for index, entries in by_index.items():
        finishing = [
            number for number, choice in entries if choice.get("finish_reason") is not None
        ]
        if len(finishing) != 1:
            where = f" (events {_listed(finishing)})" if finishing else ""
            found.append(
                Finding(
                    "STREAM-FINISH-ONCE",
                    f"choice {index} has a non-null finish_reason in {len(finishing)} chunks"
                    f"{where}, not exactly one.",
                    event_numbers=tuple(finishing),
                )
            )
    return found


def check_usage(obs: StreamObservation) -> list[Finding]:
    """STREAM-USAGE: the usage chunk comes iff asked for, last, with ``choices: []``.

    With ``include_usage``, every other chunk carries ``"usage": null``, the key present;
    without it, no chunk carries a non-null ``usage``.
    """
    if obs.error_events or not obs.chunks:
        return []
    with_usage = [c for c in obs.chunks if c.body.get("usage") is not None]
    problems: list[str] = []
    if obs.include_usage:
        usage_chunks = [c for c in with_usage if c.body.get("choices") == []]
        if len(usage_chunks) != 1:
            problems.append(
                f"include_usage was asked for, but {len(usage_chunks)} chunks have choices [] "
                "and a usage object (expected exactly one)"
            )
        elif usage_chunks[0] is not obs.chunks[-1]:
            problems.append(
                f"the usage chunk (event {usage_chunks[0].number}) is not the last chunk "
                "before [DONE]"
            )
        others = [c.number for c in with_usage if c not in usage_chunks]
        if others:
            problems.append(
                f"chunks other than the usage chunk carry usage (events {_listed(others)})"
            )
        absent = [c.number for c in obs.chunks if "usage" not in c.body]
        if absent:
            problems.append(
                f"{len(absent)} chunk(s) lack the usage key (events {_listed(absent)}): with "
                'include_usage every other chunk carries "usage": null, present, as OpenAI '
                "documents"
            )
    elif with_usage:
        numbers = [c.number for c in with_usage]
        problems.append(
            f"include_usage was not asked for, but {len(numbers)} chunk(s) carry usage "
            f"(events {_listed(numbers)})"
        )
    if not problems:
        return []
    numbers = tuple(c.number for c in with_usage) or tuple(
        c.number for c in obs.chunks if "usage" not in c.body
    )
    return [Finding("STREAM-USAGE", "; ".join(problems) + ".", event_numbers=numbers)]


def check_error_event(obs: StreamObservation) -> list[Finding]:
    """STREAM-ERROR-EVENT: a failure after the 200 is one error event, then ``[DONE]`` alone.

    The error event's shape is STREAM-EVENT-JSON's (the event schema allows the 500 body);
    this rule judges what surrounds it: no second error, and no chunk after it.
    """
    if not obs.error_events:
        return []
    first = obs.error_events[0]
    problems = []
    if len(obs.error_events) > 1:
        problems.append(
            f"{len(obs.error_events)} error events (events {_listed(obs.error_events)}), not one"
        )
    after = [chunk.number for chunk in obs.chunks if chunk.number > first]
    if after:
        problems.append(
            f"{len(after)} chunk(s) came after the error event {first} (events {_listed(after)})"
        )
    if not problems:
        return []
    return [
        Finding(
            "STREAM-ERROR-EVENT",
            "; ".join(problems) + ": an error after the 200 is exactly one event with the 500 "
            "body, followed by [DONE] alone.",
            event_numbers=(*obs.error_events, *after),
        )
    ]


def check_ends(obs: StreamObservation) -> list[Finding]:
    """STREAM-ENDS: the server closed the stream before the deadline and the size cap.

    A stream the suite cut off because it stayed silent (``stalled``: the target had already
    left an answer open past the timeout, so the suite bounds silence) fails too.
    """
    last = obs.events[-1].data[:60] if obs.events else "nothing"
    if obs.ended_by == "deadline":
        limit = f" {obs.timeout:g} s" if obs.timeout else ""
        return [
            Finding(
                "STREAM-ENDS",
                f"the stream was still open when the{limit} request timeout passed "
                f"({len(obs.events)} events received; the last: {last!r}).",
            )
        ]
    if obs.ended_by == "stalled":
        silence = obs.failure or "nothing more arrived"
        return [
            Finding(
                "STREAM-ENDS",
                f"the stream stalled, still open: {silence} after {len(obs.events)} events "
                f"(the last: {last!r}). An earlier answer from this target was still open when "
                "the request timeout passed, so the suite waits no longer on a silent one.",
            )
        ]
    if obs.ended_by == "too-large":
        return [
            Finding(
                "STREAM-ENDS",
                f"the stream did not end before the size cap ({len(obs.raw)} bytes, "
                f"{len(obs.events)} events).",
            )
        ]
    return []


STREAM_CHECKS: Mapping[str, Callable[[StreamObservation, Validator | None], list[Finding]]] = {
    "STREAM-CONTENT-TYPE": lambda obs, _: check_content_type(obs),
    "STREAM-FRAMING": lambda obs, _: check_framing(obs),
    "STREAM-EVENT-JSON": check_event_json,
    "STREAM-DONE-LAST": lambda obs, _: check_done_last(obs),
    "STREAM-IDS-CONSTANT": lambda obs, _: check_ids_constant(obs),
    "STREAM-ROLE-FIRST": lambda obs, _: check_role_first(obs),
    "STREAM-FINISH-ONCE": lambda obs, _: check_finish_once(obs),
    "STREAM-USAGE": lambda obs, _: check_usage(obs),
    "STREAM-ERROR-EVENT": lambda obs, _: check_error_event(obs),
    "STREAM-ENDS": lambda obs, _: check_ends(obs),
}
"""Every stream requirement and the function that judges it (``(observation, chunk_validator)``)."""


def streamed_texts(obs: StreamObservation) -> dict[Any, str]:
    """The text of each choice, joined from its deltas (``delta.content``, else ``text``)."""
    texts: dict[Any, str] = {}
    for chunk in obs.chunks:
        for choice in choices(chunk.body):
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, Mapping) else None
            if piece is None:
                piece = choice.get("text")
            texts.setdefault(choice.get("index"), "")
            if isinstance(piece, str):
                texts[choice.get("index")] += piece
    return texts
