"""The engine reuses the KV cache of earlier prompts without changing a single logit.

Each request's pieces (text and logprobs, compared exactly as floats) must be what a freshly
loaded engine gives for it, whatever ran before on the warm one. A spy on the engine's decode
calls (the real calls still run) shows that the cache really was reused, so that equality proves
something.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reference.engine import EngineError, Finish, Piece, SamplingParams
from reference.engine._prefix import PROMPT_CHUNK, shared_chunks
from tests.reference.conftest import TEST_CONTEXT_SIZE

if TYPE_CHECKING:
    from reference.engine import LlamaEngine

pytestmark = pytest.mark.model

SYSTEM = (
    "You are the keeper of a lighthouse on a rocky island far out at sea. You answer every "
    "question in the voice of an old sailor, with short sentences, and you always mention the "
    "weather, the ships that passed this week, and the gulls that nest below the lamp room."
)
QUESTIONS = (
    "What did you see last night?",
    "What did you eat for breakfast?",
    "How do you clean the big lens?",
)
#: Greedy with logprobs (the strictest comparison), and sampled with a seed.
REQUESTS = (
    SamplingParams(max_tokens=6, temperature=0, top_logprobs=5),
    SamplingParams(max_tokens=6, temperature=1.0, seed=7, top_logprobs=2),
)

Evals = list[tuple[int, int]]


def run(engine: LlamaEngine, prompt: Sequence[int], params: SamplingParams) -> list[Any]:
    return list(engine.generate(prompt, params, threading.Event()))


def record_decodes(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch, after: Callable[[Evals], None]
) -> Evals:
    """Record each decode call of one sequence as ``(first position, token count)``.

    A prompt chunk is one call of its length; a generated token, one call of 1 (one sequence
    runs here, so a step decodes only its token). ``after(calls)`` runs after each real call.
    """
    decoder = engine._decoder
    calls: Evals = []
    real_evaluate, real_step = decoder.evaluate, decoder.step

    def recording_evaluate(stream: int, tokens: Sequence[int], begin: int, **kwargs: Any) -> None:
        calls.append((begin, len(tokens)))
        real_evaluate(stream, tokens, begin, **kwargs)
        after(calls)

    def recording_step(entries: Sequence[tuple[int, int, int]]) -> None:
        calls.extend((position, 1) for _, _, position in entries)
        real_step(entries)
        after(calls)

    monkeypatch.setattr(decoder, "evaluate", recording_evaluate)
    monkeypatch.setattr(decoder, "step", recording_step)
    return calls


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Callable[[LlamaEngine], Evals]:
    """Record each decode call of an engine as ``(first position, token count)``."""

    def attach(engine: LlamaEngine) -> Evals:
        return record_decodes(engine, monkeypatch, lambda calls: None)

    return attach


@pytest.fixture(scope="module")
def chats(engine: LlamaEngine) -> list[list[int]]:
    """Chat prompts sharing a long system turn, then one extending the first conversation."""

    def tokens(*turns: tuple[str, str]) -> list[int]:
        messages = [{"role": "system", "content": SYSTEM}]
        messages += [{"role": role, "content": content} for role, content in turns]
        return engine.tokenize(engine.render_chat(messages), add_bos=False, special=True)

    prompts = [tokens(("user", question)) for question in QUESTIONS]
    answer = "".join(
        item.text
        for item in run(engine, prompts[0], SamplingParams(max_tokens=8, temperature=0))
        if isinstance(item, Piece)
    )
    prompts.append(tokens(("user", QUESTIONS[0]), ("assistant", answer), ("user", "And then?")))
    return prompts


@pytest.fixture(scope="module")
def fresh_results(model_path: Path, chats: list[list[int]]) -> dict[tuple[int, int], list[Any]]:
    """Each (prompt, request)'s items from an engine loaded for it alone: nothing to reuse."""
    from reference.engine import load_engine

    results = {}
    for p, prompt in enumerate(chats):
        for r, params in enumerate(REQUESTS):
            engine = load_engine(model_path, context_size=TEST_CONTEXT_SIZE, threads=2)
            try:
                results[p, r] = run(engine, prompt, params)
            finally:
                engine.close()
    return results


def test_the_prompts_share_a_chunk(engine: LlamaEngine, chats: list[list[int]]) -> None:
    first, second, _, follow_up = chats
    plans = [engine._plan(prompt) for prompt in (first, second)]
    shared = shared_chunks(plans[0], first, plans[1], second)
    # The system turn and the user's header are reused: the question is evaluated from its
    # first word (the two questions share three words, which sit in the last chunk).
    reused = plans[1][shared - 1][1]
    assert engine.detokenize(second[:reused]).endswith("user\n")
    assert engine.detokenize(second[reused:]).startswith("What did you eat")
    assert follow_up[: len(first)] == first


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2, 0, 3)])
def test_a_warm_cache_gives_exactly_the_fresh_logprobs(
    engine: LlamaEngine,
    chats: list[list[int]],
    fresh_results: dict[tuple[int, int], list[Any]],
    spy: Callable[[LlamaEngine], Evals],
    order: tuple[int, ...],
) -> None:
    evals = spy(engine)
    reused_some = False
    for p in order:
        for r, params in enumerate(REQUESTS):
            evals.clear()
            items = run(engine, chats[p], params)
            assert items == fresh_results[p, r], f"prompt {p}, request {r}"
            assert any(isinstance(item, Piece) and item.logprobs for item in items)
            # Each request's first evaluation starts where the cache stopped being reusable.
            reused_some |= bool(evals) and evals[0][0] > 0
    assert reused_some, "the cache was never reused: the comparison proves nothing"


def test_a_repeated_prompt_evaluates_nothing_and_samples_the_same(
    engine: LlamaEngine,
    chats: list[list[int]],
    fresh_results: dict[tuple[int, int], list[Any]],
    spy: Callable[[LlamaEngine], Evals],
) -> None:
    evals = spy(engine)
    greedy, sampled = REQUESTS
    assert run(engine, chats[1], greedy) == fresh_results[1, 0]
    assert evals, "the first run evaluates its prompt"
    evals.clear()
    # After a generation (its tokens were evaluated after the prompt's) and after none.
    assert run(engine, chats[1], sampled) == fresh_results[1, 1]
    first_token = fresh_results[1, 0][0]
    assert run(engine, chats[1], replace(greedy, max_tokens=1)) == [
        first_token,
        Finish("length", 1),
    ]
    assert run(engine, chats[1], greedy) == fresh_results[1, 0]
    # Only the generated tokens were evaluated, each once, after the prompt.
    assert evals == 2 * [(len(chats[1]) + n, 1) for n in range(5)]
    # Another prompt in between: the repeat evaluates again, from a reused prefix.
    run(engine, chats[2], replace(greedy, max_tokens=1))
    evals.clear()
    assert run(engine, chats[1], greedy) == fresh_results[1, 0]
    assert evals[0][0] > 0


def test_a_prompt_without_turns_is_cut_every_chunk_and_its_short_tail_joined(
    engine: LlamaEngine, spy: Callable[[LlamaEngine], Evals]
) -> None:
    evals = spy(engine)
    text = " ".join(f"lamp {n} lit." for n in range(40))
    prompt = engine.tokenize(text, add_bos=False, special=False)[: 2 * PROMPT_CHUNK + 1]
    assert len(prompt) == 2 * PROMPT_CHUNK + 1
    run(engine, [1, 2, 3], SamplingParams(max_tokens=1))  # nothing reusable for `prompt`
    evals.clear()
    run(engine, prompt, SamplingParams(max_tokens=1, temperature=0))
    assert evals == [(0, PROMPT_CHUNK), (PROMPT_CHUNK, PROMPT_CHUNK + 1)]


# --- Cancelling a long prompt's evaluation ---------------------------------------------------


def cancel_after(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch, chunks: int, cancel: threading.Event
) -> Evals:
    """Set ``cancel`` once ``chunks`` evaluations have run (as a client leaving would)."""

    def maybe_cancel(calls: Evals) -> None:
        if len(calls) == chunks:
            cancel.set()

    return record_decodes(engine, monkeypatch, maybe_cancel)


@pytest.fixture(scope="module")
def long_prompt(engine: LlamaEngine) -> list[int]:
    text = " ".join(f"Entry {n}: the lamp was lit at dusk and the sea was calm." for n in range(40))
    tokens = engine.tokenize(text, add_bos=False, special=False)[: TEST_CONTEXT_SIZE - 20]
    assert len(tokens) > 10 * PROMPT_CHUNK
    return tokens


@pytest.fixture(scope="module")
def long_prompt_fresh(model_path: Path, long_prompt: list[int]) -> list[Any]:
    from reference.engine import load_engine

    engine = load_engine(model_path, context_size=TEST_CONTEXT_SIZE, threads=2)
    try:
        return run(engine, long_prompt, REQUESTS[0])
    finally:
        engine.close()


def test_a_cancel_during_prompt_evaluation_stops_it_between_chunks(
    engine: LlamaEngine,
    long_prompt: list[int],
    long_prompt_fresh: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(engine, [1, 2, 3], SamplingParams(max_tokens=1))  # nothing reusable for the prompt
    cancel = threading.Event()
    evals = cancel_after(engine, monkeypatch, 3, cancel)
    items = list(engine.generate(long_prompt, REQUESTS[0], cancel))
    assert items == []
    assert evals == [
        (0, PROMPT_CHUNK),
        (PROMPT_CHUNK, PROMPT_CHUNK),
        (2 * PROMPT_CHUNK, PROMPT_CHUNK),
    ]
    # The next request is served correctly, and keeps the chunks evaluated before the cancel.
    evals.clear()
    assert run(engine, long_prompt, REQUESTS[0]) == long_prompt_fresh
    assert evals[0] == (3 * PROMPT_CHUNK, PROMPT_CHUNK)


def test_a_cancel_set_before_generation_evaluates_nothing(
    engine: LlamaEngine, long_prompt: list[int], spy: Callable[[LlamaEngine], Evals]
) -> None:
    evals = spy(engine)
    cancel = threading.Event()
    cancel.set()
    assert list(engine.generate(long_prompt[:-5], REQUESTS[0], cancel)) == []
    assert evals == []


def test_an_engine_error_mid_prompt_leaves_a_cache_that_serves_the_next_request(
    engine: LlamaEngine,
    long_prompt: list[int],
    long_prompt_fresh: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reference.engine._decoder import DecodeFailed

    decoder = engine._decoder
    real_evaluate = decoder.evaluate
    calls = 0

    def failing_evaluate(stream: int, tokens: Sequence[int], begin: int, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise DecodeFailed("llama_decode returned -1")
        real_evaluate(stream, tokens, begin, **kwargs)

    run(engine, [1, 2, 3], SamplingParams(max_tokens=1))  # nothing reusable for the prompt
    monkeypatch.setattr(decoder, "evaluate", failing_evaluate)
    with pytest.raises(EngineError, match="llama_decode"):
        run(engine, long_prompt[:-7], REQUESTS[0])
    monkeypatch.setattr(decoder, "evaluate", real_evaluate)
    assert run(engine, long_prompt, REQUESTS[0]) == long_prompt_fresh
