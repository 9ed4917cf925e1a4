"""Side-by-side speed: the reference server, llama-cpp-python in-process, and its own server.

Run:  python bench/server_stream.py [--rounds 5] [--max-tokens 128] [--threads 2]

Measures, alternating the contenders round by round in one run (machines here are shared
and noisy, so only ratios taken side by side mean anything):

- (a) llama-cpp-python in-process, `create_chat_completion(stream=True)`;
- (b) the reference server over HTTP, streaming chat, computing what (a) computes: ``--threads``
  and flash attention off (llama-cpp-python's default), so that b/a is the cost of the server;
- (c) llama-cpp-python's own server (`python -m llama_cpp.server`), if its extra is installed;
- (e) the reference server as a user starts it: its own default config and no settings (so
  llama.cpp runs the thread count the server chooses for this host, not `--threads`);
- (d) with `--other-python PATH`: the reference server again, run by another interpreter (a venv
  with another llama-cpp-python build), its model tables given the `--other-setting` lines too
  (`--other-setting 'extra_buffer_types = true'`): a change of build or setting, measured
  against the current one side by side.

For each: streamed tokens/s (output tokens counted with the model's own tokenizer, over the
time from request to last event), time to first token, requests/s with `max_tokens: 1` (the same
prompt every time, as the issue's target has it), requests/s with `max_tokens: 1` and a new user
message each time (no whole-prompt cache hit: each contender reuses what prefix it can), once with
messages that open alike ("Question 41: ...", "Question 42: ...") and once with messages that
differ from their first word, and each server's peak resident memory. Prints medians over the
rounds, b's ratios to each other contender and e's to a, as medians of the per-round ratios
(each round runs the contenders back to back, in an order that rotates from round to round).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conformance.server_process import LOCALHOST, free_port, running

# Every contender computes with the OpenMP spin count the reference engine sets for itself (see
# reference/engine/__init__.py), so that the figures compare servers, not libgomp settings: on a
# loaded machine libgomp's default spinning costs llama.cpp most of its speed. The servers
# inherit it from this process's environment; libgomp reads it when llama_cpp is first imported.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

#: The Mimic model names. The bench config maps all of them to the one model with the same
#: settings; names left to the defaults would differ in settings and load the model again.
MODEL_NAMES = ("mythomax", "asha", "soji", "mixtral", "mistral", "mobile")

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
Messages = list[dict[str, str]]


#: First words for `new_opening_prompt`: consecutive requests never open alike.
OPENERS = ("Why", "How", "Tell me", "Explain", "Say", "Describe", "Guess", "Imagine", "Ask")


def distinct_prompt(number: int) -> Messages:
    """A chat that no earlier request asked, opening as the last one did ("Question 41: ...")."""
    return [{"role": "user", "content": f"Question {number}: why does the sea taste of salt?"}]


def new_opening_prompt(number: int) -> Messages:
    """A chat that no earlier request asked, differing from the last one from its first word."""
    opener = OPENERS[number % len(OPENERS)]
    return [{"role": "user", "content": f"{opener} the sea tastes of salt (question {number})."}]


#: What each round measures, in the order printed: (name, unit, whether higher is better).
FIGURES = (
    ("tokens/s", "tok/s", True),
    ("time to first token", "ms", False),
    ("req/s, same prompt", "req/s", True),
    ("req/s, new prompts (same opening)", "req/s", True),
    ("req/s, new prompts (new opening)", "req/s", True),
)


@dataclass
class Contender:
    name: str
    # (max_tokens, messages) -> (text, ttft, total)
    stream: Callable[[int, Messages], tuple[str, float, float]]
    pid: int | None = None
    #: Each figure's value per round, by name.
    rounds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server(
    argv: list[str], port: int, env: dict[str, str]
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """Run ``argv`` (a server on ``port``) until /v1/models answers; stop it on leaving."""
    log = Path(tempfile.mkdtemp()) / "server.log"
    base_url = f"http://{LOCALHOST}:{port}"
    return running(
        argv, base_url, log_path=log, env=env, timeout=120, paths=("/v1/models",), grace=30
    )


def bench_config(model: Path, args: argparse.Namespace, extra: list[str]) -> Path:
    """A config mapping every Mimic name to ``model`` with the bench's settings and ``extra``.

    A line of ``extra`` replaces the bench's own setting of the same key (``threads = 1``).
    """
    config = Path(tempfile.mkdtemp()) / "bench.toml"
    settings = {
        "path": f'"{model}"',
        "context_size": str(args.context),
        "threads": str(args.threads),
        "flash_attention": "false",
    }
    for line in extra:
        key, _, value = line.partition("=")
        settings[key.strip()] = value.strip()
    table = "".join(f"{key} = {value}\n" for key, value in settings.items())
    config.write_text("".join(f"[models.{name}]\n{table}" for name in MODEL_NAMES))
    return config


def streamed_choices(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Each choice of each chunk of a streamed chat completion, until ``[DONE]``."""
    response.raise_for_status()
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield from json.loads(data).get("choices", [])


def http_streamer(
    client: httpx.Client, url: str, model: str
) -> Callable[[int, Messages], tuple[str, float, float]]:
    def run(max_tokens: int, messages: Messages = PROMPT) -> tuple[str, float, float]:
        body = {
            "model": model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        }
        parts: list[str] = []
        start = time.perf_counter()
        ttft = 0.0
        with client.stream("POST", url, json=body, timeout=300) as response:
            for choice in streamed_choices(response):
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece and not ttft:
                    ttft = time.perf_counter() - start
                parts.append(piece)
        return "".join(parts), ttft, time.perf_counter() - start

    return run


def requests_per_s(contender: Contender, prompts: list[Messages]) -> float:
    """Requests per second for ``prompts`` asked one after another with ``max_tokens: 1``."""
    start = time.perf_counter()
    for messages in prompts:
        contender.stream(1, messages)
    return len(prompts) / (time.perf_counter() - start)


def in_process_streamer(llama: object) -> Callable[[int, Messages], tuple[str, float, float]]:
    def run(max_tokens: int, messages: Messages = PROMPT) -> tuple[str, float, float]:
        parts: list[str] = []
        start = time.perf_counter()
        ttft = 0.0
        for chunk in llama.create_chat_completion(  # type: ignore[attr-defined]
            messages=messages, max_tokens=max_tokens, temperature=0, stream=True
        ):
            piece = chunk["choices"][0]["delta"].get("content") or ""
            if piece and not ttft:
                ttft = time.perf_counter() - start
            parts.append(piece)
        return "".join(parts), ttft, time.perf_counter() - start

    return run


def report(contenders: list[Contender], args: argparse.Namespace) -> None:
    """Print each contender's medians, then b's ratios to the others and e's to a.

    A ratio is the median over rounds of that round's ratio: the contenders of a round ran
    back to back, so a machine that slows down for a while slows both sides of it.
    """
    print(
        f"{args.rounds} rounds, {args.threads} threads each but e, n_ctx {args.context}, "
        f"max_tokens {args.max_tokens} (medians over rounds)"
    )
    memory = {c.name[0]: peak_rss_mb(c.pid) for c in contenders if c.pid}
    for contender in contenders:
        print(f"  {contender.name}")
        for name, unit, _ in FIGURES:
            print(f"    {name:36s} {statistics.median(contender.rounds[name]):8.1f} {unit}")
        if contender.pid:
            print(f"    {'peak memory (RSS)':36s} {memory[contender.name[0]]:8.0f} MB")
    by_letter = {c.name[0]: c for c in contenders}
    pairs = [("b", letter) for letter in by_letter if letter != "b"] + [("e", "a")]
    for mine, theirs in pairs:
        if mine not in by_letter or theirs not in by_letter:
            continue
        print(f"  {mine}/{theirs}")
        for name, _, higher_is_better in FIGURES:
            rounds = zip(by_letter[mine].rounds[name], by_letter[theirs].rounds[name], strict=True)
            ratio = statistics.median(ours / other for ours, other in rounds)
            better = "higher" if higher_is_better else "lower"
            print(f"    {name:36s} {ratio:8.3f}  ({better} is better for {mine})")
        if mine in memory and theirs in memory:
            ratio = memory[mine] / memory[theirs]
            print(f"    {'peak memory (RSS)':36s} {ratio:8.3f}  (lower is better for {mine})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--rps-requests", type=int, default=20)
    parser.add_argument("--other-python", help="run (d), the reference server on this Python")
    parser.add_argument(
        "--other-setting",
        action="append",
        default=[],
        help="a TOML line added to each of (d)'s model tables (repeatable)",
    )
    args = parser.parse_args()

    from llama_cpp import Llama

    from reference.model_install import default_model_path

    model = default_model_path()
    llama = Llama(
        str(model), n_ctx=args.context, n_threads=args.threads, verbose=False, logits_all=False
    )
    count = lambda text: len(llama.tokenize(text.encode(), add_bos=False))  # noqa: E731

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    ours_port, theirs_port = free_port(), free_port()
    config = bench_config(model, args, [])
    contenders = [Contender("a: llama-cpp-python in-process", in_process_streamer(llama))]
    stack = contextlib.ExitStack()
    client = stack.enter_context(httpx.Client())
    ours = stack.enter_context(
        server(
            [
                sys.executable,
                "-m",
                "reference.cli",
                "--port",
                str(ours_port),
                "--config",
                str(config),
            ],
            ours_port,
            env,
        )
    )
    contenders.append(
        Contender(
            "b: reference server (HTTP stream)",
            http_streamer(client, f"http://127.0.0.1:{ours_port}/v1/chat/completions", "mythomax"),
            pid=ours.pid,
        )
    )
    defaults_port = free_port()
    user_env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    defaults = stack.enter_context(
        server(
            [sys.executable, "-m", "reference.cli", "--port", str(defaults_port)],
            defaults_port,
            user_env,
        )
    )
    contenders.append(
        Contender(
            "e: reference server, its defaults",
            http_streamer(
                client, f"http://127.0.0.1:{defaults_port}/v1/chat/completions", "mythomax"
            ),
            pid=defaults.pid,
        )
    )
    if args.other_python:
        other_port = free_port()
        other = stack.enter_context(
            server(
                [
                    args.other_python,
                    "-m",
                    "reference.cli",
                    "--port",
                    str(other_port),
                    "--config",
                    str(bench_config(model, args, args.other_setting)),
                ],
                other_port,
                env,
            )
        )
        contenders.append(
            Contender(
                f"d: reference server on {args.other_python} {' '.join(args.other_setting)}",
                http_streamer(
                    client, f"http://127.0.0.1:{other_port}/v1/chat/completions", "mythomax"
                ),
                pid=other.pid,
            )
        )
    try:
        import llama_cpp.server.app  # noqa: F401  (its extra: fastapi, starlette, ...)

        theirs = stack.enter_context(
            server(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--port",
                    str(theirs_port),
                    "--n_ctx",
                    str(args.context),
                    "--n_threads",
                    str(args.threads),
                    "--model_alias",
                    "mythomax",
                ],
                theirs_port,
                env,
            )
        )
        contenders.append(
            Contender(
                "c: llama-cpp-python server (HTTP stream)",
                http_streamer(
                    client, f"http://127.0.0.1:{theirs_port}/v1/chat/completions", "mythomax"
                ),
                pid=theirs.pid,
            )
        )
    except ImportError:
        print(
            "llama_cpp.server not installed (pip install 'llama-cpp-python[server]'): (c) skipped"
        )

    with stack:
        for contender in contenders:  # warm-up: load, first prompt evaluation
            contender.stream(8, PROMPT)
        asked = itertools.count(1)
        for round_number in range(args.rounds):
            # Back to back within a round, in an order that rotates from round to round.
            shift = round_number % len(contenders)
            order = contenders[shift:] + contenders[:shift]
            for contender in order:
                text, ttft, total = contender.stream(args.max_tokens, PROMPT)
                contender.rounds["tokens/s"].append(count(text) / total)
                contender.rounds["time to first token"].append(ttft * 1000)
            for contender in order:
                rate = requests_per_s(contender, [PROMPT] * args.rps_requests)
                contender.rounds["req/s, same prompt"].append(rate)
            for contender in order:
                prompts = [distinct_prompt(next(asked)) for _ in range(args.rps_requests)]
                rate = requests_per_s(contender, prompts)
                contender.rounds["req/s, new prompts (same opening)"].append(rate)
            for contender in order:
                prompts = [new_opening_prompt(next(asked)) for _ in range(args.rps_requests)]
                rate = requests_per_s(contender, prompts)
                contender.rounds["req/s, new prompts (new opening)"].append(rate)
        print(f"model {model.name}")
        report(contenders, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
