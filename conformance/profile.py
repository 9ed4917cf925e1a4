"""Run settings: the quick and full profiles, the budget, and the capped schema fed to schemathesis.

A real model generates slowly, so what the suite may ask of a target is budgeted here:

- a :class:`Profile` says how many cases each part of the suite generates;
- :func:`capped_document` returns a copy of the spec whose request schemas cannot ask for much
  generation (``max_tokens`` required and small, few choices, short strings, short lists), and
  whose body ``model`` only names models the target serves. schemathesis generates its
  *positive* cases from that copy. Its coverage phase ignores ``map_body``-style hooks
  (a limitation of schemathesis), so the caps must live in the schema itself.

Response schemas are left untouched: the request schemas are copied under new names first, so a
cap on a string's length never makes a long *response* string invalid.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from conformance.baseline import KnownFailure
from conformance.schema_types import allowed_types

__all__ = [
    "PROFILES",
    "Caps",
    "Profile",
    "Settings",
    "capped_document",
]


@dataclass(frozen=True)
class Caps:
    """Upper bounds on generated request values (the budget of one positive request).

    ``required_token_fields`` are made required so that no positive request leaves generation
    unbounded (absent ``max_tokens`` means "until the end of the context").
    """

    token_fields: Mapping[str, int] = field(
        default_factory=lambda: {"max_tokens": 8, "max_completion_tokens": 8}
    )
    required_token_fields: tuple[str, ...] = ("max_tokens",)
    choice_fields: Mapping[str, int] = field(default_factory=lambda: {"n": 2, "best_of": 2})
    # A real model reads every prompt token: strings of odd Unicode cost up to four tokens a
    # character, and lists multiply them, so both stay short.
    string_length: int = 16
    array_items: int = 2
    object_properties: int = 2
    model_field: str = "model"


@dataclass(frozen=True)
class Profile:
    """How much of everything one run generates.

    ``max_examples``: schemathesis fuzzing-phase cases per operation and mode;
    ``coverage_modes``: the generation modes ("positive", "negative") that also run
    schemathesis's coverage phase: thorough (every boundary of every field), cheap for invalid
    data that the target rejects at once, slow for valid data that a real model must generate
    for; ``stream_samples``: hypothesis-generated stream requests per streaming operation, on
    top of the spec's own examples; ``error_variants``: how many fields each kind of schema
    violation is tried on per operation; ``field_probes_full``: whether the FIELD rules send
    every probe (those that hold "streamed or not" also stream it; each ignored field goes in
    a request of its own) or only the plain ones (all ignored fields in one request).
    """

    name: str
    max_examples: int
    coverage_modes: tuple[str, ...]
    stream_samples: int
    error_variants: int
    field_probes_full: bool = True
    caps: Caps = field(default_factory=Caps)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, recorded in the run's options."""
        return asdict(self)


PROFILES: Mapping[str, Profile] = {
    "quick": Profile("quick", 3, (), stream_samples=1, error_variants=1, field_probes_full=False),
    "full": Profile("full", 10, ("negative",), stream_samples=3, error_variants=3),
    "thorough": Profile(
        "thorough", 25, ("negative", "positive"), stream_samples=6, error_variants=4
    ),
}
"""``quick`` for local use (under 30 s against the reference on 2 cores); ``full``, the default,
for CI (under 3 min); ``thorough`` adds the coverage phase for valid data (every boundary of
every field, about a thousand generations: a nightly job's budget, not a pull request's)."""


@dataclass(frozen=True)
class Settings:
    """The options of one run, resolved (command line, then environment, then defaults)."""

    target: str | None
    api_key: str | None
    seed: int
    max_examples: int | None
    timeout: float
    report_dir: Path
    requirements: tuple[str, ...]
    skip_requirements: tuple[str, ...]
    gate_should: bool
    profile: Profile
    spec_path: Path
    robust: bool = False
    """Whether the hostile ``ROBUST-*`` requirements are judged (``--robust``)."""
    cases: tuple[tuple[str, str], ...] = ()
    """(requirement, operation) pairs to judge alone (``--case``); empty: every selected one."""
    baseline_path: Path | None = None
    """The baseline file of known failures (``--baseline``), if any."""
    known_failures: tuple[KnownFailure, ...] | None = None
    """Its entries, read and checked when the options were."""
    write_baseline: Path | None = None
    """Where to write this run's failures as a baseline (``--write-baseline``), if anywhere."""

    @property
    def examples(self) -> int:
        """Fuzzing cases per operation and mode: ``--max-examples``, else the profile's."""
        return self.max_examples if self.max_examples is not None else self.profile.max_examples

    def to_options(self) -> dict[str, Any]:
        """The options as recorded in ``results.json`` (the record redacts ``api_key``)."""
        return {
            "target": self.target,
            "api_key": self.api_key,
            "seed": self.seed,
            "max_examples": self.examples,
            "timeout": self.timeout,
            "report_dir": str(self.report_dir),
            "requirement": list(self.requirements),
            "skip_requirement": list(self.skip_requirements),
            "gate_should": self.gate_should,
            "robust": self.robust,
            "case": [f"{rid}@{operation}" for rid, operation in self.cases],
            "baseline": None if self.baseline_path is None else str(self.baseline_path),
            "write_baseline": None if self.write_baseline is None else str(self.write_baseline),
            "profile": self.profile.name,
            "spec": str(self.spec_path),
        }


# ---------------------------------------------------------------------------- capped schema

_SCHEMAS = "#/components/schemas/"
_SUFFIX = "__capped_request"


def capped_document(
    document: Mapping[str, Any], caps: Caps, served_models: Sequence[str] = ()
) -> dict[str, Any]:
    """Return a copy of ``document`` whose request-body schemas obey ``caps``.

    Every schema reachable from a request body is copied to ``<Name>__capped_request`` and
    capped there; response schemas stay as they are. ``served_models``, when given, becomes the
    ``enum`` of every body ``model`` field, so that positive cases name a model the target
    lists (a body ``model`` it does not serve is a 404 by the contract, not a valid request).
    """
    capped = copy.deepcopy(dict(document))
    schemas: dict[str, Any] = capped.setdefault("components", {}).setdefault("schemas", {})
    rewriter = _Rewriter(schemas, caps, tuple(served_models))
    for body in _request_bodies(capped):
        for media in body.get("content", {}).values():
            if isinstance(media, dict) and "schema" in media:
                media["schema"] = rewriter.rewrite(media["schema"])
    return capped


def _request_bodies(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every request body object of the document: inline ones and ``components/requestBodies``."""
    bodies = [b for b in document.get("components", {}).get("requestBodies", {}).values()]
    for item in document.get("paths", {}).values():
        if not isinstance(item, dict):
            continue
        for operation in item.values():
            if isinstance(operation, dict) and isinstance(operation.get("requestBody"), dict):
                body = operation["requestBody"]
                if "$ref" not in body:
                    bodies.append(body)
    return [body for body in bodies if isinstance(body, dict)]


class _Rewriter:
    """Copies schemas reachable from request bodies and applies the caps to the copies."""

    def __init__(self, schemas: dict[str, Any], caps: Caps, served_models: tuple[str, ...]) -> None:
        self._schemas = schemas
        self._caps = caps
        self._models = served_models
        self._done: set[str] = set()

    def rewrite(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMAS):
            name = ref[len(_SCHEMAS) :]
            if name.endswith(_SUFFIX):
                return dict(node)
            self._copy(name)
            return {**node, "$ref": _SCHEMAS + name + _SUFFIX}
        rewritten = {key: self._rewrite_keyword(key, value) for key, value in node.items()}
        return self._cap(rewritten)

    def _rewrite_keyword(self, key: str, value: Any) -> Any:
        if key in ("properties", "patternProperties", "$defs", "dependentSchemas"):
            return (
                {name: self.rewrite(sub) for name, sub in value.items()}
                if isinstance(value, dict)
                else value
            )
        if key in ("enum", "const", "examples", "example", "default", "required", "description"):
            return copy.deepcopy(value)
        return self.rewrite(value)

    def _copy(self, name: str) -> None:
        if name in self._done:
            return
        self._done.add(name)
        original = self._schemas.get(name)
        if original is None:
            return
        self._schemas[name + _SUFFIX] = None  # placeholder: recursive schemas refer to it
        self._schemas[name + _SUFFIX] = self.rewrite(original)

    def _cap(self, schema: dict[str, Any]) -> dict[str, Any]:
        caps = self._caps
        # Only a schema that names its types gets their caps. One without ``type`` allows every
        # type, but in a request schema it is a wrapper (``oneOf`` / ``anyOf`` / ``allOf`` of
        # branches that name theirs and are capped in turn) or an ``enum`` or ``const`` that
        # lists its values: a cap there would add nothing, or cut a listed value.
        types = allowed_types(schema) if schema.get("type") is not None else frozenset()
        if "string" in types and "enum" not in schema and "const" not in schema:
            floor = int(schema.get("minLength", 0))
            schema["maxLength"] = max(
                floor, min(int(schema.get("maxLength", caps.string_length)), caps.string_length)
            )
        if "array" in types or "items" in schema or "prefixItems" in schema:
            floor = int(schema.get("minItems", 0))
            schema["maxItems"] = max(
                floor, min(int(schema.get("maxItems", caps.array_items)), caps.array_items)
            )
        if (
            "object" in types
            and "properties" not in schema
            and (isinstance(schema.get("additionalProperties"), dict) or "propertyNames" in schema)
        ):
            floor = int(schema.get("minProperties", 0))
            current = int(schema.get("maxProperties", caps.object_properties))
            schema["maxProperties"] = max(floor, min(current, caps.object_properties))
        properties = schema.get("properties")
        if isinstance(properties, dict):
            self._cap_properties(schema, properties)
        return schema

    def _cap_properties(self, schema: dict[str, Any], properties: dict[str, Any]) -> None:
        caps = self._caps
        for name, limit in {**caps.token_fields, **caps.choice_fields}.items():
            if name not in properties:
                continue
            required = name in caps.required_token_fields
            properties[name] = _bounded_integer(properties[name], limit, allow_null=not required)
            if required:
                schema["required"] = sorted({*schema.get("required", []), name})
        if self._models and caps.model_field in properties:
            properties[caps.model_field] = {"type": "string", "enum": list(self._models)}


def _bounded_integer(original: Any, limit: int, *, allow_null: bool) -> dict[str, Any]:
    """An integer schema from 1 (or the original minimum) to ``limit``, null allowed or not.

    The original may be a ``$ref`` to a shared schema (``MaxTokens``); its bounds are not read
    through the reference, since every capped field is a count that starts at 1.
    """
    minimum = 1
    if isinstance(original, dict) and isinstance(original.get("minimum"), int):
        minimum = max(minimum, original["minimum"])
    bounded: dict[str, Any] = {
        "type": ["integer", "null"] if allow_null else "integer",
        "minimum": minimum,
        "maximum": max(minimum, limit),
    }
    return bounded
