"""Every documented request field, through the official `openai` package against the real server.

Each test sends one field (or one combination) and checks the behaviour a client observes, and
every body against the contract. Where the tiny model's choice of words would make a test flaky,
the output is pinned by temperature 0, a seed, a grammar or a logit bias, not by a looser check.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import openai
import pytest

from reference.engine import Engine, Piece, SamplingParams
from tests.reference._http import CONTRACT, assert_conforms
from tests.reference._server import ServerProcess

if TYPE_CHECKING:
    from reference.engine import LlamaEngine

pytestmark = pytest.mark.model

ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather in a city", "parameters": CITY},
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}
#: The JSON a call to `get_time` is written as: short enough to finish within the token limit.
TIME_CALL = {
    "type": "object",
    "properties": {
        "name": {"const": "get_time"},
        "arguments": {"type": "object", "properties": {}, "additionalProperties": False},
    },
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
ASK_FOR_TIME_CALL = [
    {
        "role": "user",
        "content": 'Reply with exactly this JSON: {"name": "get_time", "arguments": {}}',
    }
]
#: Constrains the output to a call of `get_time`, so that the tests below see one for sure.
AS_TIME_CALL = {"type": "json_schema", "json_schema": {"name": "call", "schema": TIME_CALL}}


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120
    ) as opened:
        yield opened


def chat(client: openai.OpenAI, **fields: Any) -> Any:
    """A chat completion, checked against the contract."""
    fields = {"model": "asha", "messages": ASK, "max_tokens": 8, "temperature": 0, **fields}
    completion = client.chat.completions.create(**fields)
    body = completion.model_dump(exclude_unset=True)
    assert_conforms("createChatCompletion", 200, "application/json", body)
    return completion


def complete(client: openai.OpenAI, **fields: Any) -> Any:
    """A text completion, checked against the contract."""
    fields = {"model": "asha", "prompt": "Once upon a time", "max_tokens": 6, **fields}
    completion = client.completions.create(**fields)
    body = completion.model_dump(exclude_unset=True)
    assert_conforms("createCompletion", 200, "application/json", body)
    return completion


def chat_chunks(client: openai.OpenAI, **fields: Any) -> list[Any]:
    """A streamed chat completion's chunks, each checked against the contract."""
    fields = {"model": "asha", "messages": ASK, "max_tokens": 8, "temperature": 0, **fields}
    chunks = list(client.chat.completions.create(stream=True, **fields))
    validator = CONTRACT.schema_validator("ChatCompletionChunk")
    for chunk in chunks:
        errors = list(validator.iter_errors(chunk.model_dump(exclude_unset=True)))
        assert not errors, f"{chunk}: {errors[0].message[:200]}"
    return chunks


def bad_request(call: Any, **fields: Any) -> str:
    """The `error` of the 400 that `call(**fields)` must raise, checked against the contract."""
    with pytest.raises(openai.BadRequestError) as failure:
        call(**fields)
    body = failure.value.response.json()
    assert_conforms("createChatCompletion", 400, "application/json", body)
    return str(body["error"])


# ---------------------------------------------------------------- sampling fields


def test_n_gives_that_many_choices_each_with_its_finish(client: openai.OpenAI) -> None:
    completion = chat(client, n=3, temperature=1, seed=7, max_tokens=4)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert all(choice.finish_reason == "length" for choice in completion.choices)
    assert completion.usage.completion_tokens == 12
    again = chat(client, n=3, temperature=1, seed=7, max_tokens=4)
    contents = [choice.message.content for choice in completion.choices]
    assert contents == [choice.message.content for choice in again.choices]
    assert len(set(contents)) > 1  # seed + i per choice: the choices differ


def test_chat_logprobs_tokens_join_to_the_content(client: openai.OpenAI) -> None:
    completion = chat(client, logprobs=True, top_logprobs=3)
    choice = completion.choices[0]
    entries = choice.logprobs.content
    assert "".join(entry.token for entry in entries) == choice.message.content
    assert all(len(entry.top_logprobs) == 3 and entry.logprob <= 0 for entry in entries)
    # Greedy: each sampled token is the likeliest one.
    assert all(entry.token == entry.top_logprobs[0].token for entry in entries)


def test_legacy_logprobs_shape(client: openai.OpenAI) -> None:
    completion = complete(client, logprobs=2, temperature=0)
    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) == len(logprobs.top_logprobs)
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)
    offsets = [
        sum(len(token) for token in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))
    ]
    assert logprobs.text_offset == offsets


def test_logit_bias_minus_100_bans_a_token(client: openai.OpenAI, engine: Engine) -> None:
    first = chat(client, logprobs=True).choices[0].logprobs.content[0]
    (token,) = engine.tokenize(first.token, add_bos=False, special=False)
    banned = chat(client, logprobs=True, logit_bias={str(token): -100})
    assert first.token not in [entry.token for entry in banned.choices[0].logprobs.content]


def test_logit_bias_plus_100_forces_a_token(client: openai.OpenAI, engine: Engine) -> None:
    (token,) = engine.tokenize(" banana", add_bos=False, special=False)
    completion = chat(client, max_tokens=3, temperature=1, seed=3, logit_bias={str(token): 100})
    assert completion.choices[0].message.content == " banana" * 3


def test_response_format_json_object_is_an_object(client: openai.OpenAI) -> None:
    completion = chat(client, max_tokens=24, response_format={"type": "json_object"})
    choice = completion.choices[0]
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    else:
        assert choice.message.content.lstrip().startswith("{")


def test_response_format_json_schema_is_valid_against_it(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    completion = chat(
        client,
        max_tokens=16,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    assert completion.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)


def test_an_invalid_json_schema_is_a_400_that_says_why(client: openai.OpenAI) -> None:
    schema = {"type": "no-such-type"}
    error = bad_request(
        client.chat.completions.create,
        model="asha",
        messages=ASK,
        max_tokens=2,
        response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
    )
    assert "'response_format'" in error and "grammar" in error


# ---------------------------------------------------------------- tools


def arguments_of(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments, parsed and checked against the function's parameters."""
    arguments = json.loads(text)
    jsonschema.validate(arguments, schema)
    return arguments


def test_a_forced_tool_is_called_with_valid_arguments(client: openai.OpenAI) -> None:
    completion = chat(
        client,
        max_tokens=24,
        tools=[TIME, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments_of(call.function.arguments, CITY)


def test_a_forced_legacy_function_call(client: openai.OpenAI) -> None:
    completion = chat(
        client,
        max_tokens=24,
        functions=[WEATHER["function"]],
        function_call={"name": "get_weather"},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    arguments_of(choice.message.function_call.arguments, CITY)


def test_a_forced_tool_that_is_not_offered_is_a_400(client: openai.OpenAI) -> None:
    error = bad_request(
        client.chat.completions.create,
        model="asha",
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_stock"}},
    )
    assert "'get_stock'" in error and "'tool_choice'" in error


def test_required_gives_each_choice_its_own_call(client: openai.OpenAI) -> None:
    completion = chat(client, max_tokens=24, n=2, seed=1, tools=[WEATHER], tool_choice="required")
    ids = set()
    for choice in completion.choices:
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather"
        arguments_of(call.function.arguments, CITY)
        ids.add(call.id)
    assert len(ids) == 2


def test_none_never_answers_with_a_call(client: openai.OpenAI) -> None:
    # Even output that has the very shape of a call stays text under "none".
    completion = chat(
        client,
        messages=ASK_FOR_TIME_CALL,
        max_tokens=24,
        tools=[TIME],
        tool_choice="none",
        response_format=AS_TIME_CALL,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert json.loads(choice.message.content)["name"] == "get_time"


def test_auto_answers_text_when_the_model_writes_text(client: openai.OpenAI) -> None:
    choice = chat(client, tools=[WEATHER]).choices[0]
    assert choice.message.tool_calls is None
    assert choice.message.content and choice.finish_reason in ("stop", "length")


def test_auto_answers_a_call_when_the_output_is_one(client: openai.OpenAI) -> None:
    completion = chat(
        client,
        messages=ASK_FOR_TIME_CALL,
        max_tokens=24,
        tools=[TIME, WEATHER],
        response_format=AS_TIME_CALL,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_time"
    assert json.loads(call.function.arguments) == {}


def test_streamed_tool_call_deltas(client: openai.OpenAI) -> None:
    chunks = chat_chunks(client, max_tokens=24, tools=[WEATHER], tool_choice="required")
    deltas = [chunk.choices[0].delta for chunk in chunks]
    parts = [delta.tool_calls[0] for delta in deltas if delta.tool_calls]
    first, rest = parts[0], parts[1:]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "get_weather" and first.function.arguments == ""
    assert rest and all(part.id is None and part.function.name is None for part in rest)
    arguments = json.loads("".join(part.function.arguments for part in rest))
    jsonschema.validate(arguments, CITY)
    finishes = [chunk.choices[0].finish_reason for chunk in chunks]
    assert finishes[-1] == "tool_calls" and finishes.count(None) == len(finishes) - 1


def test_a_conversation_with_every_role_is_accepted(client: openai.OpenAI) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "user", "content": "What is the weather in Paris?", "name": "ann"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
        {"role": "assistant", "content": None, "function_call": call["function"]},
        {"role": "function", "name": "get_weather", "content": "Sunny"},
        {"role": "assistant", "content": None, "refusal": "I cannot say more."},
        {"role": "user", "content": [{"type": "text", "text": "And in Rome?"}]},
    ]
    completion = chat(client, messages=messages, tools=[WEATHER], max_tokens=4)
    assert completion.usage.prompt_tokens > 60
    assert completion.choices[0].finish_reason in ("stop", "length", "tool_calls")


# ---------------------------------------------------------------- completions fields


def test_a_prompt_list_gives_n_choices_per_prompt(client: openai.OpenAI) -> None:
    completion = complete(client, prompt=["Once upon a time", "The cat"], n=2, temperature=0)
    assert [choice.index for choice in completion.choices] == [0, 1, 2, 3]
    texts = [choice.text for choice in completion.choices]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]


def test_echo_prepends_the_prompt(client: openai.OpenAI) -> None:
    plain = complete(client, temperature=0, max_tokens=3).choices[0].text
    echoed = complete(client, temperature=0, max_tokens=3, echo=True).choices[0].text
    assert echoed == "Once upon a time" + plain


ECHOED = "The lighthouse keeper climbed the stairs and lit the lamp"
LEGACY_FIELDS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


@pytest.fixture(scope="module")
def fresh_engine(model_path: Path) -> Iterator[LlamaEngine]:
    """An engine loaded as the server loads its model, with nothing run on it."""
    from reference.engine import load_engine

    loaded = load_engine(model_path)
    yield loaded
    loaded.close()


def legacy(logprobs: Any) -> dict[str, list[Any]]:
    return {key: list(getattr(logprobs, key)) for key in LEGACY_FIELDS}


def test_echo_with_logprobs_reports_the_prompt_tokens_first(client: openai.OpenAI) -> None:
    fields = {"prompt": ECHOED, "logprobs": 3, "temperature": 0, "max_tokens": 4}
    completion = complete(client, echo=True, **fields)
    (choice,) = completion.choices
    logprobs = choice.logprobs
    assert choice.text.startswith(ECHOED) and len(choice.text) > len(ECHOED)
    assert "".join(logprobs.tokens) == choice.text
    count = completion.usage.prompt_tokens
    assert {len(values) for values in legacy(logprobs).values()} == {
        count + completion.usage.completion_tokens
    }
    # Nothing predicts the first token: OpenAI reports it with nulls.
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(value <= 0 for value in logprobs.token_logprobs[1:])
    assert all(len(top) == 3 for top in logprobs.top_logprobs[1:])
    offsets = logprobs.text_offset
    assert offsets[0] == 0 and all(a < b for a, b in itertools.pairwise(offsets))
    for offset, token in zip(offsets, logprobs.tokens, strict=True):
        assert choice.text[offset : offset + len(token)] == token
    # After the prompt's entries come exactly those a request without echo reports.
    plain = legacy(complete(client, **fields).choices[0].logprobs)
    tail = {key: values[count:] for key, values in legacy(logprobs).items()}
    tail["text_offset"] = [offset - len(ECHOED) for offset in tail["text_offset"]]
    assert tail == plain


def test_echo_logprobs_are_a_fresh_engines_and_leave_the_cache_sound(
    client: openai.OpenAI, fresh_engine: LlamaEngine
) -> None:
    tokens = fresh_engine.tokenize(ECHOED, add_bos=True, special=True)
    expected = fresh_engine.prompt_logprobs(tokens, 2, threading.Event())
    assert expected is not None
    params = SamplingParams(max_tokens=4, temperature=0, top_logprobs=2)
    generated = [
        entry
        for item in fresh_engine.generate(tokens, params, threading.Event())
        if isinstance(item, Piece)
        for entry in item.logprobs
    ]
    fields = {"prompt": ECHOED, "logprobs": 2, "temperature": 0, "max_tokens": 4}
    complete(client, **fields)  # the server's cache holds the prompt now
    echoed = complete(client, echo=True, **fields).choices[0].logprobs
    # Exact: the same evaluation as a fresh engine's, whatever the server's cache held.
    assert echoed.token_logprobs[1 : len(tokens)] == [entry.logprob for entry in expected.logprobs]
    assert echoed.top_logprobs[1 : len(tokens)] == [
        {top.token: top.logprob for top in entry.top} for entry in expected.logprobs
    ]
    # And the cache it leaves behind still gives what a fresh engine gives.
    after = complete(client, **fields).choices[0].logprobs
    assert after.tokens == [entry.token for entry in generated]
    assert after.token_logprobs == [entry.logprob for entry in generated]


def test_streamed_echo_carries_the_prompt_logprobs_on_its_delta(client: openai.OpenAI) -> None:
    fields = {"prompt": ECHOED, "echo": True, "logprobs": 2, "temperature": 0, "max_tokens": 3}
    whole = complete(client, n=2, **fields)
    # Both choices of the prompt report its logprobs, computed once.
    assert legacy(whole.choices[0].logprobs) == legacy(whole.choices[1].logprobs)
    chunks = list(client.completions.create(model="asha", stream=True, n=2, **fields))
    validator = CONTRACT.schema_validator("CompletionChunk")
    for chunk in chunks:
        errors = list(validator.iter_errors(chunk.model_dump(exclude_unset=True)))
        assert not errors, f"{chunk}: {errors[0].message[:200]}"
    for index in (0, 1):
        choices = [c.choices[0] for c in chunks if c.choices and c.choices[0].index == index]
        first_text = next(choice for choice in choices if choice.text)
        assert first_text.text == ECHOED
        assert first_text.logprobs.token_logprobs[0] is None
        joined = {
            key: [value for c in choices if c.logprobs for value in getattr(c.logprobs, key)]
            for key in LEGACY_FIELDS
        }
        assert joined == legacy(whole.choices[index].logprobs)


def test_best_of_returns_the_candidate_with_the_best_mean_logprob(client: openai.OpenAI) -> None:
    fields = {"temperature": 1.5, "seed": 11, "max_tokens": 5}
    candidates = complete(client, n=3, logprobs=0, **fields)
    best = complete(client, n=1, best_of=3, **fields)
    scores = [
        sum(choice.logprobs.token_logprobs) / len(choice.logprobs.token_logprobs)
        for choice in candidates.choices
    ]
    winner = candidates.choices[scores.index(max(scores))]
    assert [choice.text for choice in best.choices] == [winner.text]
    assert best.usage.completion_tokens == candidates.usage.completion_tokens == 15


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"best_of": 2, "stream": True}, "'best_of'"),
    ],
)
def test_completion_fields_that_cannot_be_served(
    client: openai.OpenAI, fields: dict[str, Any], words: str
) -> None:
    error = bad_request(client.completions.create, model="asha", prompt="Hi", **fields)
    assert words in error


# ---------------------------------------------------------------- ignored fields

IGNORED = {
    "web_search_options": {"search_context_size": "low"},
    "prediction": {"type": "content", "content": "Hello"},
    "service_tier": "flex",
    "store": True,
    "metadata": {"team": "kit"},
    "reasoning_effort": "high",
    "user": "user-1",
    "parallel_tool_calls": False,
    "modalities": ["text"],
}


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_an_ignored_field_changes_nothing(client: openai.OpenAI, name: str) -> None:
    plain = chat(client, max_tokens=4).choices[0].message.content
    assert chat(client, max_tokens=4, **{name: IGNORED[name]}).choices[0].message.content == plain


def test_streamed_auto_call_arrives_whole_at_the_end(client: openai.OpenAI) -> None:
    chunks = chat_chunks(
        client,
        messages=ASK_FOR_TIME_CALL,
        max_tokens=24,
        tools=[TIME],
        response_format=AS_TIME_CALL,
    )
    deltas = [chunk.choices[0].delta for chunk in chunks]
    assert not any(delta.content for delta in deltas)
    parts = [part for delta in deltas for part in delta.tool_calls or ()]
    assert parts[0].function.name == "get_time" and parts[0].id.startswith("call_")
    assert json.loads("".join(part.function.arguments for part in parts)) == {}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_streamed_legacy_function_call(client: openai.OpenAI) -> None:
    chunks = chat_chunks(
        client,
        max_tokens=24,
        functions=[WEATHER["function"]],
        function_call={"name": "get_weather"},
    )
    calls = [chunk.choices[0].delta.function_call for chunk in chunks]
    parts = [call for call in calls if call is not None]
    assert parts[0].name == "get_weather" and parts[0].arguments == ""
    arguments_of("".join(part.arguments for part in parts), CITY)
    assert chunks[-1].choices[0].finish_reason == "function_call"
