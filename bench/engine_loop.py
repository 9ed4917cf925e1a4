"""Speed of the engine's token loop against llama-cpp-python's own streaming completion.

Run:  MIMIC_MODELS_DIR=... python bench/engine_loop.py [--rounds 7] [--max-tokens 128] [--threads 2]

Side by side in one run, alternating round by round (machines here are shared and noisy, so only
ratios taken side by side mean anything), same prompt, temperature 0:

- (a) llama-cpp-python in-process, ``Llama.create_completion(stream=True)``;
- (b) ``reference.engine``'s ``generate``;
- (c) the same engine through ``reference.scheduler.ModelRunner`` (worker thread -> event loop).

With ``--prompt-cache cold`` (the default) each contender evaluates the whole prompt every round:
(a) gets ``Llama.reset()``, and the engine first generates one token from an unrelated prompt,
outside the timing, so that its KV cache holds nothing to reuse. With ``warm`` each keeps its
cache, as a server does between requests: (a) re-evaluates the prompt's last token (its prefix
reuse), the engine evaluates nothing (it keeps the prompt's logits). Prints, as medians over the
rounds: end-to-end tokens/s (request to last token), decode tokens/s (first to last token) and
time to first token, then the ratios b/a and c/a.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The OpenMP spin count the engine sets (see reference/engine/__init__.py) applies to every
# contender: libgomp reads it once, when llama_cpp is first imported.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from llama_cpp import Llama

from reference.engine import Finish, LlamaEngine, Piece, SamplingParams, load_engine
from reference.model_install import default_model_path
from reference.scheduler import ModelRunner

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]


@dataclass
class Timing:
    tokens: int
    first: float
    total: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total

    @property
    def decode_tokens_per_s(self) -> float:
        return (self.tokens - 1) / (self.total - self.first)


@dataclass
class Contender:
    name: str
    run: Callable[[], Timing]
    timings: list[Timing] = field(default_factory=list)

    def median(self, metric: Callable[[Timing], float]) -> float:
        return statistics.median(metric(t) for t in self.timings)


def tokens_per_s(timing: Timing) -> float:
    return timing.tokens_per_s


def decode_tokens_per_s(timing: Timing) -> float:
    return timing.decode_tokens_per_s


def first(timing: Timing) -> float:
    return timing.first


#: Shares no token with a chat prompt, so evaluating it leaves the engine nothing to reuse.
UNRELATED = SamplingParams(max_tokens=1, temperature=0.0)


def llama_cpp_python(
    llama: Llama, prompt: list[int], max_tokens: int, *, cold: bool
) -> Callable[[], Timing]:
    def run() -> Timing:
        if cold:
            llama.reset()
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        stream = llama.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, stream=True
        )
        for chunk in stream:
            if chunk["choices"][0]["finish_reason"] is not None:  # type: ignore[index]
                continue  # the closing chunk carries no token
            tokens += 1
            if tokens == 1:
                first = time.perf_counter() - started
        return Timing(tokens, first, time.perf_counter() - started)

    return run


def forget(engine: LlamaEngine, unrelated: list[int]) -> None:
    """Leave the engine's KV cache with nothing the benchmark prompt can reuse."""
    for _ in engine.generate(unrelated, UNRELATED, threading.Event()):
        pass


def engine_direct(
    engine: LlamaEngine, prompt: list[int], params: SamplingParams, unrelated: list[int] | None
) -> Callable[[], Timing]:
    def run() -> Timing:
        if unrelated is not None:
            forget(engine, unrelated)
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        for item in engine.generate(prompt, params, threading.Event()):
            if isinstance(item, Piece):
                tokens += item.token_count
                if tokens == 1:
                    first = time.perf_counter() - started
        return Timing(tokens, first, time.perf_counter() - started)

    return run


def engine_via_runner(
    loop: asyncio.Runner,
    runner: ModelRunner,
    prompt: list[int],
    params: SamplingParams,
    unrelated: list[int] | None,
) -> Callable[[], Timing]:
    """One event loop and one runner for all rounds, as in a server."""

    async def once() -> Timing:
        if unrelated is not None:
            forget(runner.engine, unrelated)  # the runner is idle between rounds
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async with runner.reserve() as slot:
            async for item in slot.generate(prompt, params):
                if isinstance(item, Piece):
                    tokens += item.token_count
                    if tokens == 1:
                        first = time.perf_counter() - started
                elif isinstance(item, Finish):
                    break
        return Timing(tokens, first, time.perf_counter() - started)

    return lambda: loop.run(once())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a GGUF file (default: the installed default model)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--prompt-cache",
        choices=("cold", "warm"),
        default="cold",
        help="evaluate the whole prompt every round (cold), or let each keep its cache (warm)",
    )
    args = parser.parse_args()
    cold = args.prompt_cache == "cold"
    model = args.model or default_model_path()

    engine = load_engine(model, context_size=2048, threads=args.threads)
    llama = Llama(
        str(model), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )
    prompt = engine.tokenize(engine.render_chat(PROMPT), add_bos=False, special=True)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    unrelated = engine.tokenize("Tides.", add_bos=False, special=False) if cold else None
    loop = asyncio.Runner()
    runner = ModelRunner(engine, max_waiting=1)
    contenders = [
        Contender(
            "(a) llama-cpp-python create_completion(stream=True)",
            llama_cpp_python(llama, prompt, args.max_tokens, cold=cold),
        ),
        Contender("(b) engine.generate", engine_direct(engine, prompt, params, unrelated)),
        Contender(
            "(c) engine via ModelRunner",
            engine_via_runner(loop, runner, prompt, params, unrelated),
        ),
    ]
    for contender in contenders:  # warm-up: page the weights in, start the thread pools
        contender.run()
    for round_number in range(args.rounds):
        order = contenders if round_number % 2 == 0 else contenders[::-1]
        for contender in order:
            contender.timings.append(contender.run())

    print(
        f"model {model.name}, prompt {len(prompt)} tokens ({args.prompt_cache} cache), "
        f"max_tokens {args.max_tokens}, threads {args.threads}, rounds {args.rounds}"
    )
    print(f"{'contender':52} {'tokens':>6} {'tok/s':>7} {'decode tok/s':>12} {'ttft ms':>8}")
    for c in contenders:
        print(
            f"{c.name:52} {c.timings[0].tokens:>6} {c.median(tokens_per_s):>7.1f} "
            f"{c.median(decode_tokens_per_s):>12.1f} {1000 * c.median(first):>8.1f}"
        )
    a, b, c = contenders
    for label, x in (("b/a", b), ("c/a", c)):
        end_to_end = x.median(tokens_per_s) / a.median(tokens_per_s)
        decode = x.median(decode_tokens_per_s) / a.median(decode_tokens_per_s)
        print(f"{label}: tokens/s {end_to_end:.3f}, decode tokens/s {decode:.3f}")
    loop.run(runner.close())
    loop.close()
    engine.close()
    llama.close()


if __name__ == "__main__":
    main()
