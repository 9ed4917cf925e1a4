"""Where a requirement comes from: references into the contract and into ``VERDICTS.md``.

A requirement's ``source`` is one or more references joined by ``"; "``, each one of

- ``spec:#<JSON pointer>``: a node of the contract, ``spec/openapi.yaml`` (RFC 6901, in its
  URI fragment form), e.g. ``spec:#/components/responses/NotFound``;
- ``verdicts:#<anchor>``: a section of the suite's rules, ``conformance/VERDICTS.md``, by the
  anchor of its heading (GitHub's: ``## Exit status`` is ``#exit-status``),

optionally followed by a note in parentheses that says which part is meant:
``spec:#/info/description (Status codes)``. Both documents ship with the kit, so every source
resolves without the network; :class:`Library` does the resolving, for the tests that hold the
catalogue to it and for the report's "Sources" appendix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import unquote

import yaml

import spec

__all__ = [
    "EXCERPT_LINES",
    "PROSE_LINES",
    "SCHEMES",
    "VERDICTS_PATH",
    "Excerpt",
    "Library",
    "Reference",
    "Scheme",
    "anchor_of",
    "kit_library",
    "parse",
    "split",
]

Scheme: TypeAlias = Literal["spec", "verdicts"]

SCHEMES: Mapping[str, str] = {
    "spec": "spec/openapi.yaml",
    "verdicts": "conformance/VERDICTS.md",
}
"""Each scheme and the file of the kit it points into."""

VERDICTS_PATH: Path = Path(str(resources.files("conformance").joinpath("VERDICTS.md")))
"""Where the kit's ``VERDICTS.md`` lives once installed."""

EXCERPT_LINES = 40
"""Lines of a spec node's YAML an excerpt keeps; the rest are counted."""
PROSE_LINES = 80
"""Lines of prose (a spec node that is text, a section of ``VERDICTS.md``) an excerpt keeps."""

_REFERENCE = re.compile(
    r"^(?P<scheme>spec|verdicts):#(?P<fragment>\S*)(?:\s+\((?P<note>[^()]+)\))?$"
)
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Reference:
    """One place a requirement comes from: ``scheme:#fragment``, with an optional note."""

    scheme: Scheme
    fragment: str
    note: str | None = None

    @property
    def target(self) -> str:
        """The place itself, without the note: ``spec:#/components/responses/NotFound``."""
        return f"{self.scheme}:#{self.fragment}"

    @property
    def pointer(self) -> str:
        """The fragment as a decoded JSON pointer (percent escapes undone)."""
        return unquote(self.fragment)

    def __str__(self) -> str:
        return self.target if self.note is None else f"{self.target} ({self.note})"


def split(source: str) -> list[str]:
    """The parts of a source string: split on ``;`` outside parentheses, stripped."""
    parts: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(source):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == ";" and depth == 0:
            parts.append(source[start:index])
            start = index + 1
    parts.append(source[start:])
    return [part.strip() for part in parts if part.strip()]


def parse(part: str) -> Reference | None:
    """The reference one part of a source names, or ``None`` if it is free text."""
    match = _REFERENCE.match(part.strip())
    if match is None:
        return None
    scheme: Scheme = "spec" if match["scheme"] == "spec" else "verdicts"
    return Reference(scheme, match["fragment"], match["note"])


def anchor_of(title: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"[`*]", "", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _sections(text: str) -> Iterator[tuple[str, str, str]]:
    """Each heading of a Markdown text: its anchor, its title and its text up to the next one."""
    lines = text.splitlines()
    headings = []
    fenced = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match:
            headings.append((number, len(match["hashes"]), match["title"]))
    for index, (number, level, title) in enumerate(headings):
        end = next((n for n, lvl, _ in headings[index + 1 :] if lvl <= level), len(lines))
        yield anchor_of(title), title, "\n".join(lines[number + 1 : end]).strip("\n")


class _Dumper(yaml.SafeDumper):
    """YAML for people: no aliases, multi-line strings as literal blocks, long ones folded."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else ">" if len(value) > 80 else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _to_yaml(node: Any) -> str:
    if isinstance(node, str):
        return node.strip("\n")
    dumped = yaml.dump(
        node,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=88,
        indent=2,
        default_flow_style=None,
    )
    return dumped.removesuffix("...\n").rstrip("\n")


def _truncate(text: str, limit: int) -> tuple[str, int]:
    """Cut ``text`` to ``limit`` lines, unless that would leave out only a few (a quarter)."""
    lines = text.splitlines()
    if len(lines) <= limit + limit // 4:
        return text, 0
    return "\n".join(lines[:limit]), len(lines) - limit


@dataclass(frozen=True)
class Excerpt:
    """What a reference points at, as a person reads it.

    ``title`` names the place (``spec/openapi.yaml`` and the pointer, or the document and its
    heading); ``text`` is the node as YAML (a text node as its text), or the section's
    Markdown, cut to :data:`EXCERPT_LINES` lines of YAML or :data:`PROSE_LINES` of prose;
    ``lines_omitted`` counts the lines cut.
    """

    reference: Reference
    title: str
    text: str
    lines_omitted: int = 0


class Library:
    """The documents references point into: the contract and the suite's rules."""

    def __init__(self, document: Mapping[str, Any], verdicts: str) -> None:
        self.document = document
        self.sections = {anchor: (title, body) for anchor, title, body in _sections(verdicts)}

    def node(self, pointer: str) -> Any:
        """The node of the contract at a JSON pointer; ``LookupError`` if there is none."""
        if pointer == "":
            return self.document
        if not pointer.startswith("/"):
            raise LookupError(f"{pointer!r} is not a JSON pointer (it must start with '/')")
        node: Any = self.document
        for raw in pointer[1:].split("/"):
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise LookupError(f"the spec has no node at {pointer} (no {token!r})")
        return node

    def section(self, anchor: str) -> tuple[str, str]:
        """The title and text of the ``VERDICTS.md`` section with this anchor; else LookupError."""
        try:
            return self.sections[anchor]
        except KeyError:
            raise LookupError(f"{SCHEMES['verdicts']} has no heading #{anchor}") from None

    def excerpt(self, reference: Reference) -> Excerpt:
        """What ``reference`` points at, cut to size; ``LookupError`` if there is nothing."""
        if reference.scheme == "spec":
            node = self.node(reference.pointer)
            title = f"{SCHEMES['spec']}, {reference.pointer or '/'}"
            limit = PROSE_LINES if isinstance(node, str) else EXCERPT_LINES
            text, omitted = _truncate(_to_yaml(node), limit)
        else:
            heading, body = self.section(reference.fragment)
            title = f"{SCHEMES['verdicts']}, “{heading}”"
            text, omitted = _truncate(body, PROSE_LINES)
        return Excerpt(reference, title, text, omitted)

    def check(self, source: str) -> list[str]:
        """What is wrong with a requirement's source: free text, or places that do not exist."""
        problems = []
        for part in split(source) or [source]:
            reference = parse(part)
            if reference is None:
                problems.append(f"{part!r} is not a spec:# or verdicts:# reference")
                continue
            try:
                self.excerpt(reference)
            except LookupError as error:
                problems.append(f"{part}: {error}")
        return problems


@cache
def kit_library() -> Library:
    """The kit's own contract and ``VERDICTS.md``, read once."""
    return Library(spec.load(), VERDICTS_PATH.read_text(encoding="utf-8"))
