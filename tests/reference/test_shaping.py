"""The response objects, from hand-made logprobs and deltas: no model, no HTTP, no event loop."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import pytest

from reference.engine import PromptLogprobs, TokenLogprob, TopLogprob
from reference.shaping import (
    Echo,
    Kind,
    ResponseBuilder,
    best_choices,
    chat_logprobs,
    echo_logprobs,
    joined_logprobs,
    legacy_logprobs,
    mean_logprob,
)
from reference.tool_calls import Emit

EMPTY_LEGACY: dict[str, list[Any]] = {
    "tokens": [],
    "token_logprobs": [],
    "top_logprobs": [],
    "text_offset": [],
}


def entry(token: str, logprob: float, *top: tuple[str, float]) -> TokenLogprob:
    """A sampled token with its alternatives, each as (text, logprob)."""
    return TokenLogprob(
        token,
        token.encode(),
        logprob,
        tuple(TopLogprob(text, text.encode(), value) for text, value in top),
    )


ONCE = entry("Once", -0.5, ("Once", -0.5), ("One", -1.5))
UPON = entry(" upon", -0.25, (" upon", -0.25))


def builder(kind: Kind = "completion", *, logprobs: bool = True) -> ResponseBuilder:
    return ResponseBuilder(kind, "asha", prompt_tokens=5, logprobs=logprobs)


# ---------------------------------------------------------------- logprobs


def test_chat_logprobs_carry_bytes_and_alternatives() -> None:
    partial = TokenLogprob("\ufffd", b"\xc3", -2.0)
    assert chat_logprobs([ONCE, partial]) == {
        "content": [
            {
                "token": "Once",
                "logprob": -0.5,
                "bytes": list(b"Once"),
                "top_logprobs": [
                    {"token": "Once", "logprob": -0.5, "bytes": list(b"Once")},
                    {"token": "One", "logprob": -1.5, "bytes": list(b"One")},
                ],
            },
            {"token": "\ufffd", "logprob": -2.0, "bytes": [0xC3], "top_logprobs": []},
        ]
    }


def test_legacy_logprobs_count_offsets_from_where_the_text_starts() -> None:
    assert legacy_logprobs([ONCE, UPON], 7) == {
        "tokens": ["Once", " upon"],
        "token_logprobs": [-0.5, -0.25],
        "top_logprobs": [{"Once": -0.5, "One": -1.5}, {" upon": -0.25}],
        "text_offset": [7, 11],
    }
    assert legacy_logprobs([], 3) == EMPTY_LEGACY


def test_echo_logprobs_report_the_first_prompt_token_with_nulls() -> None:
    prompt = PromptLogprobs((b"Once", b" upon"), (UPON,))
    assert echo_logprobs(prompt) == {
        "tokens": ["Once", " upon"],
        "token_logprobs": [None, -0.25],
        "top_logprobs": [None, {" upon": -0.25}],
        "text_offset": [0, 4],
    }
    assert echo_logprobs(PromptLogprobs((), ())) == EMPTY_LEGACY


def test_echo_offsets_count_only_complete_characters() -> None:
    # "é" is split over two tokens: the second begins no later than the first in the text.
    halves = (entry("\ufffd", -1.0), entry("x", -1.0))
    shaped = echo_logprobs(PromptLogprobs((b"\xc3", b"\xa9", b"x"), halves))
    assert shaped["tokens"] == ["\ufffd", "\ufffd", "x"]
    assert shaped["text_offset"] == [0, 0, 1]


def test_joined_logprobs_concatenate_each_list_and_skip_the_absent() -> None:
    first = legacy_logprobs([ONCE], 0)
    second = legacy_logprobs([UPON], 4)
    assert joined_logprobs(first, None, second) == legacy_logprobs([ONCE, UPON], 0)
    assert joined_logprobs(None, first) == first
    assert joined_logprobs() is None and joined_logprobs(None, None) is None


def test_mean_logprob_scores_per_token_and_nothing_lowest() -> None:
    assert mean_logprob([ONCE, UPON]) == -0.375
    assert mean_logprob([]) == -math.inf


# ---------------------------------------------------------------- choices and objects


def test_ids_name_the_kind_and_usage_adds_up() -> None:
    chat, completion = builder("chat"), builder("completion")
    assert chat.id.startswith("chatcmpl-") and completion.id.startswith("cmpl-")
    assert chat.id != builder("chat").id
    completion.completion_tokens += 3
    assert completion.usage() == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_logprobs_only_when_asked_for_in_the_kinds_shape(kind: Kind) -> None:
    assert builder(kind, logprobs=False).logprobs([ONCE], 0) is None
    shaped = builder(kind).logprobs([ONCE], 2)
    assert shaped == (chat_logprobs([ONCE]) if kind == "chat" else legacy_logprobs([ONCE], 2))


def test_a_chat_choice_is_its_merged_message() -> None:
    emits = [Emit({"content": "Once"}, (ONCE,)), Emit({"content": " upon"}, (UPON,))]
    score, choice = builder("chat").choice(emits, "length")
    assert score == -0.375
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "Once upon"},
        "logprobs": chat_logprobs([ONCE, UPON]),
        "finish_reason": "length",
    }


def test_a_completion_choice_carries_its_text_last() -> None:
    _, choice = builder(logprobs=False).choice([Emit({"content": "Once"})], "stop")
    assert list(choice) == ["index", "message", "logprobs", "finish_reason", "text"]
    assert choice["text"] == "Once" and choice["logprobs"] is None


def test_an_echoed_choice_leads_with_the_prompts_logprobs() -> None:
    prompt = PromptLogprobs((b"Once",), ())
    echo = Echo("Once", prompt)
    emits = [Emit({"content": "Once"}), Emit({"content": " upon"}, (UPON,))]
    score, choice = builder().choice(emits, "length", echo)
    assert score == -0.25  # the prompt's tokens do not count
    assert choice["text"] == "Once upon"
    assert choice["logprobs"] == {
        "tokens": ["Once", " upon"],
        "token_logprobs": [None, -0.25],
        "top_logprobs": [None, {" upon": -0.25}],
        "text_offset": [0, 4],
    }


def test_an_echo_without_prompt_logprobs_adds_none() -> None:
    echo = Echo("Once")
    assert echo.legacy_logprobs() is None
    emits = [Emit({"content": "Once"}), Emit({"content": " upon"}, (UPON,))]
    _, choice = builder().choice(emits, "stop", echo)
    assert choice["logprobs"] == legacy_logprobs([UPON], 4)


def test_a_tool_call_choice_has_no_content() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    emits = [
        Emit({"tool_calls": [{**call, "function": {"name": "f", "arguments": ""}}]}),
        Emit({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
    ]
    _, choice = builder("chat", logprobs=False).choice(emits, "tool_calls")
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


def scored(*scores: float) -> list[tuple[float, dict[str, Any]]]:
    return [(score, {"order": i}) for i, score in enumerate(scores)]


def test_best_choices_are_the_highest_scores_first_ties_in_order() -> None:
    best = best_choices(scored(-2.0, -1.0, -math.inf, -1.0), 3)
    assert [choice["order"] for choice in best] == [1, 3, 0]


def test_best_choices_keep_the_order_when_none_is_dropped() -> None:
    best = best_choices(scored(-2.0, -1.0), 2)
    assert [choice["order"] for choice in best] == [0, 1]


def test_the_completion_object_holds_the_choices_and_the_usage() -> None:
    response = builder("chat")
    response.completion_tokens = 2
    choices = [{"index": 0}]
    assert response.completion(choices) == {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created,
        "model": "asha",
        "choices": choices,
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_every_chunk_shares_the_id_and_has_no_usage(kind: Kind) -> None:
    response = builder(kind)
    chunk = response.chunk(3, {"content": "hi"}, finish_reason="stop", logprobs={"content": []})
    choice: dict[str, Any] = {
        "index": 3,
        "delta": {"content": "hi"},
        "logprobs": {"content": []},
        "finish_reason": "stop",
    }
    if kind == "completion":
        choice["text"] = "hi"
    assert chunk == {
        "id": response.id,
        "object": "chat.completion.chunk",
        "created": response.created,
        "model": "asha",
        "choices": [choice],
        "usage": None,
    }


def test_a_completion_chunk_without_content_has_empty_text() -> None:
    (choice,) = builder().chunk(0, {"role": "assistant", "content": None})["choices"]
    assert choice["text"] == "" and choice["logprobs"] is None and choice["finish_reason"] is None


def test_the_usage_chunk_has_no_choices() -> None:
    response = builder()
    response.completion_tokens = 4
    chunk = response.usage_chunk()
    assert chunk["id"] == response.id and chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"] == []
    assert chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_shaping_imports_neither_http_nor_the_scheduler() -> None:
    unwanted = ("falcon", "reference.errors", "reference.scheduler")
    code = f"import sys, reference.shaping; print([m for m in {unwanted} if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout == "[]\n"
