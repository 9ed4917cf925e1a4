from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.engine import (
    ContextOverflow,
    Engine,
    Finish,
    InvalidGrammar,
    InvalidRequest,
    Piece,
    SamplingParams,
)
from reference.engine._stops import StopMatcher
from reference.schema_limits import MAX_ALTERNATIVES

if TYPE_CHECKING:
    from reference.engine import LlamaEngine

# --- SamplingParams: arguments are checked up front --------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens must be at least 1"),
        ({"max_tokens": 1.5}, TypeError, "max_tokens must be an int"),
        ({"max_tokens": True}, TypeError, "max_tokens must be an int"),
        ({"temperature": 2.5}, ValueError, "temperature must be between 0 and 2"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"top_p": -0.1}, ValueError, "top_p must be between 0 and 1"),
        ({"presence_penalty": 3}, ValueError, "presence_penalty must be between -2 and 2"),
        ({"frequency_penalty": "1"}, TypeError, "frequency_penalty must be a number"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"stop": "\n"}, TypeError, "not a str"),
        ({"stop": ("",)}, ValueError, "non-empty str"),
        ({"logit_bias": {5: 101}}, ValueError, "between -100 and 100"),
        ({"logit_bias": {-1: 1}}, ValueError, "token ids must be >= 0"),
        ({"logit_bias": {"5": 1}}, TypeError, "token id must be an int"),
        ({"top_logprobs": 21}, ValueError, "top_logprobs must be None or between 0 and 20"),
        ({"prompt_logprobs": -1}, ValueError, "prompt_logprobs must be None or between 0 and 20"),
        ({"prompt_logprobs": 2.0}, TypeError, "prompt_logprobs must be an int"),
        ({"grammar": 'root ::= "a"', "json_schema": {}}, ValueError, "not both"),
        ({"grammar": ""}, ValueError, "non-empty GBNF"),
        ({"json_schema": "{}"}, TypeError, "json_schema must be a mapping"),
    ],
)
def test_sampling_params_reject_bad_arguments_with_a_clear_message(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SamplingParams(**{"max_tokens": 4, **kwargs})


def test_sampling_params_freeze_their_collections() -> None:
    bias = {3: 1.0}
    params = SamplingParams(max_tokens=4, stop=["a", "b"], logit_bias=bias)  # type: ignore[arg-type]
    bias[4] = 2.0
    assert params.stop == ("a", "b")
    assert dict(params.logit_bias) == {3: 1.0}
    with pytest.raises(TypeError):
        params.logit_bias[5] = 1.0  # type: ignore[index]


# --- StopMatcher ---------------------------------------------------------------------------------


def run_matcher(stops: list[str], chunks: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    released = []
    for chunk in chunks:
        text, stopped = matcher.push(chunk)
        released.append(text)
        if stopped:
            return "".join(released), True
    return "".join(released) + matcher.flush(), False


def test_stop_spanning_chunks_is_cut_and_never_released() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.push("abc E") == ("abc ", False)
    assert matcher.push("N") == ("", False)
    assert matcher.push("D and more") == ("", True)


def test_held_text_is_released_once_it_cannot_start_a_stop() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.push("x EN") == ("x ", False)
    assert matcher.push("x") == ("ENx", False)
    assert matcher.flush() == ""


def test_the_earliest_of_several_stops_wins() -> None:
    assert run_matcher(["cd", "b"], ["abcd"]) == ("a", True)


def test_of_overlapping_stops_the_one_complete_first_wins_however_the_text_is_cut() -> None:
    assert run_matcher(["a", "\naa"], ["\na", "a"]) == ("\n", True)
    assert run_matcher(["a", "\naa"], ["\naa"]) == ("\n", True)
    assert run_matcher(["xa", "a"], ["xa"]) == ("", True)


@given(
    text=st.text(alphabet="abc\n", max_size=40),
    stops=st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=10),
)
def test_matcher_output_is_the_text_up_to_the_first_stop_however_it_is_chunked(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    # The stop sequence complete first wins: the earliest to end, then the earliest to begin.
    found = [(i + len(s), i) for s in stops if (i := text.find(s)) >= 0]
    expected = (text[: min(found)[1]], True) if found else (text, False)
    assert run_matcher(stops, chunks) == expected


# --- The real engine -----------------------------------------------------------------------------


def generate(engine: Engine, prompt: list[int], **kwargs: Any) -> list[Piece | Finish]:
    return list(engine.generate(prompt, SamplingParams(**kwargs), threading.Event()))


def text_of(items: list[Piece | Finish]) -> str:
    return "".join(item.text for item in items if isinstance(item, Piece))


def finish_of(items: list[Piece | Finish]) -> Finish:
    assert isinstance(items[-1], Finish)
    assert not any(isinstance(item, Finish) for item in items[:-1])
    return items[-1]


@pytest.mark.model
def test_engine_satisfies_the_protocol(engine: LlamaEngine) -> None:
    assert isinstance(engine, Engine)
    assert engine.context_size == 512
    assert engine.vocab_size > 1000
    assert engine.name == "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.model
def test_tokenize_and_detokenize_round_trip(engine: LlamaEngine) -> None:
    text = "Héllo, wörld! 日本語 🐉 end"
    tokens = engine.tokenize(text, add_bos=False, special=False)
    assert len(tokens) > 5
    assert engine.detokenize(tokens) == text


@pytest.mark.model
def test_special_tokens_are_parsed_only_when_asked(engine: LlamaEngine) -> None:
    special = engine.tokenize("<|im_end|>", add_bos=False, special=True)
    plain = engine.tokenize("<|im_end|>", add_bos=False, special=False)
    assert len(special) == 1
    assert len(plain) > 1
    assert engine.detokenize(special) == ""  # control tokens render as nothing


@pytest.mark.model
def test_render_chat_uses_the_gguf_template(engine: LlamaEngine) -> None:
    prompt = engine.render_chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "user", "content": "Again"},
        ]
    )
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<|im_end|>\n"
        "<|im_start|>user\nAgain<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.model
def test_render_chat_reports_template_failures_as_invalid_requests(engine: LlamaEngine) -> None:
    with pytest.raises(InvalidRequest, match="chat template"):
        engine.render_chat([{"role": "user", "content": 42}])


@pytest.mark.model
def test_greedy_generation_is_repeatable_and_counts_its_tokens(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    first = generate(engine, chat_prompt, max_tokens=12, temperature=0)
    second = generate(engine, chat_prompt, max_tokens=12, temperature=0, seed=99)
    assert text_of(first) == text_of(second)
    assert text_of(first).strip()
    assert finish_of(first) == Finish("length", 12)
    pieces = [item for item in first if isinstance(item, Piece)]
    assert sum(piece.token_count for piece in pieces) == 12
    assert all(piece.logprobs == () for piece in pieces)


@pytest.mark.model
def test_same_seed_same_text_even_with_other_requests_in_between(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    sampled = {"max_tokens": 12, "temperature": 1.0, "seed": 1234}
    first = text_of(generate(engine, chat_prompt, **sampled))
    other_prompt = engine.tokenize("The capital of France is", add_bos=False, special=False)
    generate(engine, other_prompt, max_tokens=6, temperature=1.0, seed=5)
    generate(engine, chat_prompt[:-3], max_tokens=6, temperature=0)  # shares a prefix
    assert text_of(generate(engine, chat_prompt, **sampled)) == first
    others = {text_of(generate(engine, chat_prompt, **{**sampled, "seed": s})) for s in (1, 2, 3)}
    assert others - {first}, "different seeds should give different samples"


@pytest.mark.model
def test_a_stop_sequence_spanning_tokens_is_cut_from_the_text(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    free = [
        item
        for item in generate(engine, chat_prompt, max_tokens=16, temperature=0)
        if isinstance(item, Piece)
    ]
    # A stop made of the end of one token and the start of the next.
    index = next(i for i in range(3, len(free) - 1) if len(free[i].text) >= 2 and free[i + 1].text)
    stop = free[index].text[-2:] + free[index + 1].text[:2]
    full = text_of(free)
    stopped = generate(engine, chat_prompt, max_tokens=16, temperature=0, stop=("zzzz", stop))
    assert text_of(stopped) == full[: full.index(stop)]
    assert finish_of(stopped) == Finish("stop", index + 2)


@pytest.mark.model
def test_end_of_sequence_finishes_with_stop(engine: LlamaEngine, chat_prompt: list[int]) -> None:
    end_of_turn = engine.tokenize("<|im_end|>", add_bos=False, special=True)[0]
    items = generate(
        engine, chat_prompt, max_tokens=8, temperature=0, logit_bias={end_of_turn: 100}
    )
    assert items == [Finish("stop", 0)]


@pytest.mark.model
def test_logit_bias_minus_100_bans_and_plus_100_forces(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    greedy = [p for p in generate(engine, chat_prompt, max_tokens=1, temperature=0)]
    first_token = engine.tokenize(text_of(greedy), add_bos=False, special=False)[0]
    banned = generate(
        engine, chat_prompt, max_tokens=4, temperature=0, logit_bias={first_token: -100}
    )
    assert isinstance(banned[0], Piece)
    assert banned[0].text != text_of(greedy)

    banana = engine.tokenize(" banana", add_bos=False, special=False)
    assert len(banana) == 1
    forced = generate(
        engine, chat_prompt, max_tokens=4, temperature=1.0, seed=7, logit_bias={banana[0]: 100}
    )
    assert text_of(forced) == " banana" * 4


@pytest.mark.model
def test_frequency_and_presence_penalties_change_a_repetitive_output(engine: LlamaEngine) -> None:
    prompt = engine.tokenize(
        engine.render_chat([{"role": "user", "content": "Write 'la' many times: la la la la"}]),
        add_bos=False,
        special=True,
    )
    plain = text_of(generate(engine, prompt, max_tokens=16, temperature=0)).split()
    assert plain.count("la") >= 8
    for penalty in ("frequency_penalty", "presence_penalty"):
        penalized = text_of(
            generate(engine, prompt, max_tokens=16, temperature=0, **{penalty: 2.0})
        ).split()
        assert penalized.count("la") < plain.count("la") / 2, penalty


@pytest.mark.model
def test_cancel_stops_within_a_token(engine: LlamaEngine, chat_prompt: list[int]) -> None:
    cancel = threading.Event()
    items = []
    for item in engine.generate(chat_prompt, SamplingParams(max_tokens=200), cancel):
        items.append(item)
        if len(items) == 3:
            cancel.set()
    assert len(items) == 3
    assert not any(isinstance(item, Finish) for item in items)

    already = threading.Event()
    already.set()
    assert list(engine.generate(chat_prompt, SamplingParams(max_tokens=5), already)) == []


@pytest.mark.model
def test_cancel_stops_a_generation_under_the_largest_grammar_within_a_token(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    # The grammar's work per token is bounded by schema_limits.MAX_ALTERNATIVES (measured there);
    # what a leaving client waits for is that one token, never the rest of the generation.
    values = [f"value number {i} of the list" for i in range(MAX_ALTERNATIVES)]
    params = SamplingParams(max_tokens=12, temperature=0, json_schema={"enum": values})
    cancel = threading.Event()
    items = []
    for item in engine.generate(chat_prompt, params, cancel):
        items.append(item)
        cancel.set()
    assert len(items) == 1
    assert not isinstance(items[0], Finish)


@pytest.mark.model
def test_an_overlong_prompt_is_refused_before_generation(engine: LlamaEngine) -> None:
    prompt = engine.tokenize("word " * 600, add_bos=False, special=False)[: engine.context_size]
    with pytest.raises(ContextOverflow) as raised:
        engine.generate(prompt, SamplingParams(max_tokens=1), threading.Event())
    assert (raised.value.prompt_tokens, raised.value.context_size) == (512, 512)
    assert isinstance(raised.value, InvalidRequest)
    with pytest.raises(ContextOverflow):
        engine.check(prompt, SamplingParams(max_tokens=1))
    engine.check(prompt[:-1], SamplingParams(max_tokens=1))


@pytest.fixture(scope="module")
def small_engine(model_path: Path) -> Iterator[LlamaEngine]:
    from reference.engine import load_engine

    loaded = load_engine(model_path, context_size=256, threads=2, name="small")
    yield loaded
    loaded.close()


@pytest.mark.model
def test_llama_cpp_rounds_the_context_up_and_the_engine_reports_the_real_one(
    model_path: Path,
) -> None:
    from reference.engine import load_engine

    loaded = load_engine(model_path, context_size=100, threads=2)
    try:
        assert loaded.context_size == 256
    finally:
        loaded.close()


@pytest.mark.model
def test_generation_ends_with_length_at_the_end_of_the_context(small_engine: LlamaEngine) -> None:
    words = small_engine.tokenize("one two three four " * 100, add_bos=False, special=False)
    prompt = words[:252]
    items = generate(small_engine, prompt, max_tokens=16, temperature=0)
    assert finish_of(items) == Finish("length", 4)
    # The last free position can still be sampled.
    last = generate(small_engine, words[:255], max_tokens=16, temperature=0)
    assert finish_of(last) == Finish("length", 1)


@pytest.mark.model
def test_an_empty_prompt_still_generates(engine: LlamaEngine) -> None:
    assert finish_of(generate(engine, [], max_tokens=3, temperature=0)) == Finish("length", 3)


@pytest.mark.model
@pytest.mark.parametrize(
    ("prompt", "logit_bias", "where"),
    [
        ([1, 2, 10**6], {}, "the prompt"),
        ([1, 2, -1], {}, "the prompt"),
        ([1, 2], {10**6: 1.0}, "logit_bias"),
    ],
)
def test_token_ids_outside_the_vocabulary_are_invalid_requests(
    engine: LlamaEngine, prompt: list[int], logit_bias: dict[int, float], where: str
) -> None:
    with pytest.raises(InvalidRequest, match=f"{where} holds token id"):
        engine.check(prompt, SamplingParams(max_tokens=1, logit_bias=logit_bias))


@pytest.mark.model
def test_multibyte_characters_split_across_tokens_decode_whole(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    wanted = "日本語 ünïcödé 🐉"
    items = generate(
        engine, chat_prompt, max_tokens=40, temperature=0, grammar=f'root ::= "{wanted}"'
    )
    assert text_of(items) == wanted
    assert finish_of(items).reason == "stop"
    pieces = [item for item in items if isinstance(item, Piece)]
    assert any(piece.text == "" for piece in pieces), "expected a token holding half a character"


@pytest.mark.model
def test_a_gbnf_grammar_constrains_the_output(engine: LlamaEngine, chat_prompt: list[int]) -> None:
    items = generate(
        engine, chat_prompt, max_tokens=8, temperature=1.0, seed=3, grammar='root ::= "yes" | "no"'
    )
    assert text_of(items) in {"yes", "no"}
    assert finish_of(items).reason == "stop"


@pytest.mark.model
def test_a_json_schema_constrains_the_output(engine: LlamaEngine, chat_prompt: list[int]) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    items = generate(engine, chat_prompt, max_tokens=48, temperature=0, json_schema=schema)
    assert finish_of(items).reason == "stop"
    jsonschema.validate(json.loads(text_of(items)), schema)


@pytest.mark.model
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"grammar": "root ::= foo"}, "Undefined rule identifier 'foo'"),
        ({"grammar": 'root ::= "open'}, "unexpected end of input"),
        ({"grammar": 'start ::= "a"'}, "root"),
        ({"json_schema": {"type": "no-such-type"}}, "json_schema cannot be turned into a grammar"),
        ({"json_schema": {"$ref": "#/nowhere"}}, "json_schema cannot be turned into a grammar"),
    ],
)
def test_invalid_grammars_are_refused_with_the_reason(
    engine: LlamaEngine,
    chat_prompt: list[int],
    params: dict[str, Any],
    message: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(InvalidGrammar, match=message):
        engine.generate(chat_prompt, SamplingParams(max_tokens=4, **params), threading.Event())
    assert "error parsing grammar" not in capfd.readouterr().err


@pytest.mark.model
def test_logprobs_report_the_sampled_token_and_its_alternatives(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    items = generate(engine, chat_prompt, max_tokens=6, temperature=0, top_logprobs=3)
    pieces = [item for item in items if isinstance(item, Piece)]
    assert len(pieces) == 6
    for piece in pieces:
        (entry,) = piece.logprobs
        assert entry.logprob <= 0.0
        assert len(entry.top) == 3
        top_logprobs = [alternative.logprob for alternative in entry.top]
        assert top_logprobs == sorted(top_logprobs, reverse=True)
        # Greedy sampling picks the likeliest token, the first alternative.
        assert (entry.bytes, entry.logprob) == (entry.top[0].bytes, entry.top[0].logprob)
        assert entry.token == entry.bytes.decode("utf-8", "replace")
    only_sampled = generate(engine, chat_prompt, max_tokens=2, temperature=0, top_logprobs=0)
    assert all(p.logprobs[0].top == () for p in only_sampled if isinstance(p, Piece))


@pytest.mark.model
def test_logprobs_match_llama_cpp_python_with_logits_all(
    engine: LlamaEngine, chat_prompt: list[int], llama_logits_all: Any
) -> None:
    # llama-cpp-python only reports logprobs with logits_all=True, which keeps the logits of
    # every position; the engine reads the last position's alone. Both must agree.
    ours = [
        item.logprobs[0]
        for item in generate(engine, chat_prompt, max_tokens=4, temperature=0, top_logprobs=3)
        if isinstance(item, Piece)
    ]
    theirs = llama_logits_all.create_completion(
        chat_prompt, max_tokens=4, temperature=0, logprobs=3
    )
    expected = theirs["choices"][0]["logprobs"]  # type: ignore[index]
    assert [entry.token for entry in ours] == expected["tokens"]
    for entry, logprob, top in zip(
        ours, expected["token_logprobs"], expected["top_logprobs"], strict=True
    ):
        assert entry.logprob == pytest.approx(float(logprob), abs=1e-4)
        assert {alt.token: alt.logprob for alt in entry.top} == pytest.approx(
            {token: float(value) for token, value in top.items()}, abs=1e-4
        )
