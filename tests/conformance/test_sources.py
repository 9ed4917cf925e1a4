"""Sources: references into the contract and VERDICTS.md, parsed, resolved and excerpted."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

import spec
from conformance.sources import (
    EXCERPT_LINES,
    VERDICTS_PATH,
    Library,
    Reference,
    anchor_of,
    kit_library,
    parse,
    split,
)

ROOT = Path(__file__).resolve().parents[2]
VERDICTS = """# Title

Intro.

## Outcomes

Pass, fail, error, skip.

```
## not a heading
```

## Exit status

0 if no MUST failed.

### A detail

More.

## Event-stream parsing

WHATWG.
"""


@pytest.fixture
def library() -> Library:
    return Library(spec.load(), VERDICTS)


def test_split_keeps_notes_whole() -> None:
    source = "spec:#/info/description (Status codes; 422); verdicts:#outcomes"
    assert split(source) == ["spec:#/info/description (Status codes; 422)", "verdicts:#outcomes"]


def test_parse_reads_scheme_fragment_and_note() -> None:
    reference = parse("spec:#/components/responses/NotFound (404)")
    assert reference == Reference("spec", "/components/responses/NotFound", "404")
    assert reference.target == "spec:#/components/responses/NotFound"
    assert str(reference) == "spec:#/components/responses/NotFound (404)"
    assert parse("verdicts:#exit-status") == Reference("verdicts", "exit-status")
    for text in ("NOTES.md §2 Errors", "spec: components/schemas/Usage", "seed: the page"):
        assert parse(text) is None


def test_anchors_are_githubs() -> None:
    assert anchor_of("Exit status") == "exit-status"
    assert anchor_of("Event-stream parsing") == "event-stream-parsing"
    assert anchor_of("A target that hangs, dies or sends `garbage`") == (
        "a-target-that-hangs-dies-or-sends-garbage"
    )


def test_pointers_resolve_with_escapes(library: Library) -> None:
    decision = library.node("/paths/~1{model}~1v1~1models/get/x-mimic-decision")
    assert "exactly one entry" in decision
    assert library.node("/security/0") == {}
    assert library.node("") is library.document
    for missing in ("/components/schemas/Nope", "/security/9", "components", "/info/title/x"):
        with pytest.raises(LookupError):
            library.node(missing)


def test_sections_end_at_the_next_heading_of_their_level(library: Library) -> None:
    title, text = library.section("exit-status")
    assert title == "Exit status"
    assert text.startswith("0 if no MUST failed.") and "### A detail" in text
    assert library.section("a-detail") == ("A detail", "More.")
    assert library.section("outcomes")[1].endswith("```")  # a fenced "##" is no heading
    with pytest.raises(LookupError, match="not-a-heading"):
        library.section("not-a-heading")


def test_excerpts_show_yaml_text_or_section(library: Library) -> None:
    node = library.excerpt(Reference("spec", "/components/schemas/Usage"))
    assert node.title == "spec/openapi.yaml, /components/schemas/Usage"
    assert yaml.safe_load(node.text) == library.node("/components/schemas/Usage")
    assert "&" not in node.text and "*id" not in node.text  # no YAML aliases
    text = library.excerpt(Reference("spec", "/components/schemas/Usage/description"))
    assert text.text == library.node("/components/schemas/Usage/description")
    section = library.excerpt(Reference("verdicts", "event-stream-parsing"))
    assert section.title == "conformance/VERDICTS.md, “Event-stream parsing”"
    assert section.text == "WHATWG."


def test_big_nodes_are_cut_and_counted(library: Library) -> None:
    excerpt = library.excerpt(Reference("spec", "/paths"))
    assert len(excerpt.text.splitlines()) == EXCERPT_LINES
    assert excerpt.lines_omitted > 0


def test_check_names_each_problem(library: Library) -> None:
    assert library.check("spec:#/components/schemas/Usage; verdicts:#outcomes") == []
    problems = library.check("NOTES.md §2; spec:#/nope; verdicts:#nope")
    assert len(problems) == 3
    assert "not a spec:# or verdicts:# reference" in problems[0]
    assert "/nope" in problems[1] and "#nope" in problems[2]


def test_the_kits_verdicts_document_ships_with_the_package() -> None:
    assert VERDICTS_PATH.is_file()
    assert VERDICTS_PATH.resolve() == (ROOT / "conformance" / "VERDICTS.md").resolve()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["package-data"]["conformance"]
    assert "*.md" in package_data
    anchors = list(kit_library().sections)
    assert len(anchors) == len(set(anchors))
    for anchor in ("outcomes", "exit-status", "reproducibility", "bounded-time"):
        assert anchor in anchors
