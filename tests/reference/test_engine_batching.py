"""Sequences decoded together: each gives exactly what it gives alone, and the work is shared.

Items are compared whole (text, token counts and logprobs as exact floats), so "the same"
means the same numbers, not similar text. The first test pins the engine to what it computed
when it was built on llama-cpp-python's ``Llama``: a seeded request's text did not change when
the engine began to decode several sequences together.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reference.engine import Finish, Item, Piece, PromptLogprobs, SamplingParams
from tests.reference.conftest import TEST_CONTEXT_SIZE

if TYPE_CHECKING:
    from reference.engine import LlamaEngine

pytestmark = pytest.mark.model

Request = tuple[list[int], SamplingParams]


class Collected:
    """An outlet that keeps what it receives and how it ended."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.closed = False
        self.error: BaseException | None = None

    def put(self, items: Sequence[Item]) -> None:
        self.items.extend(items)

    def close(self, error: BaseException | None = None) -> None:
        self.closed, self.error = True, error


@pytest.fixture(scope="module", params=[True, False], ids=["flash-attention", "no-flash-attention"])
def batching(model_path: Path, request: pytest.FixtureRequest) -> Iterator[LlamaEngine]:
    """An engine that decodes three sequences together, with either attention kernel."""
    from reference.engine import load_engine

    loaded = load_engine(
        model_path,
        context_size=TEST_CONTEXT_SIZE,
        parallel=3,
        threads=2,
        flash_attention=request.param,
    )
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def prompts(batching: LlamaEngine) -> list[list[int]]:
    def chat(text: str) -> list[int]:
        rendered = batching.render_chat([{"role": "user", "content": text}])
        return batching.tokenize(rendered, add_bos=False, special=True)

    return [
        chat("Tell me a story about a dragon."),
        chat("Write the word cat twenty times."),
        batching.tokenize("The capital of France is", add_bos=True, special=False),
        chat("Tell me a story about a dragon and a knight."),
    ]


def alone(engine: LlamaEngine, request: Request) -> list[Any]:
    return list(engine.generate(*request, threading.Event()))


def together(
    engine: LlamaEngine, requests: Sequence[Request], *, cancel: dict[int, int] | None = None
) -> list[Collected]:
    """Submit every request at once and step until all are done; cancel request i at step n."""
    outlets = [Collected() for _ in requests]
    flags = [threading.Event() for _ in requests]
    for (prompt, params), flag, outlet in zip(requests, flags, outlets, strict=True):
        engine.submit(prompt, params, flag, outlet)
    steps = 0
    while engine.step():
        steps += 1
        for index, at in (cancel or {}).items():
            if steps == at:
                flags[index].set()
    assert all(outlet.closed and outlet.error is None for outlet in outlets)
    return outlets


def text_of(items: Sequence[Any]) -> str:
    return "".join(item.text for item in items if isinstance(item, Piece))


# --- The same numbers as before --------------------------------------------------------------

#: What each request asks of the samplers; every one of them is in the chain.
SAMPLING = (
    {"temperature": 0.0},
    {"temperature": 1.0, "seed": 1234},
    {
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
    },
    {"temperature": 1.3, "seed": 5, "logit_bias": {28: 4.0, 30: -3.0}},
    {"temperature": 1.0, "seed": 3, "grammar": 'root ::= ("yes" | "no" | "maybe") " " [a-z ]+'},
)


def llama_cpp_python_text(
    model_path: Path, engine: LlamaEngine, prompt: list[int], settings: dict[str, Any], count: int
) -> str:
    """What the engine computed when it drove ``Llama``: its prompt chunks, then ``generate``."""
    import numpy as np
    from llama_cpp import Llama, LogitsProcessorList
    from llama_cpp.llama_grammar import LlamaGrammar

    llama = Llama(
        str(model_path),
        n_ctx=TEST_CONTEXT_SIZE,
        n_threads=2,
        n_threads_batch=2,
        last_n_tokens_size=TEST_CONTEXT_SIZE,
        flash_attn=engine.flash_attention,
        verbose=False,
    )
    try:
        for begin, end in engine._plan(prompt):
            llama.eval(prompt[begin:end])
        seed = settings.get("seed")
        llama.set_seed(0xFFFFFFFF if seed is None else seed)
        bias = settings.get("logit_bias", {})
        ids = np.array(list(bias), dtype=np.intp)
        values = np.array(list(bias.values()), dtype=np.single)

        def add_bias(_input_ids: Any, scores: Any) -> Any:
            scores[ids] += values
            return scores

        grammar = settings.get("grammar")
        tokens = llama.generate(
            prompt,
            top_k=0,
            top_p=settings.get("top_p", 1.0),
            min_p=0.0,
            typical_p=1.0,
            temp=settings["temperature"],
            repeat_penalty=1.0,
            frequency_penalty=settings.get("frequency_penalty", 0.0),
            presence_penalty=settings.get("presence_penalty", 0.0),
            logits_processor=LogitsProcessorList([add_bias]) if bias else None,
            grammar=LlamaGrammar.from_string(grammar, verbose=False) if grammar else None,
        )
        produced = []
        for token in tokens:
            if engine._vocabulary.end_of_generation.__contains__(token) or len(produced) == count:
                break
            produced.append(token)
        tokens.close()
        return engine.detokenize(produced)
    finally:
        llama.close()


@pytest.mark.parametrize("settings", SAMPLING, ids=lambda s: ",".join(s))
def test_a_sequence_samples_exactly_what_the_engine_sampled_on_llama(
    batching: LlamaEngine, prompts: list[list[int]], model_path: Path, settings: dict[str, Any]
) -> None:
    prompt = prompts[0]
    ours = text_of(alone(batching, (prompt, SamplingParams(max_tokens=24, **settings))))
    assert ours == llama_cpp_python_text(model_path, batching, prompt, settings, 24)
    assert ours.strip()


# --- Together, exactly as alone ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(prompts: list[list[int]]) -> list[Request]:
    """Requests of every kind: prompts shared and not, seeds, logprobs, stops, a grammar."""
    first, cats, france, longer = prompts
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    return [
        (first, SamplingParams(max_tokens=9, temperature=0, top_logprobs=2)),
        (cats, SamplingParams(max_tokens=14, temperature=1.0, seed=1)),
        (first, SamplingParams(max_tokens=6, temperature=1.0, seed=2)),
        (france, SamplingParams(max_tokens=11, temperature=0.8, seed=3, prompt_logprobs=2)),
        (longer, SamplingParams(max_tokens=7, temperature=1.0, seed=4, stop=("e",))),
        (first, SamplingParams(max_tokens=12, temperature=1.0, seed=5, frequency_penalty=1.0)),
        (cats, SamplingParams(max_tokens=16, temperature=0, json_schema=schema)),
        ([], SamplingParams(max_tokens=3, temperature=0)),
    ]


def test_sequences_decoded_together_give_exactly_what_each_gives_alone(
    batching: LlamaEngine, mixed: list[Request]
) -> None:
    expected = [alone(batching, request) for request in mixed]
    calls = batching.decode_calls
    received = together(batching, mixed)
    assert [list(outlet.items) for outlet in received] == expected
    assert any(isinstance(items[0], PromptLogprobs) for items in expected)
    # Fewer calls than tokens: one step decodes a token of every running sequence.
    assert batching.decode_calls - calls < sum(
        finish.completion_tokens for *_, finish in expected if isinstance(finish, Finish)
    )


def test_cancelled_sequences_leave_the_others_untouched_and_the_rest_move_down(
    batching: LlamaEngine, mixed: list[Request]
) -> None:
    expected = [alone(batching, request) for request in mixed]
    moves: list[tuple[int, int]] = []
    real_move = batching._streams.move

    def recording_move(source: int, target: int) -> None:
        moves.append((source, target))
        real_move(source, target)

    batching._streams.move = recording_move  # type: ignore[method-assign]
    try:
        received = together(batching, mixed, cancel={0: 3, 4: 5, 6: 9})
    finally:
        del batching._streams.move
    for index, outlet in enumerate(received):
        if index in (0, 4, 6):
            assert not any(isinstance(item, Finish) for item in outlet.items)
            assert list(outlet.items) == expected[index][: len(outlet.items)]
        else:
            assert list(outlet.items) == expected[index], index
    assert moves, "no sequence moved down: the comparison proves less than it should"


def test_the_choices_of_one_prompt_evaluate_it_once(
    batching: LlamaEngine, prompts: list[list[int]]
) -> None:
    prompt = prompts[3]
    for stream in range(batching.parallel):  # nothing cached: the first choice evaluates all
        batching._streams.clear(stream)
    choices = [
        (prompt, SamplingParams(max_tokens=6, temperature=1.0, seed=seed)) for seed in (1, 2, 3)
    ]
    evaluated: list[int] = []
    real_evaluate = batching._decoder.evaluate

    def recording(stream: int, tokens: Sequence[int], begin: int, **kwargs: Any) -> None:
        evaluated.append(len(tokens))
        real_evaluate(stream, tokens, begin, **kwargs)

    batching._decoder.evaluate = recording  # type: ignore[method-assign]
    try:
        received = together(batching, choices)
    finally:
        del batching._decoder.evaluate
    assert sum(evaluated) == len(prompt)
    texts = [text_of(list(outlet.items)) for outlet in received]
    assert len(set(texts)) == 3  # three seeds, three samples
    assert texts == [text_of(alone(batching, choice)) for choice in choices]


def test_a_long_prompt_delays_running_sequences_by_a_chunk_per_token(
    batching: LlamaEngine, prompts: list[list[int]]
) -> None:
    text = " ".join(f"Entry {n}: the lamp was lit at dusk and the sea was calm." for n in range(30))
    long_prompt = batching.tokenize(text, add_bos=True, special=False)[:300]
    running, newcomer = Collected(), Collected()
    batching.submit(
        prompts[1], SamplingParams(max_tokens=40, temperature=0), threading.Event(), running
    )
    while not running.items:
        batching.step()
    batching.submit(
        long_prompt, SamplingParams(max_tokens=2, temperature=0), threading.Event(), newcomer
    )
    chunks = len(batching._plan(long_prompt))
    assert chunks >= 9
    calls: list[str] = []
    decoder = batching._decoder
    real_evaluate, real_step = decoder.evaluate, decoder.step

    def evaluate(*args: Any, **kwargs: Any) -> None:
        calls.append("chunk")
        real_evaluate(*args, **kwargs)

    def step(*args: Any, **kwargs: Any) -> None:
        calls.append("token")
        real_step(*args, **kwargs)

    decoder.evaluate, decoder.step = evaluate, step  # type: ignore[method-assign]
    try:
        before = len(running.items)
        while not newcomer.items:
            batching.step()
    finally:
        del decoder.evaluate, decoder.step
    # Chunks and decode calls alternate: the running sequence got a token for every chunk.
    assert calls.count("chunk") == chunks
    assert "chunk, chunk" not in ", ".join(calls)
    assert len(running.items) - before >= chunks - 1
    while batching.step():
        pass
    assert newcomer.closed and running.closed
    assert isinstance(newcomer.items[-1], Finish)


def test_more_generations_than_streams_take_turns_and_stay_exact(
    batching: LlamaEngine, prompts: list[list[int]]
) -> None:
    requests = [
        (prompts[index % 4], SamplingParams(max_tokens=4 + index, temperature=1.0, seed=index))
        for index in range(7)
    ]
    expected = [alone(batching, request) for request in requests]
    decoded: list[list[int]] = []
    from reference.engine._sequence import Phase

    skipped: list[Phase | None] = []
    real_step = batching._decoder.step

    def recording(entries: Sequence[tuple[int, int, int]]) -> None:
        streams = [stream for stream, _, _ in entries]
        decoded.append(streams)
        owners = batching._streams.owners
        for stream in range(streams[0], streams[-1]):
            if stream not in streams:
                owner = owners[stream]
                skipped.append(None if owner is None else owner.phase)
        real_step(entries)

    batching._decoder.step = recording  # type: ignore[method-assign]
    try:
        received = together(batching, requests)
    finally:
        del batching._decoder.step
    assert [list(outlet.items) for outlet in received] == expected
    assert max(map(len, decoded)) == batching.parallel
    # A decode call skips a stream between its streams (two passes for llama.cpp) only while
    # that stream's sequence evaluates its prompt: never a free stream, gaps are closed.
    assert all(phase not in (None, Phase.DECODING) for phase in skipped), (decoded, skipped)


def test_a_new_prompt_copies_what_another_stream_shares_with_it(
    batching: LlamaEngine, model_path: Path
) -> None:
    from reference.engine import load_engine

    system = "You keep a lighthouse. Answer in the voice of an old sailor, briefly, about the sea."

    def chat(question: str) -> list[int]:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        rendered = batching.render_chat(messages)
        return batching.tokenize(rendered, add_bos=False, special=True)

    first, second = chat("What did you see?"), chat("What did you eat?")
    params = SamplingParams(max_tokens=5, temperature=1.0, seed=9, top_logprobs=1)
    fresh = load_engine(
        model_path,
        context_size=TEST_CONTEXT_SIZE,
        threads=2,
        flash_attention=batching.flash_attention,
    )
    try:
        expected = alone(fresh, (second, params))
    finally:
        fresh.close()
    # The first prompt runs in stream 0 and stays there; the second goes to stream 1 and
    # starts from a copy of what stream 0 holds of it.
    holder, copier = Collected(), Collected()
    batching.submit(first, SamplingParams(max_tokens=30, temperature=0), threading.Event(), holder)
    while not holder.items:
        batching.step()
    starts: list[int] = []
    real_evaluate = batching._decoder.evaluate

    def recording(stream: int, tokens: Sequence[int], begin: int, **kwargs: Any) -> None:
        starts.append(begin)
        real_evaluate(stream, tokens, begin, **kwargs)

    batching._decoder.evaluate = recording  # type: ignore[method-assign]
    try:
        batching.submit(second, params, threading.Event(), copier)
        while batching.step():
            pass
    finally:
        del batching._decoder.evaluate
    assert starts and starts[0] > 0, "the shared system turn was evaluated again"
    assert list(copier.items) == expected
