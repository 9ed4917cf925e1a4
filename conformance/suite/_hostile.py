"""The hostile requests of the ``ROBUST-*`` requirements, built from each operation's spec example.

Each sample is the operation's deterministic probe body (``_probe.plain_body``, a few
tokens) with one field made hostile, and only fields the operation's request schema has:
``response_format`` and forced tools for schemas costly as grammars, the body's main list
(``messages``, ``prompt``), ``stop`` and ``logit_bias`` for floods, every string and key position
for lone surrogates.

A flood is a body of megabytes. Its :class:`Flood` writes it, and also writes a one-line shell
command that prints the same bytes, so that the curl command of a failure stays short enough
to paste (see :attr:`conformance.exchange.RequestSpec.body_source`).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conformance.exchange import RequestSpec
from conformance.suite._operations import MODEL_FIELD, path_values, request_schema
from conformance.suite._probe import plain_body
from conformance.suite._requests import json_request
from conformance.suite._run import Run
from spec import Operation

__all__ = [
    "HOSTILE_TOKENS",
    "Flood",
    "Sample",
    "flood_samples",
    "follow_up",
    "schema_bomb_samples",
    "unencodable_samples",
]

HOSTILE_TOKENS = 4
"""``max_tokens`` of every hostile sample: a server that serves one does little work."""
FLOOD_ITEMS = 1_000_000
"""Items of a flooded list: about 2 MB of JSON, under the contract's 4 MiB body limit."""
FLOOD_KEYS = 200_000
"""Keys of a flooded map (``logit_bias``): about 2.4 MB of JSON."""
OVERSIZED_BYTES = 5 * 1024 * 1024
"""The text of the over-the-limit body: 5 MiB, over the contract's 4 MiB."""
LONE_SURROGATE = "\ud800"
"""A UTF-16 code unit alone: JSON may carry it as an escape, UTF-8 cannot encode it."""

_HOLE = "mimic-conformance-flood-goes-here"


@dataclass(frozen=True)
class Sample:
    """One hostile request and what it is, in words for a report."""

    what: str
    request: RequestSpec


@dataclass(frozen=True)
class Flood:
    """JSON text ``head + sep.join(unit, count times) + tail``; ``%d`` in ``unit`` numbers items."""

    head: str
    unit: str
    count: int
    tail: str
    sep: str = ","

    def text(self) -> str:
        """The whole body."""
        if "%d" in self.unit:
            items = self.sep.join(self.unit % i for i in range(self.count))
        else:
            items = self.sep.join([self.unit] * self.count)
        return self.head + items + self.tail

    def shell_command(self) -> str:
        """A ``python3 -c`` command that prints exactly :meth:`text`."""
        if "%d" in self.unit:
            items = f"{self.sep!r}.join({self.unit!r} % i for i in range({self.count}))"
        else:
            items = f"{self.sep!r}.join([{self.unit!r}] * {self.count})"
        program = f"import sys; sys.stdout.write({self.head!r} + {items} + {self.tail!r})"
        return f"python3 -c {shlex.quote(program)}"

    @classmethod
    def into(
        cls, body: Mapping[str, Any], field: str, unit: str, count: int, *, kind: str = "list"
    ) -> Flood:
        """``body`` with ``field`` holding ``count`` items (``kind``: list, map or text)."""
        text = json.dumps({**body, field: _HOLE}, separators=(",", ":"))
        before, after = text.split(json.dumps(_HOLE), 1)
        if kind == "text":
            return cls(before + '"', unit, count, '"' + after, sep="")
        opening, closing = ("[", "]") if kind == "list" else ("{", "}")
        return cls(before + opening, unit, count, closing + after)


def _properties(run: Run, operation: Operation) -> Mapping[str, Any]:
    return request_schema(run.contract, operation)["properties"]


def _base(run: Run, operation: Operation) -> dict[str, Any]:
    return {**plain_body(run, operation), "max_tokens": HOSTILE_TOKENS}


def _json_sample(run: Run, operation: Operation, what: str, body: Mapping[str, Any]) -> Sample:
    return Sample(what, json_request(run.contract, operation, dict(body)))


def _text_field(properties: Mapping[str, Any]) -> str | None:
    """The body's main list of input: ``messages`` (chat) or ``prompt`` (completions)."""
    return next((name for name in ("messages", "prompt") if name in properties), None)


# ------------------------------------------------------------------ schemas costly as grammars


def _nested_arrays(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


BOMBS: Mapping[str, dict[str, Any]] = {
    "a json_schema of an array with maxItems 1,000,000 (220 bytes)": {
        "type": "array",
        "items": {"type": "integer"},
        "maxItems": 1_000_000,
    },
    "a json_schema of arrays nested 500 deep": _nested_arrays(500),
    "a json_schema with an enum of 10,000 strings": {
        "type": "string",
        "enum": [f"value-{i}" for i in range(10_000)],
    },
    "a json_schema whose pattern repeats a group up to 1,000,000 times": {
        "type": "string",
        "pattern": "^(ab){0,1000000}$",
    },
}
"""Schemas that are small as JSON and huge, deep or slow as a grammar."""


def schema_bomb_samples(run: Run, operation: Operation) -> list[Sample]:
    """Each bomb as a ``response_format``, and the first as a forced tool's parameters."""
    properties, base = _properties(run, operation), _base(run, operation)
    samples = []
    if "response_format" in properties:
        for what, schema in BOMBS.items():
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            }
            samples.append(
                _json_sample(run, operation, what, {**base, "response_format": response_format})
            )
    if "tools" in properties and "tool_choice" in properties:
        what, schema = next(iter(BOMBS.items()))
        what = what.replace("json_schema", "forced tool's parameters")
        parameters = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
        tool = {"type": "function", "function": {"name": "bomb", "parameters": parameters}}
        body = {
            **base,
            "tools": [tool],
            "tool_choice": {"type": "function", "function": {"name": "bomb"}},
        }
        samples.append(_json_sample(run, operation, what, body))
    return samples


# ------------------------------------------------------------------ floods


def _flood_sample(run: Run, operation: Operation, what: str, flood: Flood) -> Sample:
    request = json_request(run.contract, operation, {})
    body = flood.text().encode()
    return Sample(
        what,
        RequestSpec(
            request.method, request.url, request.headers, body, body_source=flood.shell_command()
        ),
    )


def flood_samples(run: Run, operation: Operation) -> list[Sample]:
    """Floods of whichever of these fields the operation has, and a body over the limit.

    A million wrong items in the main list and in ``stop``, 200,000 wrong ``logit_bias`` keys.
    """
    properties, base = _properties(run, operation), _base(run, operation)
    samples = []
    main = _text_field(properties)
    if main is not None:
        flood = Flood.into(base, main, "1", FLOOD_ITEMS)
        samples.append(
            _flood_sample(run, operation, f"{main} holding {FLOOD_ITEMS:,} integers", flood)
        )
    if "stop" in properties:
        flood = Flood.into(base, "stop", "1", FLOOD_ITEMS)
        samples.append(
            _flood_sample(run, operation, f"stop holding {FLOOD_ITEMS:,} integers", flood)
        )
    if "logit_bias" in properties:
        flood = Flood.into(base, "logit_bias", '"k%d":1', FLOOD_KEYS, kind="map")
        what = f"logit_bias with {FLOOD_KEYS:,} keys that are not token ids"
        samples.append(_flood_sample(run, operation, what, flood))
    if main is not None:
        # An extra field, accepted and ignored when the body is within the limit.
        flood = Flood.into(base, "mimic_conformance_padding", "a", OVERSIZED_BYTES, kind="text")
        what = f"a body of {OVERSIZED_BYTES // 2**20} MiB (over the 4 MiB limit)"
        samples.append(_flood_sample(run, operation, what, flood))
    return samples


# ------------------------------------------------------------------ lone surrogates


def _surrogate_sample(run: Run, operation: Operation, what: str, body: Any) -> Sample:
    r"""``body`` as ASCII JSON: a lone surrogate leaves as an escape (``\ud800``)."""
    request = json_request(run.contract, operation, {})
    data = json.dumps(body, separators=(",", ":")).encode("ascii")
    return Sample(what, RequestSpec(request.method, request.url, request.headers, data))


def unencodable_samples(run: Run, operation: Operation) -> list[Sample]:
    """A lone surrogate in each string and key position the operation's body has."""
    properties, base = _properties(run, operation), _base(run, operation)
    lone = LONE_SURROGATE
    bodies: dict[str, Any] = {}
    if "messages" in properties:
        bodies["a message's content"] = {**base, "messages": [{"role": "user", "content": lone}]}
        bodies["a message's role"] = {**base, "messages": [{"role": lone, "content": "hi"}]}
    if "prompt" in properties:
        bodies["the prompt"] = {**base, "prompt": "x" + lone}
        if "echo" in properties:
            bodies["the prompt, echoed"] = {**base, "prompt": "x" + lone, "echo": True}
    if "stop" in properties:
        bodies["a stop sequence"] = {**base, "stop": [lone]}
    if "logit_bias" in properties:
        bodies["a logit_bias key"] = {**base, "logit_bias": {lone: 1}}
    if "metadata" in properties:
        bodies["a metadata key"] = {**base, "metadata": {lone: "v"}}
        bodies["a metadata value"] = {**base, "metadata": {"k": lone * 600}}
    if MODEL_FIELD in properties and MODEL_FIELD not in path_values(run.contract, operation):
        bodies["the model"] = {**base, MODEL_FIELD: lone}
    bodies["an unknown field's name and value"] = {**base, lone: lone}
    return [_surrogate_sample(run, operation, what, body) for what, body in bodies.items()]


def follow_up(run: Run, operation: Operation) -> RequestSpec:
    """The valid request that must be served after each hostile one: the probe, one token."""
    return json_request(run.contract, operation, {**plain_body(run, operation), "max_tokens": 1})
