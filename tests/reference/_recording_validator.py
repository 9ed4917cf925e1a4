"""A real `jsonschema_rs` validator that records the size of every document `iter_errors` gets."""

from __future__ import annotations

from typing import Any


def json_values(value: Any) -> int:
    """How many JSON values ``value`` holds, itself included."""
    if isinstance(value, dict):
        return 1 + sum(map(json_values, value.values()))
    if isinstance(value, list):
        return 1 + sum(map(json_values, value))
    return 1


class RecordingValidator:
    """Delegates to ``real``; ``sizes`` lists the JSON values of each `iter_errors` document."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sizes: list[int] = []

    def is_valid(self, instance: Any) -> bool:
        return bool(self.real.is_valid(instance))

    def validate(self, instance: Any) -> None:
        self.real.validate(instance)

    def iter_errors(self, instance: Any) -> Any:
        self.sizes.append(json_values(instance))
        return self.real.iter_errors(instance)
