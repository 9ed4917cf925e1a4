"""Concurrent requests on one model: what decoding them together buys, side by side in one run.

Run:  python bench/concurrency.py [--rounds 5] [--tokens 150] [--choice-tokens 64]
                                  [--llama-server PATH]

Servers, each started once and then measured round after round in an order that rotates
(machines here are shared and noisy, so only ratios taken side by side mean anything):

- (b) this server as a user starts it: no config, so its defaults (``parallel = 4``, one
  llama.cpp thread per physical core);
- (s) this server with ``parallel = 1`` and nothing else changed: one request at a time;
- (c) llama-cpp-python's own server (``python -m llama_cpp.server``, its defaults), if its
  extra is installed;
- (l) with ``--llama-server PATH``: llama.cpp's own server with 4 slots (``-np 4``, 2,048
  tokens each), as ``bench/peer_matrix.py`` builds it.

Each round, each server gets:

- one stream alone: ``--tokens`` tokens (end of sequence banned, so every stream is that
  long), a new prompt: its tokens/s (request to last event) and time to first token;
- four such streams at once, four new prompts: their aggregate tokens/s (all tokens over the
  time from the first request to the last event), whether every stream was complete, and the
  time to first token of the one that waited longest (the fourth client); then four streams
  of one new prompt (four clients asking the same), for the fourth client's first token;
- for servers that honour ``n``: one request with ``n = 4`` at ``--choice-tokens`` tokens,
  against four requests one after another with the same prompt and the four seeds.

Prints medians over rounds, each server's ratios (four streams / one alone, fourth first token
/ lone first token, four sequential / ``n = 4``), and every server's peak resident memory
after the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from server_stream import MODEL_NAMES, peak_rss_mb, server, streamed_choices

from conformance.server_process import LOCALHOST, free_port

#: SmolLM2's end-of-generation tokens, banned so that every stream runs its full length.
NO_END = {"0": -100, "2": -100, "4": -100}
NAMES = ("Ada", "Bram", "Cleo", "Dag", "Edda", "Finn", "Greta", "Hal", "Ines", "Jon", "Kai")


def prompt(number: int) -> list[dict[str, str]]:
    """A chat no earlier request asked (so no server has it cached whole), all of one length."""
    name = NAMES[number % len(NAMES)]
    return [
        {
            "role": "user",
            "content": f"Story {number}: write a long tale about {name}, who keeps a lighthouse.",
        }
    ]


@dataclass
class Stream:
    tokens: int
    first: float
    total: float
    complete: bool


@dataclass
class Contender:
    name: str
    url: str
    pid: int
    honours_n: bool
    rounds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def stream(url: str, messages: list[dict[str, str]], tokens: int, start: float) -> Stream:
    """One streamed chat completion; times from ``start`` (a shared starting gun)."""
    body = {
        "model": "mythomax",
        "messages": messages,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "logit_bias": NO_END,
    }
    first = 0.0
    finish = None
    with (
        httpx.Client(timeout=600) as client,
        client.stream("POST", url, json=body) as response,
    ):
        for choice in streamed_choices(response):
            if (choice.get("delta") or {}).get("content") and not first:
                first = time.perf_counter() - start
            finish = choice.get("finish_reason") or finish
    return Stream(tokens, first, time.perf_counter() - start, finish == "length")


def together(url: str, prompts: list[list[dict[str, str]]], tokens: int) -> list[Stream]:
    """The streams of ``prompts`` all at once, from one starting gun."""
    results: list[Stream | None] = [None] * len(prompts)
    gun = threading.Barrier(len(prompts) + 1)
    start = 0.0

    def client(index: int) -> None:
        gun.wait()
        results[index] = stream(url, prompts[index], tokens, start)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    gun.wait()
    for thread in threads:
        thread.join()
    return [result for result in results if result is not None]


def completion(url: str, messages: list[dict[str, str]], tokens: int, **fields: Any) -> int:
    """One plain chat completion; the number of choices that ran their full length."""
    body = {
        "model": "mythomax",
        "messages": messages,
        "max_tokens": tokens,
        "temperature": 1.0,
        "logit_bias": NO_END,
        **fields,
    }
    answer = httpx.post(url, json=body, timeout=600).json()
    return sum(choice["finish_reason"] == "length" for choice in answer["choices"])


def measure_round(contender: Contender, asked: Callable[[], int], args: argparse.Namespace) -> None:
    record = contender.rounds
    alone = stream(contender.url, prompt(asked()), args.tokens, time.perf_counter())
    record["one stream: tokens/s"].append(alone.tokens / alone.total)
    record["one stream: first token (ms)"].append(alone.first * 1000)
    four = together(contender.url, [prompt(asked()) for _ in range(4)], args.tokens)
    aggregate = sum(s.tokens for s in four) / max(s.total for s in four)
    fourth = max(s.first for s in four)
    record["four streams: tokens/s in all"].append(aggregate)
    record["four streams: fourth first token (ms)"].append(fourth * 1000)
    record["four streams: complete (of 4)"].append(sum(s.complete for s in four))
    record["ratio: four streams / one alone"].append(aggregate / (alone.tokens / alone.total))
    record["ratio: fourth first token / lone"].append(fourth / alone.first)
    same = together(contender.url, [prompt(asked())] * 4, args.tokens)
    fourth_same = max(s.first for s in same)
    record["four streams, one prompt: fourth first token (ms)"].append(fourth_same * 1000)
    record["ratio: one prompt, fourth first token / lone"].append(fourth_same / alone.first)
    if not contender.honours_n:
        return
    seed = asked()
    started = time.perf_counter()
    complete = completion(contender.url, prompt(asked()), args.choice_tokens, n=4, seed=seed)
    batched = time.perf_counter() - started
    sequential_prompt = prompt(asked())
    started = time.perf_counter()
    for j in range(4):
        completion(contender.url, sequential_prompt, args.choice_tokens, seed=seed + j)
    sequential = time.perf_counter() - started
    record["n = 4: seconds"].append(batched)
    record["n = 4: complete (of 4)"].append(complete)
    record["4 requests one after another: seconds"].append(sequential)
    record["ratio: one after another / n = 4"].append(sequential / batched)


def report(contenders: list[Contender], args: argparse.Namespace) -> None:
    print(
        f"{args.rounds} rounds, {args.tokens}-token streams, n = 4 at {args.choice_tokens} "
        "tokens (medians over rounds; a ratio is the median of the rounds' ratios)"
    )
    for contender in contenders:
        print(f"  {contender.name}")
        for name, values in contender.rounds.items():
            print(f"    {name:42s} {statistics.median(values):9.3f}")
        print(f"    {'peak memory after the same load (MB)':42s} {peak_rss_mb(contender.pid):9.0f}")
    by_letter = {contender.name[0]: contender for contender in contenders}
    if "b" in by_letter:
        ours = peak_rss_mb(by_letter["b"].pid)
        for letter, other in by_letter.items():
            if letter != "b":
                print(f"  peak memory b/{letter}: {ours / peak_rss_mb(other.pid):.3f}")


def one_at_a_time_config() -> Path:
    config = Path(tempfile.mkdtemp()) / "serial.toml"
    config.write_text("".join(f"[models.{name}]\nparallel = 1\n" for name in MODEL_NAMES))
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--choice-tokens", type=int, default=64)
    parser.add_argument("--llama-server", help="llama.cpp's llama-server binary: run (l)")
    args = parser.parse_args()

    from reference.model_install import default_model_path

    model = default_model_path()
    # Every server as a user starts it: the environment as it is, no thread settings.
    env = dict(os.environ)
    stack = contextlib.ExitStack()
    contenders: list[Contender] = []

    def start(name: str, argv: list[str], *, honours_n: bool) -> None:
        port = free_port()
        process = stack.enter_context(server([*argv, "--port", str(port)], port, env))
        url = f"http://{LOCALHOST}:{port}/v1/chat/completions"
        contenders.append(Contender(name, url, process.pid, honours_n))

    ours = [sys.executable, "-m", "reference.cli"]
    start("b: this server, its defaults (parallel = 4)", ours, honours_n=True)
    start(
        "s: this server, parallel = 1",
        [*ours, "--config", str(one_at_a_time_config())],
        honours_n=True,
    )
    try:
        import llama_cpp.server.app  # noqa: F401  (its extra: fastapi, starlette, ...)

        start(
            "c: llama-cpp-python's server, its defaults",
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--n_ctx",
                "2048",
                "--model_alias",
                "mythomax",
            ],
            honours_n=False,  # it answers n = 4 with one choice
        )
    except ImportError:
        print("llama_cpp.server not installed (pip install 'llama-cpp-python[server]'): no (c)")
    if args.llama_server:
        start(
            "l: llama.cpp's llama-server, 4 slots",
            [args.llama_server, "-m", str(model), "-c", "8192", "-np", "4", "-a", "mythomax"],
            honours_n=False,
        )
    counter = iter(range(1, 10**9))
    with stack:
        for contender in contenders:  # warm-up: the first request of a server is slower
            stream(contender.url, prompt(0), 8, time.perf_counter())
        for round_number in range(args.rounds):
            shift = round_number % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                measure_round(contender, lambda: next(counter), args)
        print(f"model {model.name}")
        report(contenders, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
