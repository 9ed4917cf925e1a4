"""Plans, below HTTP: each choice's params, and the 400s found before the engine is asked."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from reference.engine import Engine, SamplingParams
from reference.errors import APIError
from reference.planning import MAX_CHOICES, Plan, Prompt, plan_chat, plan_completion

PROMPTS = (Prompt("Once", (1, 2)), Prompt("The cat", (1, 3, 4)))
#: The refusals below come before any use of the engine: none is needed.
NO_ENGINE = cast(Engine, None)


def plan(**fields: Any) -> Plan:
    fields.setdefault("params", SamplingParams(max_tokens=4, seed=7))
    return Plan(kind="completion", model="asha", prompts=PROMPTS, **fields)


def test_choices_are_n_per_prompt_each_with_its_own_seed() -> None:
    choices = plan(n=2).choices()
    assert [(index, prompt.text) for index, prompt, _ in choices] == [
        (0, "Once"),
        (1, "Once"),
        (2, "The cat"),
        (3, "The cat"),
    ]
    assert [params.seed for _, _, params in choices] == [7, 8, 7, 8]


def test_without_a_seed_every_choice_has_the_same_params() -> None:
    unseeded = SamplingParams(max_tokens=4)
    assert all(params is unseeded for _, _, params in plan(n=3, params=unseeded).choices())


def test_best_of_generates_more_candidates_scored_by_logprobs() -> None:
    ranked = plan(n=1, best_of=3)
    assert ranked.candidates == 3
    assert ranked.params_for(2).top_logprobs == 0 and ranked.params_for(2).seed == 9
    asked = plan(n=1, best_of=3, params=SamplingParams(max_tokens=4, top_logprobs=2))
    assert asked.params_for(0).top_logprobs == 2
    assert plan(n=2).params_for(1).top_logprobs is None
    assert plan(n=2, best_of=2).candidates == 2


def test_prompt_tokens_count_every_prompt() -> None:
    assert plan().prompt_tokens == 5


def refusal(planner: Any, body: dict[str, Any]) -> str:
    with pytest.raises(APIError) as failure:
        asyncio.run(planner(body, model="asha", engine=NO_ENGINE))
    assert failure.value.status == 400
    return failure.value.message


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"modalities": ["text", "audio"]}, "'modalities'"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "'audio'"),
        ({"top_logprobs": 2}, "'top_logprobs' needs 'logprobs'"),
        ({"n": MAX_CHOICES + 1}, f"'n' may be at most {MAX_CHOICES}"),
        ({"tool_choice": "required"}, "'tool_choice'"),
    ],
)
def test_chat_refusals_name_the_field(fields: dict[str, Any], words: str) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], **fields}
    assert words in refusal(plan_chat, body)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"suffix": "end"}, "'suffix' is not supported by model 'asha'"),
        ({"n": 3, "best_of": 2}, "'best_of' (2) must be at least 'n' (3)"),
        ({"best_of": 2, "stream": True}, "'best_of' greater than 'n' cannot be streamed"),
        ({"prompt": ["a", "b"], "best_of": 65}, "2 prompts x 'best_of' 65 is more than 128"),
        ({"prompt": ["a"] * 129}, "129 prompts x 'n' 1 is more than 128"),
    ],
)
def test_completion_refusals_name_the_field(fields: dict[str, Any], words: str) -> None:
    body = {"prompt": "Once", **fields}
    assert words in refusal(plan_completion, body)
