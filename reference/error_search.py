"""Where a large invalid JSON document fails, found with work bounded by its size: `locate`.

Why not `jsonschema_rs.Validator.iter_errors` alone: it builds every error of the document
before it returns the first, so a list of a million wrong items costs seconds and gigabytes
before one error can be read, and a cap on the errors read afterwards bounds nothing. Its
`validate` stops at the first error, except under `oneOf` and `anyOf`, where it still collects
every error of every branch as the error's context (a `stop` list of 200,000 integers: 5.8 s).
Only `is_valid` is always cheap: it stops at the first failure, and builds nothing.

So a large document is first cut down: every list to its first `KEEP` items, every object with
more than `KEEP_MEMBERS` members to its first `KEEP_MEMBERS` (only free-form maps are that
large: no object of the contract has that many properties, so none loses a required one). The
cut document's errors are errors of the whole one, at the same places. Where the cut document is
valid, each cut part is put back in turn, and `is_valid` says whether the fault lies in it; then
the first failing item is found by searching ever larger spans of the part's tail (each span
checked once, so the search costs a few times the part's size), and that item alone is
explained, by the same search if it is itself large. A part whose items are each valid fails by
its size (`maxItems`), and with valid items its first error is cheap to read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["KEEP", "KEEP_MEMBERS", "Located", "locate"]

KEEP = 16
"""Items a list keeps in a cut document."""

KEEP_MEMBERS = 256
"""Members an object keeps in a cut document."""


class FastValidator(Protocol):
    """The part of a `jsonschema_rs` validator that `locate` uses."""

    def is_valid(self, instance: Any) -> bool: ...

    def iter_errors(self, instance: Any) -> Iterator[Any]: ...

    def validate(self, instance: Any) -> None: ...


@dataclass(frozen=True)
class Located:
    """One error: where its instance is, and the schema that failed there.

    ``instance`` may be a stand-in for the document's own (cut down, or holding one item of a
    long list moved to index 0): ``path`` and `real_path` give the document's own places.
    """

    schema_path: tuple[str | int, ...]
    message: str
    instance: Any
    stand_in_path: tuple[str | int, ...]
    offset: tuple[tuple[tuple[str | int, ...], str | int], ...] = ()

    @property
    def path(self) -> tuple[str | int, ...]:
        """The path to the instance in the whole document."""
        return self.real_path(())

    def real_path(self, inside: tuple[str | int, ...]) -> tuple[str | int, ...]:
        """The whole document's path to a place given by its path ``inside`` the instance."""
        return _move((*self.stand_in_path, *inside), self.offset)


def locate(
    document: Any,
    validator: FastValidator,
    *,
    is_large: Any,
    error_type: type[Exception],
    limit: int,
) -> list[Located]:
    """Up to ``limit`` errors of an invalid ``document`` (all of them if it is small).

    ``is_large(value)`` says whether a value is too large to have all its errors built;
    ``error_type`` is the exception ``validator.validate`` raises.
    """
    search = _Search(validator, is_large, error_type, limit)
    return list(itertools.islice(search.errors(document, ()), limit))


class _Search:
    def __init__(
        self, validator: FastValidator, is_large: Any, error_type: type[Exception], limit: int
    ) -> None:
        self._validator = validator
        self._is_large = is_large
        self._error_type = error_type
        self._limit = limit

    def errors(self, document: Any, offset: tuple[str | int, ...]) -> Iterator[Located]:
        """The errors of ``document``, a stand-in for the whole with its paths moved by offset.

        ``offset`` maps the stand-in's paths to the whole document's: it is a tuple of
        (path, real index) pairs for list items moved to index 0.
        """
        if not self._is_large(document):
            for error in self._validator.iter_errors(document):
                yield self._located(document, error, offset)
            return
        cut, parts = _cut(document)
        found = False
        for error in itertools.islice(self._validator.iter_errors(cut), self._limit):
            found = True
            yield self._located(cut, error, offset)
        if found:
            return
        for path, whole in parts:
            restored = _replace(cut, path, whole)
            if self._validator.is_valid(restored):
                continue
            yield from self._in_part(cut, path, whole, offset)

    def _in_part(
        self, cut: Any, path: tuple[str | int, ...], whole: Any, offset: tuple[Any, ...]
    ) -> Iterator[Located]:
        """The first failing item of a cut part, or the part's own error (its size)."""
        items = list(whole.items()) if isinstance(whole, Mapping) else list(enumerate(whole))

        def holding(pairs: list[tuple[Any, Any]]) -> Any:
            if isinstance(whole, Mapping):
                return _replace(cut, path, dict(pairs))
            return _replace(cut, path, [value for _, value in pairs])

        start, span = KEEP, KEEP
        while start < len(items):
            chunk = items[start : start + span]
            if not self._validator.is_valid(holding(chunk)):
                index = self._first_failing(chunk, holding)
                key, _ = chunk[index]
                single = holding([chunk[index]])
                if self._validator.is_valid(single):
                    break  # the span failed by its size alone (`maxItems`): see below
                moved = offset if isinstance(whole, Mapping) else (*offset, ((*path, 0), key))
                yield from self.errors(single, moved)
                return
            start += span
            span *= 2
        restored = _replace(cut, path, whole)
        try:
            self._validator.validate(restored)
        except self._error_type as error:
            yield self._located(restored, error, offset)

    def _first_failing(self, chunk: list[tuple[Any, Any]], holding: Any) -> int:
        """The index of the first item of ``chunk`` that fails (one does), by bisection."""
        low, high = 0, len(chunk)
        while high - low > 1:
            middle = (low + high) // 2
            if self._validator.is_valid(holding(chunk[low:middle])):
                low = middle
            else:
                high = middle
        return low

    def _located(self, document: Any, error: Any, offset: tuple[Any, ...]) -> Located:
        instance, path = _walk(document, error.instance_path)
        return Located(tuple(error.schema_path), error.message, instance, path, offset)


def _cut(document: Any) -> tuple[Any, list[tuple[tuple[str | int, ...], Any]]]:
    """``document`` with lists and large objects cut to `KEEP` items, and the parts cut."""
    parts: list[tuple[tuple[str | int, ...], Any]] = []

    def walk(value: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(value, Mapping):
            members = list(itertools.islice(value.items(), KEEP_MEMBERS + 1))
            if len(members) > KEEP_MEMBERS:
                parts.append((path, value))
                members = members[:KEEP_MEMBERS]
            return {key: walk(item, (*path, key)) for key, item in members}
        if isinstance(value, list):
            if len(value) > KEEP:
                parts.append((path, value))
            return [walk(item, (*path, index)) for index, item in enumerate(value[:KEEP])]
        return value

    return walk(document, ()), parts


def _replace(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A shallow copy of ``document`` along ``path``, holding ``value`` there."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, Mapping):
        copy = dict(document)
        copy[head] = _replace(document[head], rest, value)  # type: ignore[index]
        return copy
    copy_list = list(document)
    copy_list[head] = _replace(document[head], rest, value)  # type: ignore[index]
    return copy_list


def _walk(
    document: Any, path: Iterator[str | int] | list[str | int]
) -> tuple[Any, tuple[Any, ...]]:
    """The instance at ``path``, and the path with object keys as strings.

    `jsonschema_rs` reports an object key that looks like a number ("2") as an integer.
    """
    steps: list[str | int] = []
    for step in path:
        if isinstance(document, Mapping):
            step = str(step)
        document = document[step]
        steps.append(step)
    return document, tuple(steps)


def _move(path: tuple[str | int, ...], offset: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Map a stand-in's path to the whole document's: moved list items get their real index.

    Each prefix in ``offset`` is in the stand-in's own coordinates, so all are compared with
    ``path`` as given, before any index is moved.
    """
    moved = list(path)
    for prefix, real in offset:
        if path[: len(prefix)] == prefix:
            moved[len(prefix) - 1] = real
    return tuple(moved)
