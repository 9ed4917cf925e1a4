"""Request validation from the contract: read the body, parse it, validate it, explain what failed.

A failure is a 422 whose `detail` has FastAPI's shape (`loc`, `msg`, `type`, with pydantic's
message wording), because the seed is a FastAPI service and clients of it read that shape.

Why not a library: `jsonschema` validates and `openapi-core` wraps it, but neither turns a
`jsonschema` error into a pydantic-style `loc`/`msg`/`type`, nor picks the branch a discriminator
names when a `oneOf` fails (without it, a message with a bad `role` reports six unrelated errors).

Speed: `jsonschema` walks a 3 MB body of 80,000 chat messages in 28 s of CPU, which would let any
client pin a core per request. So `jsonschema_rs` (Rust; already a dependency of schemathesis)
decides first, in about 10 ms. A valid body stops there. For an invalid one, its errors say where
to look, and `jsonschema` explains only those places, against the same schemas of the contract.

Bounded work: `jsonschema_rs` builds all of a body's errors before it returns the first, so a
body of more than `EXPLAIN_NODES` JSON values has its errors found by `reference.error_search`,
which cuts it down first; and a failing place larger than that is explained by its failing
keyword alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import falcon.asgi
import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from reference.error_search import Located, locate
from reference.errors import RequestValidationError
from spec import Contract, Operation

__all__ = [
    "EXPLAIN_NODES",
    "MAX_DETAIL_ITEMS",
    "OperationValidator",
    "detail_items",
    "is_json_media_type",
    "parse_json_body",
]

MAX_DETAIL_ITEMS = 100
"""A 422 lists at most this many problems, so that a huge invalid body costs bounded work."""

EXPLAIN_NODES = 2000
"""Bodies (and places in them) with more JSON values than this: explained at their first error."""

_THREAD_PARSE_BYTES = 64 * 1024
"""Larger bodies are parsed and validated off the event loop, so other requests keep flowing."""

Detail = dict[str, Any]


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a request's Content-Type means JSON: absent, `application/json` or `*/*+json`."""
    if not content_type or not content_type.strip():
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or ("/" in media and media.endswith("+json"))


class _NonStandardConstant(ValueError):
    """Python's json accepts NaN and Infinity; JSON does not."""


def _reject_constant(name: str) -> Any:
    raise _NonStandardConstant(f"{name} is not valid JSON")


def parse_json_body(data: bytes, content_type: str | None) -> Any:
    """Decode a request body as strict JSON (UTF-8, no NaN or Infinity); 422 if it is not."""
    if not is_json_media_type(content_type):
        raise RequestValidationError.single(
            ["body"],
            f"Content-Type {content_type!r} is not JSON; send application/json",
            "model_attributes_type",
        )
    if not data:
        raise RequestValidationError.single(["body"], "Field required", "missing")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestValidationError.single(
            ["body", error.start],
            f"JSON decode error: invalid UTF-8 at byte {error.start}",
            "json_invalid",
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise RequestValidationError.single(
            ["body", error.pos], f"JSON decode error: {error.msg}", "json_invalid"
        ) from None
    except RecursionError:
        raise RequestValidationError.single(
            ["body"], "JSON decode error: nested too deeply", "json_invalid"
        ) from None
    except _NonStandardConstant as error:
        raise RequestValidationError.single(
            ["body"], f"JSON decode error: {error}", "json_invalid"
        ) from None
    except ValueError:
        # Python refuses to parse integers longer than sys.get_int_max_str_digits().
        raise RequestValidationError.single(
            ["body"], "JSON decode error: a number has too many digits", "json_invalid"
        ) from None


# ---------------------------------------------------------------- jsonschema errors → detail items

_TYPES = {
    "string": ("string_type", "Input should be a valid string"),
    "integer": ("int_type", "Input should be a valid integer"),
    "number": ("float_type", "Input should be a valid number"),
    "boolean": ("bool_type", "Input should be a valid boolean"),
    "object": ("dict_type", "Input should be a valid dictionary"),
    "array": ("list_type", "Input should be a valid list"),
    "null": ("none_required", "Input should be None"),
}
_BOUNDS = {
    "minimum": ("greater_than_equal", "greater than or equal to"),
    "maximum": ("less_than_equal", "less than or equal to"),
    "exclusiveMinimum": ("greater_than", "greater than"),
    "exclusiveMaximum": ("less_than", "less than"),
}


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return str(value)


def _choices(values: Iterable[Any]) -> str:
    quoted = [repr(v) if isinstance(v, str) else json.dumps(v) for v in values if v is not None]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _item(loc: list[str | int], msg: str, type_: str) -> Detail:
    return {"loc": loc, "msg": msg, "type": type_}


def _describe(error: ValidationError, loc: list[str | int]) -> Detail:
    """One leaf error as pydantic would word it."""
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.relative_schema_path and isinstance(instance, str):
        # jsonschema reports a bad key at the object; pydantic names the key itself.
        loc = [*loc, instance]
    if keyword == "required":
        missing = next((name for name in expected if name not in instance), None)
        return _item([*loc, missing] if missing else loc, "Field required", "missing")
    if keyword == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        name = next((n for n in names if n != "null"), "null")
        type_, msg = _TYPES.get(name, ("value_error", f"Input should be of type {name}"))
        return _item(loc, msg, type_)
    if keyword in _BOUNDS:
        type_, words = _BOUNDS[keyword]
        return _item(loc, f"Input should be {words} {_number(expected)}", type_)
    if keyword in ("minLength", "maxLength"):
        short = keyword == "minLength"
        bound = "at least" if short else "at most"
        msg = f"String should have {bound} {_plural(expected, 'character')}"
        return _item(loc, msg, "string_too_short" if short else "string_too_long")
    if keyword in ("minItems", "maxItems", "minProperties", "maxProperties"):
        short = keyword.startswith("min")
        bound = "at least" if short else "at most"
        noun = "item" if keyword.endswith("Items") else "property"
        kind = "List" if noun == "item" else "Object"
        msg = f"{kind} should have {bound} {_plural(expected, noun)}"
        if noun == "property" and expected != 1:
            msg = msg.replace("propertys", "properties")
        return _item(loc, msg, "too_short" if short else "too_long")
    if keyword == "enum":
        return _item(loc, f"Input should be {_choices(expected)}", "enum")
    if keyword == "const":
        return _item(loc, f"Input should be {_choices([expected])}", "literal_error")
    if keyword == "pattern":
        return _item(loc, f"String should match pattern {expected!r}", "string_pattern_mismatch")
    if keyword in ("oneOf", "anyOf") and not error.context:
        return _item(loc, "Input matches more than one allowed form", "value_error")
    message = error.message if len(error.message) <= 200 else f"{error.message[:200]}…"
    return _item(loc, message, "value_error")


def _location(error: ValidationError, prefix: str) -> list[str | int]:
    return [prefix, *error.absolute_path]


def _discriminated(error: ValidationError, prefix: str) -> Iterator[Detail] | None:
    """For a failed `oneOf` with a discriminator, the errors of the branch the tag names."""
    discriminator = error.schema.get("discriminator") if isinstance(error.schema, Mapping) else None
    if not isinstance(discriminator, Mapping) or not error.context:
        return None
    loc = _location(error, prefix)
    instance, tag_name = error.instance, discriminator.get("propertyName")
    mapping: Mapping[str, str] = discriminator.get("mapping", {})
    if not isinstance(instance, Mapping):
        return iter([_item(loc, _TYPES["object"][1], _TYPES["object"][0])])
    if tag_name not in instance:
        return iter([_item([*loc, tag_name], "Field required", "missing")])
    tag = instance[tag_name]
    if not isinstance(tag, str) or tag not in mapping:
        msg = (
            f"Input tag {tag!r} found using {tag_name!r} does not match any of the expected "
            f"tags: {', '.join(repr(t) for t in mapping)}"
        )
        return iter([_item([*loc, tag_name], msg, "union_tag_invalid")])
    branches = [
        index
        for index, branch in enumerate(error.schema.get("oneOf", []))
        if isinstance(branch, Mapping) and branch.get("$ref") == mapping[tag]
    ]
    chosen = [
        e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] in branches
    ]
    if not chosen:
        return None
    return _leaves(chosen, prefix)


def _mismatch(error: ValidationError) -> int:
    """How far a branch error is from "right shape, wrong detail": 0 near, 2 wrong shape."""
    if not error.relative_path and error.validator in ("type", "const", "enum"):
        return 2
    if len(error.relative_path) == 1 and error.validator in ("const", "enum"):
        return 1  # a tag-like field (`type: "text"`) names another branch
    return 0


def _closest_branch(error: ValidationError, prefix: str) -> Iterator[Detail]:
    """The errors of the `oneOf`/`anyOf` branch closest to the instance.

    So that the message says what is wrong with the input in the form it was meant to have,
    rather than why every other form failed. `best_match` picks one leaf by depth and keyword,
    which for `stop: ""` blames the array branch; comparing whole branches gets it right.
    """
    branches: dict[int, list[ValidationError]] = {}
    for sub in error.context:
        index = sub.relative_schema_path[0] if sub.relative_schema_path else 0
        branches.setdefault(int(index), []).append(sub)
    ranked = sorted(
        branches.items(), key=lambda kv: (max(_mismatch(e) for e in kv[1]), len(kv[1]), kv[0])
    )
    best_errors = ranked[0][1]
    if max(_mismatch(e) for e in best_errors) < 2:
        yield from _leaves(best_errors, prefix)
        return
    # No branch has the instance's shape: say which shapes would do.
    names: list[str] = []
    for _, errors in ranked:
        for sub in errors:
            if sub.validator == "type" and not sub.relative_path:
                expected = sub.validator_value
                for name in [expected] if isinstance(expected, str) else expected:
                    if name != "null" and name in _TYPES and name not in names:
                        names.append(name)
    if not names:
        yield _describe(best_match(error.context) or error, _location(error, prefix))
        return
    wanted = [_TYPES[name][1].removeprefix("Input should be ") for name in names]
    listed = wanted[0] if len(wanted) == 1 else f"{', '.join(wanted[:-1])} or {wanted[-1]}"
    yield _item(_location(error, prefix), f"Input should be {listed}", _TYPES[names[0]][0])


def _leaves(errors: Iterable[ValidationError], prefix: str) -> Iterator[Detail]:
    for error in errors:
        if error.validator in ("oneOf", "anyOf") and error.context:
            branch = _discriminated(error, prefix)
            if branch is not None:
                yield from branch
                continue
            yield from _closest_branch(error, prefix)
            continue
        yield _describe(error, _location(error, prefix))


def detail_items(
    errors: Iterable[ValidationError], *, prefix: str = "body", limit: int = MAX_DETAIL_ITEMS
) -> list[Detail]:
    """FastAPI-style detail items for jsonschema errors, one per error, at most `limit`."""
    items: list[Detail] = []
    for item in _leaves(errors, prefix):
        items.append(item)
        if len(items) >= limit:
            break
    return items


# ---------------------------------------------------------------- one operation


_FAST_URI = "urn:mimic-reference:contract"


def _pointer(segments: Iterable[str | int]) -> str:
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in segments)


class _FastCheck:
    """`jsonschema_rs` over the contract: is a body valid, and if not, where to explain why."""

    def __init__(self, contract: Contract, pointer: str) -> None:
        # The contract holds only JSON types once parsed from YAML; str() covers the odd date.
        document = json.loads(json.dumps(contract.document, default=str))
        registry = jsonschema_rs.Registry([(_FAST_URI, document)])
        self._validator = jsonschema_rs.Draft202012Validator(
            {"$ref": f"{_FAST_URI}#{pointer}"}, registry=registry
        )
        self._contract = contract

    def is_valid(self, document: Any) -> bool:
        return bool(self._validator.is_valid(document))

    def explain(self, document: Any, limit: int) -> list[Detail]:
        """Detail items for an invalid document: each failing place, explained by `jsonschema`.

        An error's `schema_path` is absolute in the document: without its keyword, it is the
        schema that applies to the instance at `instance_path` (for `propertyNames`, the one
        holding it applies to the object), so `jsonschema` can judge just that instance.
        """
        items: dict[tuple[str, str, str], Detail] = {}
        seen: set[tuple[tuple[str | int, ...], str]] = set()
        located = locate(
            document,
            self._validator,
            is_large=lambda value: _larger_than(value, EXPLAIN_NODES),
            error_type=jsonschema_rs.ValidationError,
            limit=limit,
        )
        for error in located:
            schema_path = list(error.schema_path)
            if "propertyNames" in schema_path:
                cut = len(schema_path) - 1 - schema_path[::-1].index("propertyNames")
                schema_path = schema_path[:cut]
            else:
                schema_path = schema_path[:-1]
            place = (error.path, _pointer(schema_path))
            if place in seen:
                continue
            seen.add(place)
            if _larger_than(error.instance, EXPLAIN_NODES):
                found = [self._keyword_alone(error, place[1])]
            else:
                validator = self._contract.validator(place[1])
                found = detail_items(validator.iter_errors(error.instance), limit=limit)
            for item in found:
                item = {**item, "loc": ["body", *error.real_path(tuple(item["loc"][1:]))]}
                # A place may be explained twice: as an instance and inside its parent.
                items.setdefault((json.dumps(item["loc"]), item["type"], item["msg"]), item)
            if len(items) >= limit:
                break
        return list(items.values())[:limit]

    def _keyword_alone(self, error: Located, pointer: str) -> Detail:
        """A large instance judged by the one keyword that failed, if it reads no subschema."""
        keyword = error.schema_path[-1] if error.schema_path else None
        schema = self._contract.resolve(pointer) if keyword in _LEAF_KEYWORDS else None
        if isinstance(schema, Mapping) and keyword in schema:
            alone = Draft202012Validator({keyword: schema[keyword]})
            found = detail_items(alone.iter_errors(error.instance), limit=1)
            if found:
                return found[0]
        message = error.message if len(error.message) <= 200 else f"{error.message[:200]}…"
        return _item(["body"], message, "value_error")


#: Keywords that judge an instance without a subschema (and in time linear in its size).
_LEAF_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "required",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "pattern",
    }
)


def _larger_than(value: Any, budget: int) -> bool:
    """Whether `value` holds more than `budget` JSON values (containers and scalars alike).

    Stops counting at the budget, so a huge body costs no more than a small one.
    """
    count = 0
    pending = [value]
    while pending:
        count += 1
        if count > budget:
            return True
        current = pending.pop()
        if isinstance(current, Mapping):
            pending.extend(itertools.islice(current.values(), budget + 1 - count))
        elif isinstance(current, list):
            pending.extend(current[: budget + 1 - count])
    return False


class OperationValidator:
    """Validates one operation's path parameters and JSON body with the contract's validators.

    Built once per operation at start-up; `validate_body` returns the body with `null` values of
    top-level fields removed, because the contract treats `null` for an optional field as absent.
    """

    def __init__(self, contract: Contract, operation: Operation, *, max_body_bytes: int) -> None:
        self.operation = operation
        self.max_body_bytes = max_body_bytes
        self._body: Draft202012Validator | None = contract.request_validator(operation)
        pointer = operation.request_body_pointers.get("application/json")
        self._fast = _FastCheck(contract, pointer) if pointer is not None else None
        self._path: dict[str, Draft202012Validator] = {
            parameter.name: contract.validator(parameter.schema_pointer)
            for parameter in operation.parameters
            if parameter.location == "path"
        }

    @property
    def takes_body(self) -> bool:
        """Whether the operation has a JSON request body."""
        return self._body is not None

    def check_path(self, params: Mapping[str, str]) -> None:
        """Raise a 422 for path parameters outside their schema (loc `["path", name]`)."""
        items: list[Detail] = []
        for name, validator in self._path.items():
            value = params.get(name)
            if value is None:
                items.append(_item(["path", name], "Field required", "missing"))
                continue
            error = next(iter(validator.iter_errors(value)), None)
            if error is not None:
                for item in detail_items([error], prefix="path", limit=1):
                    items.append({**item, "loc": ["path", name, *item["loc"][1:]]})
        if items:
            raise RequestValidationError(items)

    def validate_body(self, document: Any) -> dict[str, Any]:
        """Validate a parsed body; return it without top-level nulls, or raise a 422."""
        if self._body is None:
            raise TypeError(f"{self.operation.label} takes no request body")
        if not isinstance(document, dict):
            raise RequestValidationError.single(
                ["body"], "Input should be a valid dictionary or object", "model_attributes_type"
            )
        try:
            items = self._explain(document)
        except RecursionError:
            items = [_item(["body"], "Input is nested too deeply", "value_error")]
        if items:
            raise RequestValidationError(items)
        return {key: value for key, value in document.items() if value is not None}

    def _explain(self, document: dict[str, Any]) -> list[Detail]:
        """No items for a valid document; else what is wrong with it."""
        assert self._body is not None
        if self._fast is not None:
            try:
                if self._fast.is_valid(document):
                    return []
                items = self._fast.explain(document, MAX_DETAIL_ITEMS)
                if items:
                    return items
            except (ValueError, TypeError, OverflowError, jsonschema_rs.ValidationError):
                pass  # a value the fast validator cannot take: jsonschema judges alone
        return detail_items(self._body.iter_errors(document))

    def parse_and_validate(self, data: bytes, content_type: str | None) -> dict[str, Any]:
        """Parse then validate raw body bytes."""
        return self.validate_body(parse_json_body(data, content_type))

    async def read_body(self, req: falcon.asgi.Request) -> dict[str, Any]:
        """Read the request's body (at most `max_body_bytes`), parse and validate it."""
        limit = self.max_body_bytes
        too_large = RequestValidationError.single(
            ["body"], f"body larger than {limit} bytes", "too_long"
        )
        if req.content_length is not None and req.content_length > limit:
            raise too_large
        data = await req.stream.read(limit + 1)
        if len(data) > limit:
            raise too_large
        if len(data) > _THREAD_PARSE_BYTES:
            return await asyncio.to_thread(self.parse_and_validate, data, req.content_type)
        return self.parse_and_validate(data, req.content_type)
