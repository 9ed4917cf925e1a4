"""The schema and grammar limits on their own: what passes, what is refused, and how fast."""

from __future__ import annotations

import time
from typing import Any

import pytest

from reference.engine import InvalidGrammar
from reference.schema_limits import (
    MAX_ALTERNATIVES,
    MAX_GRAMMAR_BYTES,
    MAX_GRAMMAR_NESTING,
    MAX_GRAMMAR_RULES,
    MAX_OPTIONAL_PROPERTIES,
    MAX_REPETITION,
    MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_NODES,
    SchemaTooLarge,
    check_grammar,
    check_schema,
)


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


def _properties(count: int, *, required: bool) -> dict[str, Any]:
    names = [f"p{i}" for i in range(count)]
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {n: {"type": "string"} for n in names},
    }
    if required:
        schema["required"] = names
    return schema


FINE: dict[str, Any] = {
    "empty": {},
    "not a mapping": True,
    "math reasoning": {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                    "required": ["explanation", "output"],
                    "additionalProperties": False,
                },
            },
            "final_answer": {"type": "string"},
        },
        "required": ["steps", "final_answer"],
    },
    "bounds at the limit": {
        "type": "array",
        "minItems": MAX_REPETITION,
        "maxItems": MAX_REPETITION,
        "items": {"type": "string", "maxLength": MAX_REPETITION, "pattern": "^a{0,1000}$"},
    },
    "enum at the limit": {"enum": list(range(MAX_ALTERNATIVES))},
    "optional properties at the limit": _properties(MAX_OPTIONAL_PROPERTIES, required=False),
    "2400 required properties": _properties(2400, required=True),
    "nesting at the limit": _nested(MAX_SCHEMA_DEPTH - 1),
    "odd values left to the converter": {"maxItems": "many", "required": [{"x": 1}], "enum": 3},
}

REFUSED: dict[str, tuple[Any, str]] = {
    "maxItems": ({"maxItems": 1_000_000}, "'maxItems' is 1000000 at /maxItems"),
    "minItems deep inside": (
        {"properties": {"a": {"items": {"minItems": MAX_REPETITION + 1}}}},
        "at /properties/a/items/minItems",
    ),
    "float bound": ({"maxLength": 1e300}, "'maxLength' is 1e+300"),
    "pattern bound": ({"pattern": "^x{5,2000}$"}, "'pattern' repeats {5,2000} times"),
    "pattern open bound": ({"pattern": "^x{5000,}$"}, "'pattern' repeats {5000,} times"),
    "pattern length": ({"pattern": "a" * 1001}, "'pattern' is 1001 characters long"),
    "enum": ({"enum": list(range(MAX_ALTERNATIVES + 1))}, "'enum' values"),
    "enum values spread out": (
        {"properties": {f"p{i}": {"enum": list(range(100))} for i in range(11)}},
        "optional properties in all",
    ),
    "optional properties": (
        _properties(MAX_OPTIONAL_PROPERTIES + 1, required=False),
        f"an object has {MAX_OPTIONAL_PROPERTIES + 1} optional properties",
    ),
    "optional properties of allOf": (
        {"allOf": [_properties(60, required=True), _properties(60, required=True)]},
        "an object has 120 optional properties",
    ),
    "nesting": (_nested(MAX_SCHEMA_DEPTH), "objects and arrays nest too deep"),
    "values": ({"required": list(range(MAX_SCHEMA_NODES))}, "too many JSON values"),
}


@pytest.mark.parametrize("case", sorted(FINE))
def test_reasonable_schemas_pass(case: str) -> None:
    check_schema(FINE[case])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_schemas_beyond_a_limit_are_refused_with_the_limit(case: str) -> None:
    schema, said = REFUSED[case]
    with pytest.raises(SchemaTooLarge) as caught:
        check_schema(schema)
    assert isinstance(caught.value, InvalidGrammar)  # a 400, as every grammar the engine refuses
    assert said in str(caught.value)
    assert "; the limit is " in str(caught.value)


def test_huge_schemas_are_refused_fast_and_without_recursion() -> None:
    deep: dict[str, Any] = {}
    for _ in range(100_000):  # deeper than any recursive walk would survive
        deep = {"items": deep}
    wide = {"enum": list(range(2_000_000))}
    many = {"properties": {f"p{i}": {"enum": [1]} for i in range(200_000)}, "required": []}
    for schema in (deep, wide, many):
        started = time.perf_counter()
        with pytest.raises(SchemaTooLarge):
            check_schema(schema)
        assert time.perf_counter() - started < 0.5


def test_grammars_within_the_limits_pass() -> None:
    check_grammar('root ::= "[" ( item ( "," item )* )? "]"\nitem ::= [0-9]+ # digits')
    # Parentheses inside literals, classes and comments are text, not structure.
    check_grammar('root ::= "' + "(" * 5000 + '" [(((] # ' + "(" * 5000 + "\n")
    check_grammar("root ::= " + "(" * MAX_GRAMMAR_NESTING + '"a"' + ")" * MAX_GRAMMAR_NESTING)


@pytest.mark.parametrize(
    ("grammar", "said"),
    [
        ('root ::= "' + "a" * MAX_GRAMMAR_BYTES + '"', "its grammar is"),
        ("root ::= " + "(" * 30_000 + '"a"' + ")?" * 30_000, "its grammar makes 60001 rules"),
        (
            "root ::= " + "(" * (MAX_GRAMMAR_NESTING + 1) + '"a"' + ")" * (MAX_GRAMMAR_NESTING + 1),
            f"its grammar nests {MAX_GRAMMAR_NESTING + 1} groups deep",
        ),
        (
            "\n".join(f'r{i} ::= r{i + 1} "a"' for i in range(MAX_GRAMMAR_RULES + 1)),
            f"its grammar makes {MAX_GRAMMAR_RULES + 1} rules",
        ),
    ],
    ids=["bytes", "rules-and-groups", "nesting", "rule-chain"],
)
def test_grammars_beyond_a_limit_are_refused(grammar: str, said: str) -> None:
    with pytest.raises(SchemaTooLarge, match="the limit is") as caught:
        check_grammar(grammar)
    assert said in str(caught.value)
