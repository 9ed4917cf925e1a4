"""Compile the OpenAPI document into operations and JSON Schema validators.

The reference server validates requests with these validators and the conformance suite judges
responses with them: one reading of the contract for both, so that neither restates a schema.

Why not a library: `openapi-core` and schemathesis each resolve the document, but neither hands out
plain `jsonschema` validators for "this operation's request body" or "one event of this stream"
(OpenAPI 3.2 `itemSchema`). What this module adds is small: follow OpenAPI-level `$ref`s
(request bodies, responses, parameters) to the JSON pointer of each schema, and let `referencing`
resolve everything below that.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["Contract", "MediaTypeSchemas", "Operation", "Parameter"]

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace", "query")
_DOCUMENT_URI = "urn:mimic-conformance:contract"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class Parameter:
    """One resolved parameter of an operation."""

    name: str
    location: str
    required: bool
    schema_pointer: str


@dataclass(frozen=True)
class MediaTypeSchemas:
    """Where the schemas of one media type of one response live in the document.

    `item_pointer` is set for sequential media types (`text/event-stream`): it describes one event.
    """

    media_type: str
    schema_pointer: str | None
    item_pointer: str | None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """One operation of the contract, with its schemas located by JSON pointer."""

    method: str
    path: str
    operation_id: str
    parameters: tuple[Parameter, ...]
    request_body_required: bool
    request_body_pointers: Mapping[str, str]
    responses: Mapping[str, Mapping[str, MediaTypeSchemas]]
    raw: Mapping[str, Any]

    @property
    def label(self) -> str:
        """The operation as people write it: `POST /v1/chat/completions`."""
        return f"{self.method.upper()} {self.path}"

    @cached_property
    def path_pattern(self) -> re.Pattern[str]:
        """A regex that matches concrete paths of this operation; groups are path parameters."""
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        return re.compile(f"^{pattern}$")

    def documented_statuses(self) -> frozenset[str]:
        """The response status codes this operation documents, as strings."""
        return frozenset(self.responses)


class Contract:
    """An OpenAPI 3.x document, read once: operations, and validators compiled on first use.

    Validators are cached by JSON pointer, so a caller can ask for one per request without
    recompiling it.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        if not isinstance(document.get("paths"), Mapping):
            raise ValueError("an OpenAPI document needs a 'paths' object")
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_DOCUMENT_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}
        self.operations: tuple[Operation, ...] = tuple(self._read_operations())

    # ------------------------------------------------------------------ lookup
    @property
    def version(self) -> str:
        """The API version the document states (`info.version`)."""
        return str(self.document.get("info", {}).get("version", ""))

    @property
    def title(self) -> str:
        """The API title the document states (`info.title`)."""
        return str(self.document.get("info", {}).get("title", ""))

    @property
    def name(self) -> str:
        """The contract's name (``x-conformance.contract``): ``mimic``, ``openai`` or ``custom``."""
        return str(self._conformance.get("contract", "custom"))

    @property
    def invalid_request_status(self) -> int:
        """The status of a request that does not match the document (Mimic 422, OpenAI 400)."""
        return int(self._conformance.get("invalid-request-status", 422))

    @property
    def invalid_request_field(self) -> str | None:
        """Where the answer to an invalid request names the field at fault.

        ``detail.loc`` (a FastAPI-style 422, Mimic's) or ``error.param`` (OpenAI's 400);
        ``None`` when the contract does not say.
        """
        found = self._conformance.get("invalid-request-field")
        return None if found is None else str(found)

    @property
    def not_applicable(self) -> Mapping[str, str]:
        """Requirement IDs that have no meaning under this contract, each with the reason."""
        found = self._conformance.get("not-applicable") or {}
        return {str(key): str(value) for key, value in found.items()}

    @property
    def _conformance(self) -> Mapping[str, Any]:
        found = self.document.get("x-conformance")
        return found if isinstance(found, Mapping) else {}

    def operation(self, operation_id: str) -> Operation:
        """Return the operation with this `operationId`."""
        for operation in self.operations:
            if operation.operation_id == operation_id:
                return operation
        raise KeyError(operation_id)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """Return the operation serving `method path` and its path parameters, if any."""
        for operation in self.operations:
            found = operation.path_pattern.match(path)
            if found and operation.method == method.lower():
                return operation, found.groupdict()
        return None

    def methods_for(self, path: str) -> tuple[str, ...]:
        """The methods the contract documents for a concrete path (empty: unknown path)."""
        return tuple(
            operation.method.upper()
            for operation in self.operations
            if operation.path_pattern.match(path)
        )

    # ------------------------------------------------------------------ validators
    def validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at `pointer` (e.g. `/components/schemas/Usage`)."""
        validator = self._validators.get(pointer)
        if validator is None:
            validator = Draft202012Validator(
                {"$ref": f"{_DOCUMENT_URI}#{pointer}"}, registry=self._registry
            )
            self._validators[pointer] = validator
        return validator

    def schema_validator(self, name: str) -> Draft202012Validator:
        """A validator for `components/schemas/<name>`."""
        return self.validator(f"/components/schemas/{_escape(name)}")

    def request_validator(
        self, operation: Operation, media_type: str = "application/json"
    ) -> Draft202012Validator | None:
        """The request body validator of an operation, or None if it takes no such body."""
        pointer = operation.request_body_pointers.get(media_type)
        return None if pointer is None else self.validator(pointer)

    def response_validator(
        self, operation: Operation, status: int | str, media_type: str = "application/json"
    ) -> Draft202012Validator | None:
        """The validator of a response body (for event streams: of one event), or None."""
        media = self.response_media(operation, status).get(media_type)
        if media is None:
            return None
        pointer = media.item_pointer or media.schema_pointer
        return None if pointer is None else self.validator(pointer)

    def response_media(
        self, operation: Operation, status: int | str
    ) -> Mapping[str, MediaTypeSchemas]:
        """The documented media types of one response status (falling back to `default`)."""
        return operation.responses.get(str(status)) or operation.responses.get("default") or {}

    def resolve(self, pointer: str) -> Any:
        """The raw value at a JSON pointer of the document."""
        node: Any = self.document
        for raw in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
            token = raw.replace("~1", "/").replace("~0", "~")
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node

    # ------------------------------------------------------------------ reading
    def _follow(self, node: Any, pointer: str) -> tuple[Any, str]:
        """Follow OpenAPI `$ref`s (not schema refs) to the object and its pointer."""
        seen: set[str] = set()
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise ValueError(f"only local references are supported, got {ref!r} at {pointer}")
            if ref in seen:
                raise ValueError(f"reference cycle at {ref}")
            seen.add(ref)
            pointer = ref[1:]
            node = self.resolve(pointer)
        return node, pointer

    def _read_operations(self) -> Iterator[Operation]:
        for path, item_raw in self.document["paths"].items():
            item, item_pointer = self._follow(item_raw, f"/paths/{_escape(path)}")
            shared = item.get("parameters", [])
            for method in _METHODS:
                if method not in item:
                    continue
                op_pointer = f"{item_pointer}/{method}"
                raw = item[method]
                parameters = self._read_parameters(
                    [(p, f"{item_pointer}/parameters/{i}") for i, p in enumerate(shared)]
                    + [
                        (p, f"{op_pointer}/parameters/{i}")
                        for i, p in enumerate(raw.get("parameters", []))
                    ]
                )
                body_required, body_pointers = self._read_body(raw, op_pointer)
                yield Operation(
                    method=method,
                    path=path,
                    operation_id=str(raw.get("operationId", f"{method} {path}")),
                    parameters=parameters,
                    request_body_required=body_required,
                    request_body_pointers=body_pointers,
                    responses=self._read_responses(raw, op_pointer),
                    raw=raw,
                )

    def _read_parameters(self, entries: list[tuple[Any, str]]) -> tuple[Parameter, ...]:
        found: dict[tuple[str, str], Parameter] = {}
        for raw, pointer in entries:
            param, at = self._follow(raw, pointer)
            # Operation-level parameters override path-level ones with the same name and place.
            found[(param["name"], param["in"])] = Parameter(
                name=param["name"],
                location=param["in"],
                required=bool(param.get("required", param["in"] == "path")),
                schema_pointer=f"{at}/schema",
            )
        return tuple(found.values())

    def _read_body(self, raw: Mapping[str, Any], op_pointer: str) -> tuple[bool, dict[str, str]]:
        if "requestBody" not in raw:
            return False, {}
        body, at = self._follow(raw["requestBody"], f"{op_pointer}/requestBody")
        pointers = {
            media: f"{at}/content/{_escape(media)}/schema"
            for media, media_object in body.get("content", {}).items()
            if "schema" in media_object
        }
        return bool(body.get("required", False)), pointers

    def _read_responses(
        self, raw: Mapping[str, Any], op_pointer: str
    ) -> dict[str, dict[str, MediaTypeSchemas]]:
        responses: dict[str, dict[str, MediaTypeSchemas]] = {}
        for status, response_raw in raw.get("responses", {}).items():
            response, at = self._follow(response_raw, f"{op_pointer}/responses/{status}")
            headers = {}
            for name, header_raw in response.get("headers", {}).items():
                _, header_at = self._follow(header_raw, f"{at}/headers/{_escape(name)}")
                headers[name] = f"{header_at}/schema"
            media_types = {}
            for media, media_object in response.get("content", {}).items():
                base = f"{at}/content/{_escape(media)}"
                media_types[media] = MediaTypeSchemas(
                    media_type=media,
                    schema_pointer=f"{base}/schema" if "schema" in media_object else None,
                    item_pointer=f"{base}/itemSchema" if "itemSchema" in media_object else None,
                    headers=headers,
                )
            responses[str(status)] = media_types
        return responses
