"""The contract states every decision the server makes about request fields (issue #5)."""

from __future__ import annotations

from typing import Any

import pytest

import spec

#: Fields with no meaning for a local model that a server accepts and ignores.
IGNORED = [
    "metadata",
    "parallel_tool_calls",
    "prediction",
    "reasoning_effort",
    "service_tier",
    "store",
    "web_search_options",
]


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    return spec.load()["components"]["schemas"]


@pytest.mark.parametrize("name", IGNORED)
def test_ignored_chat_fields_are_marked_and_explained(schemas: dict[str, Any], name: str) -> None:
    field = schemas["ChatCompletionRequest"]["properties"][name]
    assert field.get("x-mimic-ignored") is True
    assert "ignored" in field.get("description", "")


def test_user_is_ignored_on_both_requests(schemas: dict[str, Any]) -> None:
    assert schemas["User"]["x-mimic-ignored"] is True
    for request in ("ChatCompletionRequest", "CompletionRequest"):
        assert schemas[request]["properties"]["user"] == {"$ref": "#/components/schemas/User"}


@pytest.mark.parametrize("name", ["audio", "modalities"])
def test_audio_output_is_a_400_not_ignored(schemas: dict[str, Any], name: str) -> None:
    field = schemas["ChatCompletionRequest"]["properties"][name]
    assert "x-mimic-ignored" not in field
    assert "`400`" in field["description"]


def test_tool_call_decisions_are_written_down(schemas: dict[str, Any]) -> None:
    chat = schemas["ChatCompletionRequest"]["properties"]
    for word in ("`none`", "`auto`", "`required`", "grammar", "`400`", "call_<random>"):
        assert word in chat["tool_choice"]["description"], word
    assert "function_call" in schemas["FinishReason"]["enum"]
    assert "`finish_reason: length`" in schemas["FinishReason"]["x-mimic-decision"]
    assert "`developer` becomes `system`" in schemas["ChatMessage"]["x-mimic-decision"]


def test_completion_decisions_are_written_down(schemas: dict[str, Any]) -> None:
    fields = schemas["CompletionRequest"]["properties"]
    assert "mean log" in fields["best_of"]["description"]
    assert "the first token's both `null`" in fields["echo"]["description"]
