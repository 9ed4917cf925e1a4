"""Which operations of the spec each requirement applies to, read from the spec itself.

Nothing here names a Mimic path: an operation streams if its 200 documents
``text/event-stream``, takes a path model if it has a ``model`` path parameter, and so on. The
field and parameter names used (``model``, ``choices``, ``text``) are those of the OpenAI-style
API family that the requirements are about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from spec import Contract, Operation, Parameter

__all__ = [
    "FIELD_RULES",
    "MODEL_FIELD",
    "SELECTORS",
    "body_model_operations",
    "body_operations",
    "chunk_validator",
    "concrete_path",
    "delta_streaming_operations",
    "enum_path_parameters",
    "field_operations",
    "fill_path",
    "ignored_fields",
    "list_all_models_operation",
    "merged_object",
    "path_model_operations",
    "path_values",
    "request_schema",
    "request_shapes",
    "scoped_models_operations",
    "streaming_operations",
    "text_choice_operations",
    "unknown_route",
]

MODEL_FIELD = "model"
"""The body field and path parameter that choose the model."""

JSON = "application/json"
EVENT_STREAM = "text/event-stream"


def streaming_operations(contract: Contract) -> list[Operation]:
    """Operations whose 200 documents an event stream: the ones that generate text."""
    return [op for op in contract.operations if EVENT_STREAM in contract.response_media(op, 200)]


def body_operations(contract: Contract) -> list[Operation]:
    """Operations that take a JSON request body."""
    return [op for op in contract.operations if JSON in op.request_body_pointers]


def _model_parameter(operation: Operation) -> Parameter | None:
    return next(
        (p for p in operation.parameters if p.location == "path" and p.name == MODEL_FIELD), None
    )


def path_model_operations(contract: Contract) -> list[Operation]:
    """Generating operations whose path names the model."""
    return [op for op in streaming_operations(contract) if _model_parameter(op) is not None]


def body_model_operations(contract: Contract) -> list[Operation]:
    """Operations whose *body* chooses the model: a required ``model`` field, no path model."""
    found = []
    for op in body_operations(contract):
        if _model_parameter(op) is not None:
            continue
        schema = merged_object(contract, op.request_body_pointers[JSON])
        if MODEL_FIELD in schema["required"]:
            found.append(op)
    return found


def _is_models_list(contract: Contract, operation: Operation) -> bool:
    if operation.method != "get" or operation.request_body_pointers:
        return False
    media = contract.response_media(operation, 200).get(JSON)
    if media is None or media.schema_pointer is None:
        return False
    properties = merged_object(contract, media.schema_pointer)["properties"]
    return "data" in properties and not any(
        p.required and p.location != "path" for p in operation.parameters
    )


def list_all_models_operation(contract: Contract) -> Operation | None:
    """The operation that lists every served model: a GET of a ``data`` list, no parameters."""
    return next(
        (op for op in contract.operations if _is_models_list(contract, op) and not op.parameters),
        None,
    )


def scoped_models_operations(contract: Contract) -> list[Operation]:
    """Model lists scoped by a path model."""
    return [
        op
        for op in contract.operations
        if _is_models_list(contract, op) and _model_parameter(op) is not None
    ]


def text_choice_operations(contract: Contract) -> list[Operation]:
    """Generating operations whose JSON choices document a ``text`` field (completions)."""
    found = []
    for op in streaming_operations(contract):
        media = contract.response_media(op, 200).get(JSON)
        if media is None or media.schema_pointer is None:
            continue
        choices = merged_object(contract, media.schema_pointer)["properties"].get("choices")
        items = choices.get("items") if isinstance(choices, Mapping) else None
        if isinstance(items, Mapping) and "text" in _merge(contract, items, set())["properties"]:
            found.append(op)
    return found


def delta_streaming_operations(contract: Contract) -> list[Operation]:
    """Streaming operations whose chunk choices document a ``delta`` (chat-style chunks).

    OpenAI's text completion chunks carry ``text`` and no ``delta``: the rules about deltas
    (the role in the first one) have nothing to judge there.
    """
    found = []
    for op in streaming_operations(contract):
        media = contract.response_media(op, 200).get(EVENT_STREAM)
        pointer = None if media is None or media.item_pointer is None else media.item_pointer
        chunk = _content_schema_pointer(contract, pointer, set()) if pointer else None
        if chunk is None:
            continue
        node = _deref(contract, contract.resolve(chunk), set())
        branches = node.get("oneOf", [node]) if isinstance(node, Mapping) else []
        for branch in branches:
            choices = _merge(contract, branch, set())["properties"].get("choices")
            items = choices.get("items") if isinstance(choices, Mapping) else None
            if (
                isinstance(items, Mapping)
                and "delta" in _merge(contract, items, set())["properties"]
            ):
                found.append(op)
                break
    return found


def _schema_types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a property schema allows, through its ``oneOf`` / ``anyOf`` branches."""
    declared = schema.get("type")
    types = {declared} if isinstance(declared, str) else set(declared or [])
    for key in ("oneOf", "anyOf"):
        for branch in schema.get(key, []):
            if isinstance(branch, Mapping):
                types |= _schema_types(branch)
    return {t for t in types if isinstance(t, str)}


def _is_ignored(schema: Mapping[str, Any]) -> bool:
    return schema.get("x-mimic-ignored") is True


def _offers_audio(schema: Mapping[str, Any]) -> bool:
    items = schema.get("items")
    return isinstance(items, Mapping) and "audio" in items.get("enum", [])


FieldTest = Callable[[Mapping[str, Any]], bool]

FIELD_RULES: Mapping[str, FieldTest] = {
    "best_of": lambda props: "best_of" in props and "n" in props,
    "chat-logprobs": lambda props: (
        "boolean" in _schema_types(props.get("logprobs", {})) and "top_logprobs" in props
    ),
    "legacy-logprobs": lambda props: "integer" in _schema_types(props.get("logprobs", {})),
    "logit_bias": lambda props: "logit_bias" in props,
    "response_format": lambda props: "response_format" in props,
    "tools": lambda props: "tools" in props and "tool_choice" in props,
    "functions": lambda props: "functions" in props and "function_call" in props,
    "prompt-list": lambda props: "array" in _schema_types(props.get("prompt", {})),
    "echo": lambda props: "echo" in props,
    "suffix": lambda props: "suffix" in props,
    "ignored": lambda props: any(_is_ignored(schema) for schema in props.values()),
    "audio": lambda props: _offers_audio(props.get("modalities", {})),
}
"""Which request bodies each FIELD rule applies to, read from the request schema's properties."""


def request_shapes(
    contract: Contract, fits: FieldTest = lambda properties: True
) -> list[Operation]:
    """One generating operation per request shape (the same request fields) that ``fits``.

    Operations that take the same request fields (``/v1/…`` and the path-model variants) are
    judged once: routing is what SCHEMA, STREAM and SEM judge on every path, and a field's
    behaviour costs generation on a slow model.
    """
    found: dict[frozenset[str], Operation] = {}
    for op in streaming_operations(contract):
        properties = request_schema(contract, op)["properties"]
        if fits(properties):
            found.setdefault(frozenset(properties), op)
    return list(found.values())


def field_operations(contract: Contract, rule: str) -> list[Operation]:
    """One generating operation per request shape whose request schema the FIELD rule fits."""
    return request_shapes(contract, FIELD_RULES[rule])


def ignored_fields(contract: Contract, operation: Operation) -> dict[str, dict[str, Any]]:
    """The request fields the spec marks ``x-mimic-ignored``, with their (flattened) schemas."""
    properties = request_schema(contract, operation)["properties"]
    return {name: schema for name, schema in properties.items() if _is_ignored(schema)}


SELECTORS: Mapping[str, Callable[[Contract], list[Operation]]] = {
    "all": lambda contract: list(contract.operations),
    "body": body_operations,
    "streaming": streaming_operations,
    "delta-streaming": delta_streaming_operations,
    "path-model": path_model_operations,
    "body-model": body_model_operations,
    "scoped-models": scoped_models_operations,
    "text-choice": text_choice_operations,
    "request-shapes": request_shapes,
    "chat": lambda contract: request_shapes(contract, lambda properties: "messages" in properties),
    "one-generating": lambda contract: streaming_operations(contract)[:1],
    "no-body": lambda contract: [op for op in contract.operations if not op.request_body_pointers],
    "enum-path": lambda contract: [
        op for op in contract.operations if enum_path_parameters(contract, op)
    ],
    "one-per-path": lambda contract: list(
        {op.path: op for op in reversed(contract.operations)}.values()
    )[::-1],
    **{
        f"field:{rule}": (lambda contract, rule=rule: field_operations(contract, rule))
        for rule in FIELD_RULES
    },
}
"""Named operation selectors, used by the suite's ``requirement(..., applies_to=NAME)`` marks."""


# ------------------------------------------------------------------------------ schemas


def request_schema(contract: Contract, operation: Operation) -> dict[str, Any]:
    """The merged view (properties, required) of an operation's JSON request body schema."""
    pointer = operation.request_body_pointers.get(JSON)
    return merged_object(contract, pointer) if pointer else {"properties": {}, "required": []}


def merged_object(contract: Contract, pointer: str) -> dict[str, Any]:
    """The ``properties`` and ``required`` of the schema at ``pointer``, through refs and allOf.

    Property schemas are resolved (``$ref`` followed, ``allOf`` merged one level) so that their
    ``type``, bounds and ``enum`` can be read.
    """
    return _merge(contract, contract.resolve(pointer), set())


def _deref(contract: Contract, node: Any, seen: set[str]) -> Any:
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#"):
            return {}
        seen = seen | {ref}
        node = contract.resolve(ref[1:])
    return node


def _merge(contract: Contract, node: Any, seen: set[str]) -> dict[str, Any]:
    node = _deref(contract, node, seen)
    merged: dict[str, Any] = {"properties": {}, "required": []}
    if not isinstance(node, Mapping):
        return merged
    for part in node.get("allOf", []):
        sub = _merge(contract, part, seen)
        for name, schema in sub["properties"].items():
            merged["properties"][name] = {**merged["properties"].get(name, {}), **schema}
        merged["required"] += [r for r in sub["required"] if r not in merged["required"]]
    for name, schema in node.get("properties", {}).items():
        resolved = _flatten(contract, schema, seen)
        merged["properties"][name] = {**merged["properties"].get(name, {}), **resolved}
    merged["required"] += [r for r in node.get("required", []) if r not in merged["required"]]
    return merged


def _flatten(contract: Contract, schema: Any, seen: set[str]) -> dict[str, Any]:
    """A property schema with its ``$ref`` and one level of ``allOf`` folded in."""
    schema = _deref(contract, schema, seen)
    if not isinstance(schema, Mapping):
        return {}
    flat = {key: value for key, value in schema.items() if key != "allOf"}
    for part in schema.get("allOf", []):
        part = _deref(contract, part, seen)
        if isinstance(part, Mapping):
            flat = {**part, **flat}
    return flat


# ------------------------------------------------------------------------------ paths


def enum_path_parameters(
    contract: Contract, operation: Operation
) -> list[tuple[Parameter, list[Any]]]:
    """The path parameters whose schema is an enum, with the enum's values."""
    found = []
    for parameter in operation.parameters:
        if parameter.location != "path":
            continue
        schema = _flatten(contract, contract.resolve(parameter.schema_pointer), set())
        values = schema.get("enum")
        if isinstance(values, list) and values:
            found.append((parameter, values))
    return found


def path_values(contract: Contract, operation: Operation, variant: int = 0) -> dict[str, str]:
    """Valid values for every path parameter: the ``variant``-th enum value (cycling)."""
    values: dict[str, str] = {}
    enums = dict((p.name, v) for p, v in enum_path_parameters(contract, operation))
    for parameter in operation.parameters:
        if parameter.location != "path":
            continue
        choices = enums.get(parameter.name)
        values[parameter.name] = str(choices[variant % len(choices)]) if choices else "x"
    return values


def fill_path(template: str, values: Mapping[str, str]) -> str:
    """Put ``values`` into a path template (``/{model}/v1/models``)."""
    path = template
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


def concrete_path(contract: Contract, operation: Operation, variant: int = 0) -> str:
    """The operation's path with valid path parameters filled in."""
    return fill_path(operation.path, path_values(contract, operation, variant))


def unknown_route(contract: Contract) -> str:
    """A path that no operation of the spec matches, whatever the method."""
    for candidate in _route_candidates():
        if not contract.methods_for(candidate):
            return candidate
    raise RuntimeError("could not find a path outside the spec")  # pragma: no cover


def _route_candidates() -> Iterator[str]:
    yield "/mimic-conformance/no/such/route"
    for number in range(100):
        yield f"/mimic-conformance-{number}/no/such/route/{number}"


def chunk_validator(contract: Contract, operation: Operation) -> Any:
    """A validator for the JSON inside one event of the operation's 200 stream, or None.

    The event schema (``itemSchema``) describes ``data`` as a string whose ``contentSchema`` is
    the chunk; JSON Schema treats ``contentSchema`` as an annotation, so validating the event
    does not validate the chunk. This finds the ``contentSchema`` and compiles it.
    """
    media = contract.response_media(operation, 200).get(EVENT_STREAM)
    if media is None or media.item_pointer is None:
        return None
    pointer = _content_schema_pointer(contract, media.item_pointer, set())
    return None if pointer is None else contract.validator(pointer)


def _content_schema_pointer(contract: Contract, pointer: str, seen: set[str]) -> str | None:
    node = contract.resolve(pointer)
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen or not ref.startswith("#"):
            return None
        seen = seen | {ref}
        pointer = ref[1:]
        node = contract.resolve(pointer)
    if not isinstance(node, Mapping):
        return None
    if "contentSchema" in node:
        return pointer + "/contentSchema"
    for key in ("properties",):
        if isinstance(node.get(key), Mapping) and "data" in node[key]:
            found = _content_schema_pointer(contract, f"{pointer}/{key}/data", seen)
            if found:
                return found
    for key in ("oneOf", "anyOf", "allOf"):
        for index, _ in enumerate(node.get(key, [])):
            found = _content_schema_pointer(contract, f"{pointer}/{key}/{index}", seen)
            if found:
                return found
    return None
