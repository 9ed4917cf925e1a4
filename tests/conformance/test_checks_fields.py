"""The FIELD checks on canned answers: each passes a right answer and fails a wrong one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.checks.fields import (
    check_banned_token,
    check_best_of,
    check_chat_logprobs,
    check_echo,
    check_forced_token,
    check_function_call,
    check_json_answer,
    check_legacy_logprobs,
    check_prompt_list,
    check_status,
    check_tool_finish,
    check_tool_forced,
    check_tool_none,
    check_tool_required,
    check_tool_stream,
    complete_contents,
    named_refusal,
    repeated_piece,
    streamed_response,
)
from conformance.checks.streaming import StreamObservation

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = {"get_weather": PARAMETERS}


def ids(findings: list[Any]) -> set[str]:
    return {f.requirement_id for f in findings}


def answer(*choices: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": i, **c} for i, c in enumerate(choices)]}


def message(content: Any, finish: str = "stop", **extra: Any) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": content}, "finish_reason": finish, **extra}


def entry(token: str, logprob: float = -0.5, top: int = 2) -> dict[str, Any]:
    raw = list(token.encode())
    alternatives = [{"token": token, "logprob": logprob, "bytes": raw}] * top
    return {"token": token, "logprob": logprob, "bytes": raw, "top_logprobs": alternatives}


def stream_of(*chunks: dict[str, Any]) -> StreamObservation:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return StreamObservation.from_bytes(body + b"data: [DONE]\n\n")


def chunk(index: int, delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "finish_reason": None, **extra}
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "choices": [choice]}


# ------------------------------------------------------------------------------ refusals, status


def test_named_refusal_needs_a_400_that_names_the_field() -> None:
    body = {"error": "'suffix' is not supported", "errorCode": 400}
    assert named_refusal(400, body, ["suffix"]) == "'suffix' is not supported"
    assert named_refusal(400, {"error": "bad request"}, ["suffix"]) is None
    assert named_refusal(422, body, ["suffix"]) is None


def test_check_status() -> None:
    assert check_status("FIELD-SUFFIX", 400, lambda s: s == 400, "x") == []
    assert ids(check_status("FIELD-SUFFIX", 422, lambda s: s == 400, "x")) == {"FIELD-SUFFIX"}
    assert check_status("FIELD-SUFFIX", None, lambda s: s == 400, "x") == []


# ------------------------------------------------------------------------------ choices


def test_best_of_and_prompt_list_count_choices() -> None:
    assert check_best_of(answer(message("a")), 1) == []
    assert ids(check_best_of(answer(message("a"), message("b")), 1)) == {"FIELD-BEST-OF"}
    four = answer(*(message(str(i)) for i in range(4)))
    assert check_prompt_list(four, 2, 2) == []
    assert ids(check_prompt_list(answer(message("a"), message("b")), 2, 2)) == {"FIELD-PROMPT-LIST"}


def test_echo() -> None:
    assert check_echo(answer(message("Once upon a time, the")), "Once upon a time") == []
    assert ids(check_echo(answer(message(", the")), "Once upon a time")) == {"FIELD-ECHO"}


# ------------------------------------------------------------------------------ logprobs


def test_chat_logprobs_pass_and_fail() -> None:
    good = answer(message("Hi there", logprobs={"content": [entry("Hi"), entry(" there")]}))
    assert check_chat_logprobs(good, 2) == []
    missing = answer(message("Hi", logprobs=None))
    assert ids(check_chat_logprobs(missing, 2)) == {"FIELD-CHAT-LOGPROBS"}
    short = answer(message("Hi", logprobs={"content": [entry("Hi", top=1)]}))
    assert "top_logprobs" in check_chat_logprobs(short, 2)[0].message
    wrong_join = answer(message("Hello", logprobs={"content": [entry("Hi")]}))
    assert ids(check_chat_logprobs(wrong_join, 2)) == {"FIELD-CHAT-LOGPROBS"}
    positive = answer(message("Hi", logprobs={"content": [entry("Hi", logprob=0.5)]}))
    assert ids(check_chat_logprobs(positive, 2)) == {"FIELD-CHAT-LOGPROBS"}


def test_chat_logprobs_partial_characters_join_by_bytes() -> None:
    raw = list("é".encode())
    halves = [
        {"token": "\ufffd", "logprob": -1.0, "bytes": raw[:1], "top_logprobs": []},
        {"token": "\ufffd", "logprob": -1.0, "bytes": raw[1:], "top_logprobs": []},
    ]
    assert check_chat_logprobs(answer(message("é", logprobs={"content": halves})), 0) == []


def legacy(tokens: list[str], offsets: list[int] | None = None, k: int = 2) -> dict[str, Any]:
    return {
        "tokens": tokens,
        "token_logprobs": [-0.5] * len(tokens),
        "top_logprobs": [{t: -0.5, f"{t}x": -1.0} if k else {} for t in tokens],
        "text_offset": offsets if offsets is not None else list(range(len(tokens))),
    }


def test_legacy_logprobs_pass_and_fail() -> None:
    assert check_legacy_logprobs(answer(message(", the", logprobs=legacy([",", " the"]))), 2) == []
    backwards = answer(message(", the", logprobs=legacy([",", " the"], [1, 0])))
    assert "text_offset" in check_legacy_logprobs(backwards, 2)[0].message
    unequal = legacy([",", " the"])
    unequal["token_logprobs"] = [-0.5]
    assert (
        "length" in check_legacy_logprobs(answer(message(", the", logprobs=unequal)), 2)[0].message
    )
    wrong = answer(message(", a", logprobs=legacy([",", " the"])))
    assert ids(check_legacy_logprobs(wrong, 2)) == {"FIELD-LEGACY-LOGPROBS"}
    assert ids(check_legacy_logprobs(answer(message("x", logprobs=None)), 2)) == {
        "FIELD-LEGACY-LOGPROBS"
    }
    assert check_legacy_logprobs(answer(message("x", logprobs=legacy(["x"], k=0))), 0) == []


def test_streamed_response_joins_texts_and_logprobs() -> None:
    obs = stream_of(
        chunk(0, {"role": "assistant", "content": ""}),
        chunk(0, {"content": "Hi"}, logprobs={"content": [entry("Hi")]}),
        chunk(0, {"content": " there"}, logprobs={"content": [entry(" there")]}),
        {**chunk(0, {}), "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    )
    rebuilt = streamed_response(obs)
    assert rebuilt["choices"][0]["message"]["content"] == "Hi there"
    assert rebuilt["choices"][0]["finish_reason"] == "length"
    assert check_chat_logprobs(rebuilt, 2) == []
    unlogged = stream_of(chunk(0, {"role": "assistant", "content": "Hi"}))
    assert ids(check_chat_logprobs(streamed_response(unlogged), 2)) == {"FIELD-CHAT-LOGPROBS"}


# ------------------------------------------------------------------------------ logit_bias


@pytest.mark.parametrize(
    ("text", "count", "piece"),
    [("()()()()", 4, "()"), (" the the the", 3, " the"), ("the the the", 3, "the ")],
)
def test_repeated_piece_finds_the_piece(text: str, count: int, piece: str) -> None:
    assert repeated_piece(text, count) == piece


def test_repeated_piece_refuses_other_text() -> None:
    assert repeated_piece("I'm glad you", 4) is None
    assert repeated_piece("", 3) is None
    assert repeated_piece("the the the", 3, exact=True) is None
    assert repeated_piece("()()()", 3, exact=True) == "()"


def test_forced_and_banned_tokens() -> None:
    assert check_forced_token("()()()()", 4, "1000") == []
    assert ids(check_forced_token("I'm glad you", 4, "1000")) == {"FIELD-LOGIT-BIAS-FORCE"}
    assert check_banned_token(["-", "1", ")"], "()", "1000") == []
    assert ids(check_banned_token(["()", "("], "()", "1000")) == {"FIELD-LOGIT-BIAS-BAN"}


# ------------------------------------------------------------------------------ response_format


def test_json_answers() -> None:
    contents = complete_contents(answer(message('{"ok": true}'), message("{", finish="length")))
    assert contents == {0: '{"ok": true}'}
    assert check_json_answer(contents, "FIELD-JSON-OBJECT") == []
    assert ids(check_json_answer({0: "ok!"}, "FIELD-JSON-OBJECT")) == {"FIELD-JSON-OBJECT"}
    assert ids(check_json_answer({0: "[1, 2]"}, "FIELD-JSON-OBJECT")) == {"FIELD-JSON-OBJECT"}
    assert check_json_answer({0: "[1, 2]"}, "FIELD-JSON-SCHEMA", {"type": "array"}) == []
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    assert check_json_answer(contents, "FIELD-JSON-SCHEMA", schema) == []
    bad = check_json_answer({0: '{"ok": "yes"}'}, "FIELD-JSON-SCHEMA", schema)
    assert ids(bad) == {"FIELD-JSON-SCHEMA"}


# ------------------------------------------------------------------------------ tools


def called(name: str = "get_weather", arguments: str = '{"city": "Paris"}', **kw: Any) -> Any:
    call = {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return message(None, finish=kw.get("finish", "tool_calls"), **{}) | {
        "message": {"role": "assistant", "content": None, "tool_calls": [call]}
    }


def test_tool_forced() -> None:
    assert check_tool_forced(answer(called()), "get_weather", TOOLS) == []
    assert ids(check_tool_forced(answer(message("Sunny")), "get_weather", TOOLS)) == {
        "FIELD-TOOL-FORCED"
    }
    assert (
        "not valid"
        in check_tool_forced(answer(called(arguments='{"town": 1}')), "get_weather", TOOLS)[
            0
        ].message
    )
    # finish_reason is FIELD-TOOL-FINISH's alone: one fault, one requirement.
    assert check_tool_forced(answer(called(finish="stop")), "get_weather", TOOLS) == []
    assert (
        "parse"
        in check_tool_forced(answer(called(arguments="{oops")), "get_weather", TOOLS)[0].message
    )


def test_tool_required_and_none() -> None:
    assert check_tool_required(answer(called()), TOOLS) == []
    assert ids(check_tool_required(answer(called(name="other")), TOOLS)) == {"FIELD-TOOL-REQUIRED"}
    assert check_tool_none(answer(message("Sunny"))) == []
    assert ids(check_tool_none(answer(called()))) == {"FIELD-TOOL-NONE"}
    assert check_tool_required(answer(called(finish="stop")), TOOLS) == []
    # A choice without calls that ends 'tool_calls' is FIELD-TOOL-FINISH's, not this rule's.
    assert check_tool_none(answer(message("Sunny", finish="tool_calls"))) == []
    legacy = answer({"message": {"role": "assistant", "function_call": {"name": "get_weather"}}})
    (finding,) = check_tool_none(legacy)
    assert "function_call" in finding.message


def test_tool_finish() -> None:
    assert check_tool_finish(answer(called(), message("Sunny")), "the answer") == []
    assert check_tool_finish(answer(called(finish="length")), "the answer") == []  # cut
    assert check_tool_finish(answer(message("Sun", finish="length")), "the answer") == []
    (stopped,) = check_tool_finish(answer(called(finish="stop")), "the stream for auto")
    assert stopped.requirement_id == "FIELD-TOOL-FINISH"
    assert "the stream for auto" in stopped.message and "'stop'" in stopped.message
    (claimed,) = check_tool_finish(answer(message("Sunny", finish="tool_calls")), "the answer")
    assert "no tool calls" in claimed.message


def tool_delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


def test_tool_stream() -> None:
    first = tool_delta(0, id="c1", type="function", function={"name": "get_weather"})
    good = stream_of(
        chunk(0, {"role": "assistant", **first}),
        chunk(0, tool_delta(0, function={"arguments": '{"city": '})),
        chunk(0, tool_delta(0, function={"arguments": '"Paris"}'})),
    )
    assert check_tool_stream(good, "get_weather", TOOLS) == []
    no_id = stream_of(
        chunk(0, {"role": "assistant", **tool_delta(0, type="function", function={"name": "x"})})
    )
    assert ids(check_tool_stream(no_id, "get_weather", TOOLS)) == {"FIELD-TOOL-STREAMED"}
    prose = stream_of(chunk(0, {"role": "assistant", "content": "Sunny"}))
    assert "no delta.tool_calls" in check_tool_stream(prose, "get_weather", TOOLS)[0].message
    broken = stream_of(
        chunk(0, {"role": "assistant", **first}),
        chunk(0, tool_delta(0, function={"arguments": "{oops"})),
    )
    assert ids(check_tool_stream(broken, "get_weather", TOOLS)) == {"FIELD-TOOL-STREAMED"}


def test_tool_stream_later_deltas_carry_no_id_or_name() -> None:
    first = tool_delta(0, id="c1", type="function", function={"name": "get_weather"})
    tolerated = stream_of(
        chunk(0, {"role": "assistant", **first}),
        # type is replaced, not joined, by clients; a null id or name is skipped
        chunk(0, tool_delta(0, type="function", id=None, function={"arguments": '{"city": '})),
        chunk(0, tool_delta(0, function={"name": None, "arguments": '"Paris"}'})),
    )
    assert check_tool_stream(tolerated, "get_weather", TOOLS) == []
    header = {"id": "c1", "type": "function"}
    repeated = stream_of(
        chunk(0, {"role": "assistant", **first}),
        chunk(0, tool_delta(0, **header, function={"name": "get_weather", "arguments": "{"})),
        chunk(0, tool_delta(0, **header, function={"name": "get_weather", "arguments": '"city"'})),
        chunk(0, tool_delta(0, function={"arguments": ': "Paris"}'})),
    )
    (finding,) = check_tool_stream(repeated, "get_weather", TOOLS)
    assert finding.requirement_id == "FIELD-TOOL-STREAMED"
    assert "repeats its id and function.name in 2 later delta(s) (events 2, 3)" in finding.message
    assert "get_weatherget_weather" in finding.message
    assert finding.event_numbers == (2, 3)


def test_tool_stream_arguments_are_strings() -> None:
    first = tool_delta(0, id="c1", type="function", function={"name": "get_weather"})
    as_object = stream_of(
        chunk(0, {"role": "assistant", **first}),
        chunk(0, tool_delta(0, function={"arguments": {"city": "Paris"}})),
    )
    (finding,) = check_tool_stream(as_object, "get_weather", TOOLS)
    assert "function.arguments as a JSON object in event 2" in finding.message
    assert "joined" not in finding.message  # one problem, said once
    whole = tool_delta(0, id="c1", type="function", function={"name": "get_weather"})
    whole["tool_calls"][0]["function"]["arguments"] = ["Paris"]
    (finding,) = check_tool_stream(stream_of(chunk(0, {"role": "assistant", **whole})), "x", TOOLS)
    assert "as a JSON array in event 1" in finding.message


def test_streamed_response_folds_tool_calls_and_usage() -> None:
    first = tool_delta(0, id="c1", type="function", function={"name": "get_weather"})
    obs = stream_of(
        chunk(0, {"role": "assistant", "content": None, **first}),
        chunk(0, tool_delta(0, id="c1", function={"name": "get_weather", "arguments": "{}"})),
        chunk(0, {}, finish_reason="tool_calls"),
        {"id": "x", "choices": [], "usage": {"completion_tokens": 3}},
    )
    rebuilt = streamed_response(obs)
    (choice,) = rebuilt["choices"]
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    assert choice["message"] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert choice["finish_reason"] == "tool_calls"
    assert rebuilt["usage"] == {"completion_tokens": 3}
    assert check_tool_finish(rebuilt, "the stream") == []
    assert streamed_response(stream_of(chunk(0, {"content": "Hi"})))["usage"] is None


def test_function_call() -> None:
    call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    good = answer(message(None, finish="function_call") | {"message": {"function_call": call}})
    assert check_function_call(good, "get_weather", PARAMETERS) == []
    assert ids(check_function_call(answer(message("Sunny")), "get_weather", PARAMETERS)) == {
        "FIELD-FUNCTION-CALL"
    }
    wrong = answer({"message": {"function_call": {**call, "arguments": "{}"}}})
    assert "not valid" in check_function_call(wrong, "get_weather", PARAMETERS)[0].message
    cut = answer(
        {"message": {"function_call": {**call, "arguments": "{"}}, "finish_reason": "length"}
    )
    assert check_function_call(cut, "get_weather", PARAMETERS) == []
