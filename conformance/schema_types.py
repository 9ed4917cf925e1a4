"""Which JSON types a JSON Schema's ``type`` keyword allows.

Per JSON Schema, ``type`` restricts an instance to the types it names (one name or a list of
them); a schema without ``type`` puts no restriction on the type, so it allows every type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["JSON_TYPES", "allowed_types"]

JSON_TYPES: Final = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
"""The seven type names of JSON Schema."""


def allowed_types(schema: Mapping[str, Any]) -> frozenset[str]:
    """The JSON types ``schema``'s own ``type`` keyword allows: every type when it has none.

    Only the keyword itself is read, not ``oneOf``, ``anyOf``, ``allOf`` or ``$ref``; names
    that are not strings are left out.
    """
    declared = schema.get("type")
    if declared is None:
        return JSON_TYPES
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(name for name in declared if isinstance(name, str))
    return frozenset()
