"""Bounds on the JSON schemas and grammars that constrain generation, checked before any work.

A schema becomes a GBNF grammar (llama-cpp-python's `json_schema_to_gbnf`), which llama.cpp parses
and then walks at every sampled token. Each step can be made arbitrarily expensive by a few hundred
bytes of request:

- A repetition bound is expanded in place: `maxItems: N` becomes `N` nested optional groups, which
  llama.cpp's recursive-descent parser enters one C stack frame (about 450 bytes) per level. A
  220-byte request with `maxItems: 1000000` overflowed the 8 MiB stack and killed the server;
  `minItems: 10**8` would first build a string of gigabytes.
- Rules whose first element is another rule make chains that llama.cpp follows recursively, about
  120 bytes of stack per rule: a chain of 80,000 killed the main thread, 20,000 a 2 MiB thread.
- The converter's work grows with the square of an object's optional properties: 300 took 0.14 s,
  900 took 3 s, on the event loop (twice per request: when it is planned and when it runs).
- Every alternative still open is a grammar stack that each token is matched against: an `enum` of
  1,000 values sharing a prefix cost 0.3 to 1.6 s per token (SmolLM2, 2 cores), 10,000 about 3 s.

So `check_schema` walks the schema (iteratively, at most `MAX_SCHEMA_NODES` steps, 10 ms at the
limit) before it is converted, and `check_grammar` measures the grammar text (one pass with regular
expressions, 15 ms for 100 KB) before llama.cpp parses it. Either raises `SchemaTooLarge`, an
`InvalidGrammar` (a 400 that names the field), with the limit it exceeds.

Why these numbers. OpenAI's structured outputs accept at most 10 levels of nesting, 5,000 object
properties and 1,000 enum values in all. Real schemas are far smaller: OpenAI's examples have 15 to
40 JSON values, a 30-parameter tool 110, an invoice with 40 fields, 430 enum values and 100 line
items 611 (17 KB of grammar, 500 groups deep). llama.cpp itself refuses a grammar that repeats more
than 2,000 rules (`MAX_REPETITION_THRESHOLD`), which rejects `maxItems` or `maxLength` above about
1,030, so `MAX_REPETITION` takes nothing a client has today. A schema at every limit (2,400
properties, or three arrays of 1,000 strings of 1,000 characters) makes at most 160 KB of grammar,
12,000 rules and 1,000 groups of nesting, and converts in under 50 ms. The grammar limits keep
what reaches llama.cpp inside what it survives with Linux's 8 MiB stacks (the main thread's and
every Python thread's): nesting of 1,100 uses 0.5 MiB where 20,000 crashed, a chain of at most
20,000 rules 2.4 MiB where 80,000 crashed. On a 2 MiB stack a chain would need 15,000 rules in a
row, which no schema within the schema limits makes (their chains follow its nesting, at most 64).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from reference.engine import InvalidGrammar

__all__ = [
    "MAX_ALTERNATIVES",
    "MAX_GRAMMAR_BYTES",
    "MAX_GRAMMAR_NESTING",
    "MAX_GRAMMAR_RULES",
    "MAX_OPTIONAL_PROPERTIES",
    "MAX_PATTERN_CHARS",
    "MAX_REPETITION",
    "MAX_SCHEMA_DEPTH",
    "MAX_SCHEMA_NODES",
    "SchemaTooLarge",
    "check_grammar",
    "check_schema",
]

MAX_SCHEMA_NODES = 10_000
"""JSON values in one schema (objects, arrays, strings, numbers...): 90 times a big tool's."""

MAX_SCHEMA_DEPTH = 64
"""Nesting of objects and arrays in one schema: about 30 levels of properties (OpenAI: 10)."""

MAX_REPETITION = 1_000
"""The largest `minItems`, `maxItems`, `minLength`, `maxLength`, `minProperties`,
`maxProperties`, or `{m,n}` bound in a `pattern`: llama.cpp refuses a little more anyway."""

MAX_ALTERNATIVES = 500
"""`enum` values, `anyOf`/`oneOf` branches and optional properties in one schema, counted together.

Each open alternative is matched against every token: an `enum` of strings sharing a prefix took
at most 0.45 s per token at 250 or 500 values, and 1.59 s at 1,000 (SmolLM2, 2 cores of an AVX2
EPYC), so a client that leaves waits up to a token's time to be stopped. 500 keeps that under a
second where 1,000 did not; OpenAI accepts 1,000 enum values in all."""

MAX_OPTIONAL_PROPERTIES = 100
"""Properties one object may leave out: the converter's work grows with their square (700 took
1.4 s), and each is also an alternative."""

MAX_PATTERN_CHARS = 1_000
"""The longest `pattern`: a date, an e-mail address or a UUID takes under 200 characters."""

MAX_GRAMMAR_BYTES = 1024 * 1024
"""The largest grammar: the biggest schemas measured within the limits above make 160 KB."""

MAX_GRAMMAR_NESTING = 1_100
"""Deepest parenthesis nesting in a grammar: `MAX_REPETITION` optional items, plus a little."""

MAX_GRAMMAR_RULES = 20_000
"""Rules llama.cpp makes of a grammar (definitions, groups, repetitions): the longest chain it
could recurse along."""

_REPETITION_KEYWORDS = (
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
)
_QUANTIFIER = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")
# What in GBNF is not structure: string literals, character classes and comments.
_GBNF_TEXT = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|\[[^\]\\]*(?:\\.[^\]\\]*)*\]|#[^\n]*')
# Each creates a rule in llama.cpp's parser: a definition, a group, a repetition.
_GBNF_RULES = re.compile(r"::=|[(?*+{]")
_NOT_PAREN = re.compile(r"[^()]+")

Trail = tuple[Any, str | int] | None
"""Where a value sits in the schema: its parent's trail and its key, or None at the root."""


class SchemaTooLarge(InvalidGrammar):
    """A schema or grammar beyond one of this module's limits: a 400 that names the limit."""


def _pointer(trail: Trail | bool) -> str:
    steps: list[str] = []
    while isinstance(trail, tuple):
        trail, key = trail
        steps.append(str(key).replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(reversed(steps))


def _refuse(what: str, limit: int, trail: Trail | bool = False) -> SchemaTooLarge:
    """The error; `trail` (None for the schema's root) adds where in the schema it is."""
    where = f" at {_pointer(trail)}" if trail is not False else ""
    return SchemaTooLarge(
        f"the schema is larger than this server accepts: {what}{where}; the limit is {limit}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_pattern(pattern: str, trail: Trail) -> None:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise _refuse(f"'pattern' is {len(pattern)} characters long", MAX_PATTERN_CHARS, trail)
    for match in _QUANTIFIER.finditer(pattern):
        if max(int(number or 0) for number in match.groups()) > MAX_REPETITION:
            raise _refuse(f"'pattern' repeats {match.group(0)} times", MAX_REPETITION, trail)


def _optional_properties(schema: dict[str, Any]) -> int:
    """Properties an object schema may leave out, its `allOf` parts' properties included."""
    properties = schema.get("properties")
    count = len(properties) if isinstance(properties, dict) else 0
    required = schema.get("required")
    if count and isinstance(required, list):
        count -= len({name for name in required if isinstance(name, str)} & properties.keys())
    parts = schema.get("allOf")
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, dict) and isinstance(part.get("properties"), dict):
            count += len(part["properties"])
    return count


def _check_object(schema: dict[str, Any], trail: Trail) -> int:
    """Check one JSON object of a schema; return the alternatives it opens in the grammar."""
    for key in _REPETITION_KEYWORDS:
        bound = schema.get(key)
        if _is_number(bound) and bound > MAX_REPETITION:
            raise _refuse(f"'{key}' is {bound}", MAX_REPETITION, (trail, key))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        _check_pattern(pattern, (trail, "pattern"))
    optional = _optional_properties(schema)
    if optional > MAX_OPTIONAL_PROPERTIES:
        raise _refuse(
            f"an object has {optional} optional properties", MAX_OPTIONAL_PROPERTIES, trail
        )
    alternatives = optional
    for key in ("enum", "anyOf", "oneOf"):
        choices = schema.get(key)
        if isinstance(choices, list):
            alternatives += len(choices)
    return alternatives


def check_schema(schema: Any) -> None:
    """Raise `SchemaTooLarge` if `schema` exceeds a limit; cost bounded by `MAX_SCHEMA_NODES`.

    The walk is iterative and counts a container's items before it visits them, so that a huge
    or deeply nested schema is refused after at most `MAX_SCHEMA_NODES` steps. Every JSON object
    in the schema is checked as if it were a schema (one under `properties`, `default` or
    `examples` too): it may make the count larger, never a limit easier to pass.
    """
    nodes = 1
    alternatives = 0
    stack: list[tuple[Any, int, Trail]] = [(schema, 0, None)]
    while stack:
        value, depth, trail = stack.pop()
        if isinstance(value, dict):
            items: Iterable[tuple[str | int, Any]] = value.items()
            alternatives += _check_object(value, trail)
            if alternatives > MAX_ALTERNATIVES:
                raise _refuse(
                    "too many 'enum' values, 'anyOf'/'oneOf' branches and optional properties "
                    "in all",
                    MAX_ALTERNATIVES,
                    trail,
                )
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if depth >= MAX_SCHEMA_DEPTH:
            raise _refuse("objects and arrays nest too deep", MAX_SCHEMA_DEPTH)
        nodes += len(value)
        if nodes > MAX_SCHEMA_NODES:
            raise _refuse("too many JSON values in all", MAX_SCHEMA_NODES)
        stack.extend((child, depth + 1, (trail, key)) for key, child in items)


def check_grammar(gbnf: str) -> None:
    """Raise `SchemaTooLarge` if GBNF text exceeds a limit llama.cpp's parser needs kept.

    One pass over the text: its size, then, outside string literals, character classes and
    comments, the number of rules and groups and the deepest parenthesis nesting.
    """
    size = len(gbnf.encode("utf-8", "surrogatepass"))
    if size > MAX_GRAMMAR_BYTES:
        raise _refuse(f"its grammar is {size} bytes", MAX_GRAMMAR_BYTES)
    structure = _GBNF_TEXT.sub("", gbnf)
    rules = len(_GBNF_RULES.findall(structure))
    if rules > MAX_GRAMMAR_RULES:
        raise _refuse(f"its grammar makes {rules} rules", MAX_GRAMMAR_RULES)
    parens = _NOT_PAREN.sub("", structure)
    depth = max(accumulate(1 if paren == "(" else -1 for paren in parens), default=0)
    if depth > MAX_GRAMMAR_NESTING:
        raise _refuse(f"its grammar nests {depth} groups deep", MAX_GRAMMAR_NESTING)
