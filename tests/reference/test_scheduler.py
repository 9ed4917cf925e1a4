from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from reference.engine import (
    ContextOverflow,
    Engine,
    Finish,
    Outlet,
    Piece,
    SamplingParams,
)
from reference.scheduler import ModelRunner, QueueFull, RunnerClosed

if TYPE_CHECKING:
    from reference.engine import LlamaEngine


# Seconds to wait for something that takes milliseconds: generous, for a loaded machine.
PATIENCE = 10.0


class _Scripted:
    __slots__ = ("cancel", "outlet", "params", "produced")

    def __init__(self, params: SamplingParams, cancel: Any, outlet: Outlet) -> None:
        self.params, self.cancel, self.outlet, self.produced = params, cancel, outlet, 0


class ScriptedEngine:
    """A stand-in engine for the scheduler's own rules: a step sleeps instead of decoding.

    Each step gives every generation it holds one piece. It runs every generation it is given
    at once, whatever its ``parallel`` says: what keeps them to ``parallel`` is the runner
    (``most_running`` shows it). A ``held`` engine produces nothing until ``released`` is set,
    so that a test can act while a generation is certainly still running.
    """

    name = "scripted"
    context_size = 64
    vocab_size = 16

    def __init__(
        self,
        *,
        delay: float = 0.01,
        fail_after: int | None = None,
        held: bool = False,
        parallel: int = 1,
    ) -> None:
        self.delay = delay
        self.fail_after = fail_after
        self.parallel = parallel
        self.produced = 0
        self.most_running = 0
        self.step_threads: set[int] = set()
        self.released = threading.Event()
        if not held:
            self.released.set()
        self._generations: list[_Scripted] = []

    @property
    def running(self) -> int:
        return len(self._generations)

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return [1] * len(text)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "x" * len(tokens)

    def render_chat(self, messages: Any, *, tools: Any = None) -> str:
        return ""

    def check(self, prompt_tokens: Sequence[int], params: SamplingParams) -> None:
        if len(prompt_tokens) >= self.context_size:
            raise ContextOverflow(len(prompt_tokens), self.context_size)

    def submit(
        self, prompt_tokens: Sequence[int], params: SamplingParams, cancel: Any, outlet: Outlet
    ) -> None:
        self.check(prompt_tokens, params)
        self._generations.append(_Scripted(params, cancel, outlet))
        self.most_running = max(self.most_running, self.running)

    def step(self) -> bool:
        self.step_threads.add(threading.get_ident())
        for generation in [g for g in self._generations if g.cancel.is_set()]:
            self._end(generation)
        if not self.released.wait(0.005):
            return bool(self._generations)
        time.sleep(self.delay)
        for generation in list(self._generations):
            if generation.produced == self.fail_after:
                self._end(generation, RuntimeError("the engine broke"))
                continue
            generation.produced += 1
            self.produced += 1
            items: list[Piece | Finish] = [Piece("x", 1)]
            if generation.produced == generation.params.max_tokens:
                items.append(Finish("length", generation.produced))
            generation.outlet.put(items)
            if generation.produced == generation.params.max_tokens:
                self._end(generation)
        return bool(self._generations)

    def generate(
        self, prompt_tokens: Sequence[int], params: SamplingParams, cancel: threading.Event
    ) -> Iterator[Piece | Finish]:
        raise NotImplementedError("the runner submits and steps")

    def close(self) -> None:
        pass

    def _end(self, generation: _Scripted, error: BaseException | None = None) -> None:
        self._generations.remove(generation)
        generation.outlet.close(error)


class CountingEngine:
    """The real engine, counting the pieces it hands out, to see when a cancelled one stops."""

    def __init__(self, inner: LlamaEngine) -> None:
        self.inner = inner
        self.name = inner.name
        self.parallel = inner.parallel
        self.produced = 0

    def submit(
        self, prompt_tokens: Sequence[int], params: SamplingParams, cancel: Any, outlet: Outlet
    ) -> None:
        engine = self

        class Counted:
            def put(self, items: Sequence[Any]) -> None:
                engine.produced += len(items)
                outlet.put(items)

            def close(self, error: BaseException | None = None) -> None:
                outlet.close(error)

        self.inner.submit(prompt_tokens, params, cancel, Counted())

    def step(self) -> bool:
        return self.inner.step()


async def collect(runner: ModelRunner, prompt: Sequence[int], params: SamplingParams) -> list[Any]:
    async with runner.reserve() as slot:
        return [item async for item in slot.generate(prompt, params)]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the event loop run until ``condition()`` holds; fail after ``PATIENCE`` seconds."""
    give_up = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"not {what} after {PATIENCE:g} s")
        await asyncio.sleep(0.001)


def test_the_scripted_engine_is_an_engine() -> None:
    assert isinstance(ScriptedEngine(), Engine)


def test_max_waiting_is_checked() -> None:
    with pytest.raises(ValueError, match="max_waiting must be an int >= 0"):
        ModelRunner(ScriptedEngine(), max_waiting=-1)


@pytest.mark.model
def test_reservations_run_one_after_another_in_arrival_order(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    spans: list[tuple[int, float, float]] = []

    async def request(number: int, runner: ModelRunner) -> list[Any]:
        async with runner.reserve() as slot:
            started = time.monotonic()
            items = [i async for i in slot.generate(chat_prompt, SamplingParams(max_tokens=6))]
            spans.append((number, started, time.monotonic()))
            return items

    async def main() -> list[list[Any]]:
        runner = ModelRunner(engine, max_waiting=4)
        try:
            tasks = []
            for number in range(3):
                tasks.append(asyncio.create_task(request(number, runner)))
                await asyncio.sleep(0)  # let each task queue up before the next arrives
            return await asyncio.gather(*tasks)
        finally:
            await runner.close()

    results = asyncio.run(main())
    assert [number for number, _, _ in spans] == [0, 1, 2]
    for (_, _, end), (_, start, _) in itertools.pairwise(spans):
        assert end <= start
    for items in results:
        assert items[-1] == Finish("length", 6)


def test_parallel_reservations_run_at_once_and_the_rest_wait_in_arrival_order() -> None:
    engine = ScriptedEngine(delay=0.01, held=True, parallel=2)
    started: list[int] = []

    async def request(number: int, runner: ModelRunner) -> list[Any]:
        async with runner.reserve() as slot:
            started.append(number)
            return [item async for item in slot.generate([1], SamplingParams(max_tokens=3))]

    async def main() -> None:
        runner = ModelRunner(engine, max_waiting=4)
        tasks = []
        for number in range(5):
            tasks.append(asyncio.create_task(request(number, runner)))
            await asyncio.sleep(0)  # each arrives after the one before
        await until(lambda: engine.running == 2 and runner.waiting == 3, "two running")
        assert started == [0, 1]
        engine.released.set()
        assert [len(items) for items in await asyncio.gather(*tasks)] == [4] * 5
        await runner.close()

    asyncio.run(main())
    assert started == [0, 1, 2, 3, 4]
    assert engine.most_running == 2


def test_the_generations_of_one_reservation_run_side_by_side() -> None:
    engine = ScriptedEngine(delay=0.01, parallel=1)

    async def main() -> list[list[Any]]:
        runner = ModelRunner(engine, max_waiting=1)
        async with runner.reserve() as slot:

            async def one(tokens: int) -> list[Any]:
                return [
                    item async for item in slot.generate([1], SamplingParams(max_tokens=tokens))
                ]

            results = await asyncio.gather(one(3), one(5), one(4))
        assert not runner.busy
        await runner.close()
        return results

    assert [len(items) for items in asyncio.run(main())] == [4, 6, 5]
    # A reservation's choices share the engine's steps (the engine bounds them by its streams).
    assert engine.most_running == 3


def test_a_step_reaches_the_loop_in_one_call() -> None:
    engine = ScriptedEngine(delay=0.02, parallel=3)

    async def main() -> None:
        runner = ModelRunner(engine, max_waiting=1)
        loop = asyncio.get_running_loop()
        calls = 0
        real = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        try:
            results = await asyncio.gather(
                *(collect(runner, [1], SamplingParams(max_tokens=10)) for _ in range(3))
            )
        finally:
            loop.call_soon_threadsafe = real  # type: ignore[method-assign]
        assert [len(items) for items in results] == [11, 11, 11]
        # 3 x 11 items (and 3 ends) in about 10 steps: a call per step, not per item.
        assert calls <= 14, calls
        await runner.close()

    asyncio.run(main())


def test_a_full_queue_is_refused_at_once_with_a_retry_estimate() -> None:
    engine = ScriptedEngine(delay=0.02, held=True)

    async def main() -> None:
        runner = ModelRunner(engine, max_waiting=1)
        params = SamplingParams(max_tokens=10)
        running = asyncio.create_task(collect(runner, [1], params))
        await until(lambda: engine.running == 1, "generating")
        waiting = asyncio.create_task(collect(runner, [1], params))
        await until(lambda: runner.waiting == 1, "queued")
        assert (runner.busy, runner.waiting) == (True, 1)
        with pytest.raises(QueueFull) as refused:
            async with runner.reserve():
                pass
        assert refused.value.retry_after >= 1
        assert not running.done()
        engine.released.set()
        assert [len(items) for items in await asyncio.gather(running, waiting)] == [11, 11]
        await runner.close()

    asyncio.run(main())
    assert engine.most_running == 1


def test_with_max_waiting_zero_only_the_running_request_is_served() -> None:
    async def main() -> None:
        engine = ScriptedEngine(delay=0.02, held=True)
        runner = ModelRunner(engine, max_waiting=0)
        running = asyncio.create_task(collect(runner, [1], SamplingParams(max_tokens=5)))
        await until(lambda: runner.busy, "reserved")
        with pytest.raises(QueueFull):
            async with runner.reserve():
                pass
        engine.released.set()
        await running
        assert len(await collect(runner, [1], SamplingParams(max_tokens=2))) == 3
        await runner.close()

    asyncio.run(main())


@pytest.mark.model
def test_a_cancelled_consumer_frees_the_model_within_a_token_or_two(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    counting = CountingEngine(engine)
    seen_at_cancel = 0

    async def long_request(runner: ModelRunner, started: asyncio.Event) -> None:
        nonlocal seen_at_cancel
        async with runner.reserve() as slot:
            async for _ in slot.generate(chat_prompt, SamplingParams(max_tokens=400)):
                seen_at_cancel += 1
                if seen_at_cancel == 3:
                    started.set()

    async def main() -> list[Any]:
        runner = ModelRunner(counting, max_waiting=2)  # type: ignore[arg-type]
        started = asyncio.Event()
        victim = asyncio.create_task(long_request(runner, started))
        await started.wait()
        follower = asyncio.create_task(collect(runner, chat_prompt, SamplingParams(max_tokens=3)))
        await asyncio.sleep(0)
        victim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await victim
        produced_when_freed = counting.produced
        follower_items = await follower
        await runner.close()
        assert produced_when_freed <= seen_at_cancel + 2
        return follower_items

    follower_items = asyncio.run(main())
    assert follower_items[-1] == Finish("length", 3)


@pytest.mark.model
def test_a_request_cancelled_during_its_prompt_frees_the_model_before_the_prompt_is_done(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = " ".join(f"Entry {n}: the lamp was lit at dusk." for n in range(60))
    long_prompt = engine.tokenize(text, add_bos=False, special=False)[: engine.context_size - 8]
    short_prompt = engine.tokenize("The sea is", add_bos=False, special=False)
    decoder = engine._decoder
    real_evaluate = decoder.evaluate
    evaluated: list[int] = []  # the length of each prompt chunk evaluated, in order

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        first_chunk_done = asyncio.Event()

        def spying_evaluate(stream: int, tokens: Sequence[int], begin: int, **kwargs: Any) -> None:
            real_evaluate(stream, tokens, begin, **kwargs)
            evaluated.append(len(tokens))
            loop.call_soon_threadsafe(first_chunk_done.set)

        monkeypatch.setattr(decoder, "evaluate", spying_evaluate)
        runner = ModelRunner(engine, max_waiting=2)
        victim = asyncio.create_task(collect(runner, long_prompt, SamplingParams(max_tokens=5)))
        await first_chunk_done.wait()
        follower = asyncio.create_task(collect(runner, short_prompt, SamplingParams(max_tokens=2)))
        await asyncio.sleep(0)
        victim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await victim
        victim_chunks = len(evaluated)
        follower_items = await follower
        await runner.close()
        assert victim_chunks < len(long_prompt) // 32, "the whole prompt was evaluated"
        return follower_items

    assert asyncio.run(main())[-1] == Finish("length", 2)


@pytest.mark.model
def test_an_abandoned_iterator_is_stopped_when_the_reservation_ends(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    counting = CountingEngine(engine)

    async def main() -> None:
        runner = ModelRunner(counting, max_waiting=1)  # type: ignore[arg-type]
        async with runner.reserve() as slot:
            # Still referenced, so not finalized: only leaving the reservation can stop it.
            pieces = slot.generate(chat_prompt, SamplingParams(max_tokens=400))
            async for _ in pieces:
                break
        assert counting.produced <= 3
        assert not runner.busy
        await pieces.aclose()  # type: ignore[attr-defined]
        await runner.close()

    asyncio.run(main())


def test_the_next_request_starts_only_once_a_cancelled_one_has_stopped() -> None:
    # With a pool of several threads nothing but the runner keeps two generations apart.
    engine = ScriptedEngine(delay=0.05)

    async def main() -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            runner = ModelRunner(engine, max_waiting=2, executor=pool)
            victim = asyncio.create_task(collect(runner, [1], SamplingParams(max_tokens=100)))
            await until(lambda: engine.produced >= 2, "generating")
            follower = asyncio.create_task(collect(runner, [1], SamplingParams(max_tokens=3)))
            await until(lambda: runner.waiting == 1, "queued")
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            # The follower may already be generating here (it is woken before this task):
            # that the two never overlapped is most_running, below.
            assert len(await follower) == 4
            await runner.close()

    asyncio.run(main())
    assert engine.most_running == 1


def test_an_engine_error_reaches_the_consumer_and_frees_the_model() -> None:
    engine = ScriptedEngine(fail_after=2)

    async def main() -> None:
        runner = ModelRunner(engine, max_waiting=1)
        received = []
        with pytest.raises(RuntimeError, match="the engine broke"):
            async with runner.reserve() as slot:
                async for item in slot.generate([1], SamplingParams(max_tokens=5)):
                    received.append(item)
        assert len(received) == 2
        assert not runner.busy
        engine.fail_after = None
        assert len(await collect(runner, [1], SamplingParams(max_tokens=2))) == 3
        await runner.close()

    asyncio.run(main())


@pytest.mark.model
def test_an_invalid_request_is_raised_before_any_piece(engine: LlamaEngine) -> None:
    async def main() -> None:
        runner = ModelRunner(engine, max_waiting=1)
        with pytest.raises(ContextOverflow):
            await collect(runner, [1] * engine.context_size, SamplingParams(max_tokens=2))
        assert len(await collect(runner, [1, 2, 3], SamplingParams(max_tokens=2))) == 3
        await runner.close()

    asyncio.run(main())


@pytest.mark.model
def test_several_generations_in_one_reservation(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    async def main() -> list[list[Any]]:
        runner = ModelRunner(engine, max_waiting=1)
        params = SamplingParams(max_tokens=4, temperature=0)
        async with runner.reserve() as slot:
            first = [item async for item in slot.generate(chat_prompt, params)]
            second = [item async for item in slot.generate(chat_prompt, params)]
        await runner.close()
        return [first, second]

    first, second = asyncio.run(main())
    assert first == second
    assert first[-1] == Finish("length", 4)


@pytest.mark.model
def test_the_event_loop_stays_responsive_during_a_generation(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    async def main() -> list[str]:
        runner = ModelRunner(engine, max_waiting=1)
        happened: list[str] = []
        done = False

        async def ticker() -> None:
            while not done:
                happened.append("tick")
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        async with runner.reserve() as slot:
            async for _ in slot.generate(chat_prompt, SamplingParams(max_tokens=48)):
                happened.append("piece")
        done = True
        await ticking
        await runner.close()
        return happened

    happened = asyncio.run(main())
    first = happened.index("piece")
    last = len(happened) - 1 - happened[::-1].index("piece")
    assert happened.count("piece") == 49  # 48 tokens, then the finish
    # A loop blocked by the generation would tick before it and after it, never during it.
    assert happened[first:last].count("tick") >= 3


@pytest.mark.model
def test_tokenizing_on_the_loop_while_the_worker_decodes_is_safe(
    engine: LlamaEngine, chat_prompt: list[int]
) -> None:
    text = "Tokenize me while a generation runs: ünïcödé, 日本語, <|im_end|>."
    expected = engine.tokenize(text, add_bos=False, special=True)
    params = SamplingParams(max_tokens=24, temperature=0)
    alone = list(engine.generate(chat_prompt, params, threading.Event()))

    async def main() -> tuple[list[Any], list[list[int]]]:
        runner = ModelRunner(engine, max_waiting=1)
        results: list[list[int]] = []
        generation = asyncio.create_task(collect(runner, chat_prompt, params))
        while not generation.done():
            results.append(engine.tokenize(text, add_bos=False, special=True))
            engine.render_chat([{"role": "user", "content": text}])
            await asyncio.sleep(0)
        items = await generation
        await runner.close()
        return items, results

    items, results = asyncio.run(main())
    assert len(results) > 10
    assert all(result == expected for result in results)
    assert items == alone


def test_close_lets_running_and_waiting_requests_finish_within_the_grace() -> None:
    async def main() -> None:
        engine = ScriptedEngine(delay=0.01, held=True)
        runner = ModelRunner(engine, max_waiting=2)
        first = asyncio.create_task(collect(runner, [1], SamplingParams(max_tokens=5)))
        second = asyncio.create_task(collect(runner, [1], SamplingParams(max_tokens=5)))
        await until(lambda: runner.busy and runner.waiting == 1, "running and queued")
        engine.released.set()
        await runner.close(grace=PATIENCE)
        assert first.done() and second.done()
        assert [len(first.result()), len(second.result())] == [6, 6]
        with pytest.raises(RunnerClosed):
            async with runner.reserve():
                pass

    asyncio.run(main())


def test_close_stops_what_outlasts_the_grace_and_turns_waiters_away() -> None:
    engine = ScriptedEngine(delay=0.01)
    tokens = 3000  # 30 s at least: far longer than close may take

    async def main() -> None:
        runner = ModelRunner(engine, max_waiting=2)
        running = asyncio.create_task(collect(runner, [1], SamplingParams(max_tokens=tokens)))
        await until(lambda: engine.produced > 0, "generating")
        waiting = asyncio.create_task(collect(runner, [1], SamplingParams(max_tokens=5)))
        await until(lambda: runner.waiting == 1, "queued")
        await asyncio.wait_for(runner.close(grace=0.05), PATIENCE)
        with pytest.raises(RunnerClosed, match="stopped"):
            await running
        with pytest.raises(RunnerClosed):
            await waiting

    asyncio.run(main())
    assert engine.produced < tokens
    assert engine.running == 0


def test_the_warm_up_runs_on_the_thread_every_step_runs_on() -> None:
    # llama.cpp keeps OpenMP workers per calling thread: a warm-up on another thread would
    # leave a second team competing with the first for the whole life of the server.
    engine = ScriptedEngine(delay=0.0)
    runner = ModelRunner(engine, max_waiting=2)
    warmed: list[int] = []

    async def main() -> None:
        await runner.warm_up(lambda engine: warmed.append(threading.get_ident()))
        for _ in range(3):
            await collect(runner, [1, 2], SamplingParams(max_tokens=1))
        await runner.close()

    asyncio.run(main())
    assert len(warmed) == 1
    assert engine.step_threads == set(warmed)
    assert warmed[0] != threading.get_ident()  # off the event loop, all the same
