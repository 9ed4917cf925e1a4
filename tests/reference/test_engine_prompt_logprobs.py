"""The prompt's own logprobs (completions' ``echo`` with ``logprobs``), straight from the engine.

They must be the model's distribution at every prompt position (checked against
llama-cpp-python's ``logits_all`` evaluation), the same whatever ran before, and must leave
the engine's KV prefix cache giving exactly what a fresh engine gives.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from reference.engine import Finish, Piece, PromptLogprobs, SamplingParams
from reference.engine._prefix import PROMPT_CHUNK
from tests.reference.conftest import TEST_CONTEXT_SIZE

if TYPE_CHECKING:
    from reference.engine import LlamaEngine

pytestmark = pytest.mark.model

TEXT = "The lighthouse keeper climbed the stairs, lit the lamp and watched the ships pass by."
#: Long enough for several prompt chunks, so that rows of every chunk are checked.
LONG_TEXT = " ".join([TEXT] * 4)
GREEDY = SamplingParams(max_tokens=4, temperature=0, top_logprobs=3)


class CancelAfter(threading.Event):
    """A cancel flag that turns itself on at its ``checks``-th look: a cancel mid-evaluation."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self._left = checks

    def is_set(self) -> bool:
        self._left -= 1
        if self._left <= 0:
            self.set()
        return super().is_set()


def tokens_of(engine: LlamaEngine, text: str) -> list[int]:
    return engine.tokenize(text, add_bos=True, special=True)


def run(engine: LlamaEngine, prompt: Sequence[int], params: SamplingParams) -> list[Any]:
    return list(engine.generate(prompt, params, threading.Event()))


@pytest.fixture(scope="module")
def fresh(model_path: Path) -> Iterator[LlamaEngine]:
    """A second engine, for results computed with nothing run before them."""
    from reference.engine import load_engine

    loaded = load_engine(model_path, context_size=TEST_CONTEXT_SIZE, threads=2)
    yield loaded
    loaded.close()


def test_every_token_after_the_first_gets_its_logprob_and_alternatives(
    engine: LlamaEngine,
) -> None:
    prompt = tokens_of(engine, LONG_TEXT)
    assert len(prompt) > 2 * PROMPT_CHUNK
    result = engine.prompt_logprobs(prompt, 4, threading.Event())
    assert result is not None
    assert b"".join(result.tokens).decode() == LONG_TEXT
    assert len(result.tokens) == len(prompt) and len(result.logprobs) == len(prompt) - 1
    for data, entry in zip(result.tokens[1:], result.logprobs, strict=True):
        assert entry.bytes == data and entry.token == data.decode("utf-8", "replace")
        assert entry.logprob <= 0.0
        assert len(entry.top) == 4
        top = [alternative.logprob for alternative in entry.top]
        assert top == sorted(top, reverse=True) and entry.logprob <= top[0]
    # The text repeats: the model finds its second telling far likelier than its first.
    per_telling = len(result.logprobs) // 4
    first = sum(entry.logprob for entry in result.logprobs[:per_telling])
    last = sum(entry.logprob for entry in result.logprobs[-per_telling:])
    assert last > first / 4


def test_control_tokens_render_as_the_text_that_wrote_them(engine: LlamaEngine) -> None:
    text = engine.render_chat([{"role": "user", "content": "Hi there"}])
    prompt = engine.tokenize(text, add_bos=False, special=True)
    result = engine.prompt_logprobs(prompt, 0, threading.Event())
    assert result is not None
    assert b"".join(result.tokens).decode() == text
    assert all(entry.top == () for entry in result.logprobs)


def test_logprobs_match_llama_cpp_python_with_logits_all(
    engine: LlamaEngine, llama_logits_all: Any
) -> None:
    prompt = tokens_of(engine, TEXT)
    ours = engine.prompt_logprobs(prompt, 3, threading.Event())
    assert ours is not None
    # llama-cpp-python's own echo logprobs (create_completion) pair each token with the
    # distribution that follows it, one position late; its logits_all scores are read directly.
    from llama_cpp import Llama

    llama_logits_all.eval(prompt)
    expected = Llama.logits_to_logprobs(llama_logits_all.scores[: len(prompt)])
    for position, entry in enumerate(ours.logprobs):
        row = expected[position]
        # Batches cut differently round differently: close, not equal.
        assert entry.logprob == pytest.approx(float(row[prompt[position + 1]]), abs=2e-3)
        best = np.argsort(-row, kind="stable")[:3].tolist()
        assert [alt.logprob for alt in entry.top] == pytest.approx(
            [float(row[token]) for token in best], abs=2e-3
        )
        assert [alt.bytes for alt in entry.top] == [
            engine.detokenize([token]).encode() for token in best
        ]


def test_the_last_position_predicts_what_generation_samples(engine: LlamaEngine) -> None:
    prompt = tokens_of(engine, TEXT)
    first = run(engine, prompt, GREEDY)[0]
    assert isinstance(first, Piece)
    (sampled,) = first.logprobs
    token = engine.tokenize(sampled.token, add_bos=False, special=False)
    result = engine.prompt_logprobs(prompt + token, 3, threading.Event())
    assert result is not None
    assert result.logprobs[-1].token == sampled.token
    assert result.logprobs[-1].logprob == pytest.approx(sampled.logprob, abs=2e-3)


def test_same_prompt_same_logprobs_whatever_ran_before(
    engine: LlamaEngine, fresh: LlamaEngine
) -> None:
    prompt = tokens_of(engine, LONG_TEXT)
    expected = fresh.prompt_logprobs(prompt, 2, threading.Event())
    run(engine, prompt, GREEDY)  # the cache holds this very prompt
    assert engine.prompt_logprobs(prompt, 2, threading.Event()) == expected
    run(engine, tokens_of(engine, TEXT), GREEDY)  # ... and now only part of it
    assert engine.prompt_logprobs(prompt, 2, threading.Event()) == expected


def test_generation_after_prompt_logprobs_is_a_fresh_engines(
    engine: LlamaEngine, fresh: LlamaEngine
) -> None:
    prompt = tokens_of(engine, LONG_TEXT)
    other = tokens_of(engine, TEXT)
    expected = {tuple(p): run(fresh, p, GREEDY) for p in (prompt, other)}
    run(engine, prompt, GREEDY)
    for p in (prompt, other, prompt):
        assert engine.prompt_logprobs(p, 1, threading.Event()) is not None
        assert run(engine, p, GREEDY) == expected[tuple(p)]
        # Asked for in the same call: the prompt's logprobs first, then the same generation.
        (echo, *items) = run(engine, p, replace(GREEDY, prompt_logprobs=1))
        assert isinstance(echo, PromptLogprobs) and len(echo.tokens) == len(p)
        assert items == expected[tuple(p)]
        assert run(engine, p, GREEDY) == expected[tuple(p)]


def test_cancel_between_chunks_stops_and_leaves_the_cache_sound(
    engine: LlamaEngine, fresh: LlamaEngine
) -> None:
    prompt = tokens_of(engine, LONG_TEXT)
    expected = run(fresh, prompt, GREEDY)
    assert engine.prompt_logprobs(prompt, 1, CancelAfter(2)) is None
    assert run(engine, prompt, GREEDY) == expected
    with_echo = replace(GREEDY, prompt_logprobs=1)
    assert list(engine.generate(prompt, with_echo, CancelAfter(3))) == []
    assert run(engine, prompt, GREEDY) == expected
    already = threading.Event()
    already.set()
    assert engine.prompt_logprobs(prompt, 1, already) is None


def test_short_prompts_and_bad_arguments(engine: LlamaEngine) -> None:
    assert engine.prompt_logprobs([], 2, threading.Event()) == PromptLogprobs((), ())
    (only,) = tokens_of(engine, "Hello")
    assert engine.prompt_logprobs([only], 2, threading.Event()) == PromptLogprobs(
        (engine.detokenize([only]).encode(),), ()
    )
    empty = list(
        engine.generate([], SamplingParams(max_tokens=1, prompt_logprobs=0), threading.Event())
    )
    assert empty[0] == PromptLogprobs((), ()) and isinstance(empty[-1], Finish)
    with pytest.raises(ValueError, match="top must be an int between 0 and 20"):
        engine.prompt_logprobs([only], 21, threading.Event())
    with pytest.raises(ValueError, match="token id"):
        engine.prompt_logprobs([only, engine.vocab_size], 0, threading.Event())
