"""The HTML report's "Sources" appendix: every place the requirements cite, shown in the page.

A report is one standalone file, read without the network, so a requirement's source cannot link
to the contract or to ``VERDICTS.md``. Instead each place cited (``spec:#/...`` or
``verdicts:#...``, see :mod:`conformance.sources`) gets one anchor in the appendix, showing the
spec node as YAML or the section's text, and each requirement's source links to it. A part of a
source that is not such a reference (a record from an older kit) is shown as plain text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conformance.results import Requirement
from conformance.sources import Library, Reference, parse, split

__all__ = ["sources_view"]


def _entry(anchor: str, reference: Reference, library: Library) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "anchor": anchor,
        "target": reference.target,
        "title": None,
        "text": "",
        "lines_omitted": 0,
        "problem": None,
        "cited_by": [],
    }
    try:
        excerpt = library.excerpt(reference)
    except LookupError as error:
        entry["problem"] = f"Not found in the kit's own documents: {error}."
    else:
        entry.update(title=excerpt.title, text=excerpt.text, lines_omitted=excerpt.lines_omitted)
    return entry


def sources_view(
    requirements: Iterable[Requirement], library: Library
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Each requirement's source as links, by ID, and the appendix's entries, in citing order.

    A link is ``{"text": ..., "anchor": ...}``; ``anchor`` is ``None`` for free text. An entry
    has its ``anchor``, the reference's ``target``, the excerpt's ``title``, ``text`` and
    ``lines_omitted``, a ``problem`` when the place does not exist, and the IDs citing it.
    """
    links: dict[str, list[dict[str, Any]]] = {}
    entries: dict[str, dict[str, Any]] = {}
    for requirement in requirements:
        parts = []
        for text in split(requirement.source) or [requirement.source]:
            reference = parse(text)
            if reference is None:
                parts.append({"text": text, "anchor": None})
                continue
            entry = entries.get(reference.target)
            if entry is None:
                entry = _entry(f"source-{len(entries) + 1}", reference, library)
                entries[reference.target] = entry
            if requirement.id not in entry["cited_by"]:
                entry["cited_by"].append(requirement.id)
            parts.append({"text": text, "anchor": entry["anchor"]})
        links[requirement.id] = parts
    return links, list(entries.values())
