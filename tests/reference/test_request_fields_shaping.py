"""Tool choices, call shaping and the chat prompt, below HTTP: every split of the text counts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from reference.chat_prompt import render_chat_prompt
from reference.engine import Engine
from reference.errors import APIError
from reference.planning import read_tools
from reference.tool_calls import Emit, Shaper, ToolPlan, merge_deltas

WEATHER = {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
TIME = {"name": "get_time"}
TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": TIME}]


def run(shaper: Shaper, pieces: list[str], reason: str = "stop") -> tuple[list[Emit], str]:
    """Every delta the shaper sends for these pieces, and its finish reason."""
    emits = shaper.start()
    for piece in pieces:
        emits += shaper.feed(piece, ())
    tail, finish = shaper.finish(reason)
    return emits + tail, finish


def split_every_way(text: str) -> list[list[str]]:
    """The text whole, char by char, and in pieces of 2 and 3 characters."""
    return [[text], list(text)] + [
        [text[i : i + k] for i in range(0, len(text), k)] for k in (2, 3)
    ]


def arguments_streamed(emits: list[Emit]) -> str:
    parts = [call for emit in emits for call in emit.delta.get("tool_calls", ())]
    assert "id" in parts[0] and parts[0]["function"]["arguments"] == ""
    assert all("id" not in part and "name" not in part["function"] for part in parts[1:])
    return "".join(part["function"]["arguments"] for part in parts[1:])


# ---------------------------------------------------------------- reading the request


def test_tools_default_to_auto_and_are_offered() -> None:
    plan = read_tools({"tools": TOOLS})
    assert plan.mode == "auto" and plan.json_schema is None
    assert plan.offered == TOOLS


def test_none_offers_nothing() -> None:
    assert read_tools({"tools": TOOLS, "tool_choice": "none"}).offered is None


def test_a_forced_function_is_constrained_to_its_parameters() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    plan = read_tools({"tools": TOOLS, "tool_choice": choice})
    assert plan.mode == "forced" and plan.forced == "get_time"
    assert plan.json_schema == {"type": "object"}  # absent parameters: any object


def test_required_is_constrained_to_one_of_the_calls() -> None:
    schema = read_tools({"tools": TOOLS, "tool_choice": "required"}).json_schema
    assert schema is not None
    names = [option["properties"]["name"]["const"] for option in schema["oneOf"]]
    assert names == ["get_weather", "get_time"]
    assert schema["oneOf"][0]["properties"]["arguments"] == WEATHER["parameters"]


def test_legacy_functions_answer_in_the_legacy_shape() -> None:
    plan = read_tools({"functions": [WEATHER], "function_call": {"name": "get_weather"}})
    assert plan.legacy and plan.mode == "forced"
    emits, finish = run(plan.shaper(), ['{"city": "Rome"}'])
    assert finish == "function_call"
    assert merge_deltas(emits) == {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"tool_choice": "required"}, "'tool_choice' \"required\" needs 'tools'"),
        ({"function_call": {"name": "f"}}, "'function_call'"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "'nope'",
        ),
        ({"functions": [WEATHER], "function_call": {"name": "nope"}}, "'functions'"),
    ],
)
def test_choices_that_cannot_be_served_are_400(body: dict[str, Any], words: str) -> None:
    with pytest.raises(APIError) as failure:
        read_tools(body)
    assert failure.value.status == 400 and words in failure.value.message


# ---------------------------------------------------------------- shaping the output


@pytest.mark.parametrize(
    "pieces", split_every_way('{"name": "get_weather", "arguments": {"a": {"b": "}"}} }')
)
def test_required_streams_exactly_the_arguments(pieces: list[str]) -> None:
    emits, finish = run(ToolPlan("required", (WEATHER, TIME)).shaper(), pieces)
    assert finish == "tool_calls"
    assert arguments_streamed(emits) == '{"a": {"b": "}"}}'
    assert merge_deltas(emits)["tool_calls"][0]["function"]["name"] == "get_weather"


def test_required_cut_off_is_a_partial_call_with_length() -> None:
    emits, finish = run(
        ToolPlan("required", (WEATHER,)).shaper(),
        list('{"name": "get_weather", "arguments": {"ci'),
        "length",
    )
    assert finish == "length"
    assert arguments_streamed(emits) == '{"ci'


def test_required_cut_off_before_the_name_is_content() -> None:
    emits, finish = run(ToolPlan("required", (WEATHER,)).shaper(), ['{"name": "get_'], "length")
    assert finish == "length"
    assert merge_deltas(emits) == {"role": "assistant", "content": '{"name": "get_'}


@pytest.mark.parametrize("pieces", split_every_way('{ "city": "Paris" } '))
def test_forced_streams_the_whole_output_as_arguments(pieces: list[str]) -> None:
    emits, finish = run(ToolPlan("forced", (WEATHER,), forced="get_weather").shaper(), pieces)
    assert finish == "tool_calls"
    assert arguments_streamed(emits) == '{ "city": "Paris" }'


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
        '{"name": "get_time", "arguments": {}}',
        ' <tool_call>{"name": "get_time", "arguments": "{}"}',
    ],
)
def test_auto_reads_a_whole_output_that_is_a_call(text: str) -> None:
    for pieces in split_every_way(text):
        emits, finish = run(ToolPlan("auto", (WEATHER, TIME)).shaper(), pieces)
        assert finish == "tool_calls"
        message = merge_deltas(emits)
        assert message["content"] is None
        assert [call["function"] for call in message["tool_calls"]] == [
            {"name": "get_time", "arguments": "{}"}
        ]


def test_auto_reads_several_calls() -> None:
    text = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n' * 2
    emits, finish = run(ToolPlan("auto", (TIME,)).shaper(), [text])
    calls = merge_deltas(emits)["tool_calls"]
    assert finish == "tool_calls" and len(calls) == 2 and calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize(
    "text",
    [
        "It is sunny.",
        '{"name": "get_stock", "arguments": {}}',  # not a declared function
        '{"name": "get_time", "arguments": {}} and more',
        "<tool_response>sunny</tool_response>",
    ],
)
def test_auto_answers_anything_else_as_text(text: str) -> None:
    for pieces in split_every_way(text):
        emits, finish = run(ToolPlan("auto", (TIME,)).shaper(), pieces)
        assert finish == "stop"
        assert merge_deltas(emits) == {"role": "assistant", "content": text}


def test_auto_streams_text_once_it_cannot_be_a_call() -> None:
    shaper = ToolPlan("auto", (TIME,)).shaper()
    assert shaper.feed("<tool", ()) == []
    assert [emit.delta for emit in shaper.feed("_resp", ())] == [{"content": "<tool_resp"}]
    assert [emit.delta for emit in shaper.feed("onse", ())] == [{"content": "onse"}]


# ---------------------------------------------------------------- the chat prompt


@pytest.mark.model
def test_roles_the_template_does_not_know_are_mapped(engine: Engine) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
        {"role": "assistant", "content": None, "refusal": "No."},
    ]
    prompt = asyncio.run(render_chat_prompt(engine, messages, TOOLS))
    assert "<|im_start|>developer" not in prompt and "<|im_start|>tool" not in prompt
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\nYou may call one of the functions")
    assert json.dumps(TOOLS[0]) in prompt
    assert '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\nnoon\n</tool_response><|im_end|>" in prompt
    assert "<|im_start|>assistant\nNo.<|im_end|>" in prompt


@pytest.mark.model
def test_without_tools_the_prompt_is_the_templates_own(engine: Engine) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert asyncio.run(render_chat_prompt(engine, messages, None)) == engine.render_chat(messages)
