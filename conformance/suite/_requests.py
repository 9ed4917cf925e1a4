"""Requests the suite sends beside schemathesis's: spec examples, and deliberately bad requests.

The base of every hand-made request is the operation's own example in the spec (its
``requestBody`` ``examples``), with the body model set to one the target serves. Bad requests
are derived from that example and from the request schema: a required field removed, a field of
the wrong type, a value past the schema's bound. Each comes with the requirement it tests and a
short description for messages.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conformance.exchange import Exchange, RequestSpec
from conformance.schema_types import allowed_types
from conformance.suite._operations import (
    JSON,
    MODEL_FIELD,
    concrete_path,
    enum_path_parameters,
    fill_path,
    path_values,
    request_schema,
    unknown_route,
)
from conformance.suite._run import Run
from spec import Contract, Operation

__all__ = [
    "BadRequest",
    "Sent",
    "bad_requests",
    "example_body",
    "json_request",
    "sent_bad_requests",
    "unknown_route_request",
    "wrong_method_request",
]

UNKNOWN_MODEL = "mimic-conformance-no-such-model"
_METHOD_CANDIDATES = ("DELETE", "PUT", "PATCH", "GET", "POST")


def example_body(
    contract: Contract, operation: Operation, served_models: Sequence[str]
) -> dict[str, Any]:
    """The operation's first request example from the spec, its body model made a served one.

    Falls back to an object holding just the required fields' examples when the spec has no
    example, which is enough for the error checks (they only need *something* valid to break).
    """
    pointer = operation.request_body_pointers.get(JSON)
    if pointer is None:
        return {}
    media = contract.resolve(pointer.rsplit("/", 1)[0])
    body: Any = None
    examples = media.get("examples")
    if isinstance(examples, Mapping):
        for example in examples.values():
            if isinstance(example, Mapping) and isinstance(example.get("value"), Mapping):
                body = example["value"]
                break
    if body is None and isinstance(media.get("example"), Mapping):
        body = media["example"]
    body = copy.deepcopy(dict(body)) if isinstance(body, Mapping) else {}
    schema = request_schema(contract, operation)
    wants_model = MODEL_FIELD in body or MODEL_FIELD in schema["required"]
    if wants_model and served_models and body.get(MODEL_FIELD) not in served_models:
        body[MODEL_FIELD] = served_models[0]
    return body


def json_request(
    contract: Contract,
    operation: Operation,
    body: Any,
    *,
    variant: int = 0,
    path: str | None = None,
) -> RequestSpec:
    """A request to the operation with ``body`` as JSON (or no body for body-less operations)."""
    url = path if path is not None else concrete_path(contract, operation, variant)
    if not operation.request_body_pointers:
        return RequestSpec(operation.method.upper(), url)
    return RequestSpec.json(operation.method.upper(), url, body)


def _raw_request(contract: Contract, operation: Operation, body: bytes) -> RequestSpec:
    return RequestSpec(
        operation.method.upper(),
        concrete_path(contract, operation),
        (("Content-Type", JSON),),
        body,
    )


@dataclass(frozen=True)
class BadRequest:
    """A request that breaks one rule, the requirement that says what must happen, and why.

    ``expected_status`` says what the contract demands; for a request that does not match the
    contract, ``loc_prefix`` is where a Mimic 422's ``detail`` locates the problem and
    ``field`` the request field at fault, if one is, which an OpenAI 400 names in
    ``error.param``.
    """

    requirement_id: str
    what: str
    request: RequestSpec
    expected_status: int
    loc_prefix: tuple[str, ...] = ()
    field: str | None = None


def bad_requests(
    contract: Contract, operation: Operation, served_models: Sequence[str], variants: int
) -> list[BadRequest]:
    """Every bad request the error rules send to one operation (``variants`` per kind at most)."""
    found: list[BadRequest] = []
    if JSON in operation.request_body_pointers:
        base = example_body(contract, operation, served_models)
        found += _body_shape_requests(contract, operation, base, variants)
        found += _schema_violations(contract, operation, base, variants)
        if MODEL_FIELD in request_schema(contract, operation)["required"] and not any(
            p.name == MODEL_FIELD and p.location == "path" for p in operation.parameters
        ):
            body = {**base, MODEL_FIELD: UNKNOWN_MODEL}
            found.append(
                BadRequest(
                    "ERR-UNKNOWN-MODEL",
                    f"a body model the server does not serve ({UNKNOWN_MODEL!r})",
                    json_request(contract, operation, body),
                    404,
                )
            )
        valid_body: Any = base
    else:
        valid_body = None
    for parameter, values in enum_path_parameters(contract, operation):
        outside = _outside_enum(values)
        path = fill_path(
            operation.path, {**path_values(contract, operation), parameter.name: outside}
        )
        found.append(
            BadRequest(
                "ERR-PATH-MODEL",
                f"path parameter {parameter.name!r} outside its enum ({outside!r})",
                json_request(contract, operation, valid_body, path=path),
                contract.invalid_request_status,
                ("path", parameter.name),
            )
        )
    return found


def _body_shape_requests(
    contract: Contract, operation: Operation, base: Mapping[str, Any], variants: int
) -> Iterator[BadRequest]:
    text = json.dumps(base, separators=(",", ":"))
    malformed = [
        ("a body cut off in the middle of its JSON", text[: max(1, len(text) // 2)].encode()),
        ("a body that is not JSON at all", b"this is not JSON"),
        ("a JSON body with a trailing comma", (text[:-1] + ",}").encode()),
    ]
    for what, body in malformed[:variants]:
        yield BadRequest(
            "ERR-MALFORMED-JSON",
            what,
            _raw_request(contract, operation, body),
            contract.invalid_request_status,
            ("body",),
        )
    not_object = [
        ("a JSON array", b"[]"),
        ("a JSON string", b'"hello"'),
        ("JSON null", b"null"),
        ("a JSON number", b"42"),
    ]
    for what, body in not_object[: max(variants, 2)]:
        yield BadRequest(
            "ERR-NOT-OBJECT",
            f"a body that is {what}",
            _raw_request(contract, operation, body),
            contract.invalid_request_status,
            ("body",),
        )


def _schema_violations(
    contract: Contract, operation: Operation, base: Mapping[str, Any], variants: int
) -> Iterator[BadRequest]:
    schema = request_schema(contract, operation)
    properties: Mapping[str, Any] = schema["properties"]
    # Fields the example sets come first: they are the ones a server certainly reads.
    order = [name for name in base if name in properties] + [
        name for name in properties if name not in base
    ]

    missing = [name for name in schema["required"] if name in base][:variants]
    for name in missing:
        body = {key: value for key, value in base.items() if key != name}
        yield BadRequest(
            "ERR-MISSING-FIELD",
            f"a body without the required field {name!r}",
            json_request(contract, operation, body),
            contract.invalid_request_status,
            ("body",),
            name,
        )

    wrong = [
        (name, value) for name in order if (value := _wrong_type(properties[name])) is not None
    ]
    for name, value in wrong[:variants]:
        yield BadRequest(
            "ERR-WRONG-TYPE",
            f"field {name!r} set to {value!r}, a type its schema does not allow",
            json_request(contract, operation, {**base, name: value}),
            contract.invalid_request_status,
            ("body",),
            name,
        )

    out = [
        (name, value) for name in order if (value := _out_of_range(properties[name])) is not None
    ]
    for name, value in out[:variants]:
        shown = value if not isinstance(value, list) else f"a list of {len(value)}"
        yield BadRequest(
            "ERR-OUT-OF-RANGE",
            f"field {name!r} set to {shown!r}, outside its schema's bounds",
            json_request(contract, operation, {**base, name: value}),
            contract.invalid_request_status,
            ("body",),
            name,
        )


def _wrong_type(schema: Mapping[str, Any]) -> Any:
    """A value of a JSON type the schema does not allow, or None if it allows all those tried.

    A schema without ``type`` allows every type, so it gets None, as does one with an ``enum``
    or ``const`` (a value outside those is a different violation).
    """
    types = allowed_types(schema)
    if not types or "enum" in schema or "const" in schema:
        return None
    if "string" not in types:
        return "not-a-" + sorted(types - {"null"} or {"value"})[0]
    if not types & {"integer", "number"}:
        return 12345
    if "boolean" not in types:
        return True
    return None


def _out_of_range(schema: Mapping[str, Any]) -> Any:
    """A value of the right type just past one of the schema's bounds, or None."""
    types = allowed_types(schema)
    if "integer" in types or "number" in types:
        if isinstance(schema.get("maximum"), int | float) and schema["maximum"] < 2**53:
            return schema["maximum"] + 1
        if isinstance(schema.get("minimum"), int | float) and schema["minimum"] > -(2**53):
            return schema["minimum"] - 1
    if "array" in types and isinstance(schema.get("minItems"), int) and schema["minItems"] > 0:
        return []
    return None


def _outside_enum(values: Sequence[Any]) -> str:
    candidate = "mimic-conformance-not-in-enum"
    while candidate in values:
        candidate += "-x"
    return candidate


def unknown_route_request(contract: Contract) -> RequestSpec:
    """A GET of a path that no operation of the spec has."""
    return RequestSpec("GET", unknown_route(contract))


def wrong_method_request(
    contract: Contract, operation: Operation
) -> tuple[RequestSpec, tuple[str, ...]] | None:
    """A request to the operation's path with a method the spec does not document there.

    Returns the request and the documented methods, or None if every candidate is documented.
    """
    path = concrete_path(contract, operation)
    documented = contract.methods_for(path)
    for method in _METHOD_CANDIDATES:
        if method not in documented:
            body = b"{}" if method in ("PUT", "PATCH", "POST") else None
            headers = (("Content-Type", JSON),) if body is not None else ()
            return RequestSpec(method, path, headers, body), documented
    return None


@dataclass(frozen=True)
class Sent:
    """A bad request and its answer."""

    bad: BadRequest
    exchange: Exchange


def sent_bad_requests(run: Run, operation: Operation) -> list[Sent]:
    """The operation's bad requests (and a wrong method on its path), each sent once per run.

    Shared: each ERR rule judges the status of its own kind, ERR-BODY-SHAPE every error body,
    and the SDK rules how the official client reads each error.
    """

    def send_all() -> list[Sent]:
        variants = run.settings.profile.error_variants
        bads = bad_requests(run.contract, operation, run.served_models, variants)
        wrong = wrong_method_request(run.contract, operation)
        if wrong is not None:
            request, documented = wrong
            what = f"{request.method} on {operation.path} (documented: {', '.join(documented)})"
            bads.append(BadRequest("ERR-METHOD-405", what, request, 405))
        return [Sent(bad, run.send(bad.request)) for bad in bads]

    return run.cached(("bad-requests", operation.label), send_all)
