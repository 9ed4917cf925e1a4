"""Side-by-side speed: the reference server, llama-cpp-python in-process, and its own server.

Run:  python bench/server_stream.py [--rounds 5] [--max-tokens 128] [--threads 2]

Measures, alternating the contenders round by round in one run (machines here are shared
and noisy, so only ratios taken side by side mean anything):

- (a) llama-cpp-python in-process, `create_chat_completion(stream=True)`;
- (b) the reference server over HTTP, streaming chat;
- (c) llama-cpp-python's own server (`python -m llama_cpp.server`), if its extra is installed.

For each: streamed tokens/s (output tokens counted with the model's own tokenizer, over the
time from request to last event), time to first token, requests/s with `max_tokens: 1` (the same
prompt every time, as the issue's target has it), requests/s with `max_tokens: 1` and a new user
message each time (no whole-prompt cache hit: each contender reuses what prefix it can), and each
server's peak resident memory. Prints medians and the ratios b/a and b/c.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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


def distinct_prompt(number: int) -> Messages:
    """A chat that no earlier request asked (the template's prefix is still shared)."""
    return [{"role": "user", "content": f"Question {number}: why does the sea taste of salt?"}]


@dataclass
class Sample:
    tokens_per_s: float
    ttft_s: float


@dataclass
class Contender:
    name: str
    # (max_tokens, messages) -> (text, ttft, total)
    stream: Callable[[int, Messages], tuple[str, float, float]]
    samples: list[Sample] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    rps_distinct: list[float] = field(default_factory=list)
    pid: int | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def server(argv: list[str], port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{argv[:3]} did not start")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                for choice in json.loads(data).get("choices", []):
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece and not ttft:
                        ttft = time.perf_counter() - start
                    parts.append(piece)
        return "".join(parts), ttft, time.perf_counter() - start

    return run


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--rps-requests", type=int, default=20)
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
    config = Path(tempfile.mkdtemp()) / "bench.toml"
    config.write_text(
        "".join(
            f'[models.{name}]\npath = "{model}"\ncontext_size = {args.context}\n'
            f"threads = {args.threads}\n"
            for name in MODEL_NAMES
        )
    )
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
    try:
        import llama_cpp.server  # noqa: F401

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
        asked = 0
        for _ in range(args.rounds):
            for contender in contenders:
                text, ttft, total = contender.stream(args.max_tokens, PROMPT)
                contender.samples.append(Sample(count(text) / total, ttft))
            for contender in contenders:
                start = time.perf_counter()
                for _ in range(args.rps_requests):
                    contender.stream(1, PROMPT)
                contender.rps.append(args.rps_requests / (time.perf_counter() - start))
            for contender in contenders:
                start = time.perf_counter()
                for _ in range(args.rps_requests):
                    asked += 1
                    contender.stream(1, distinct_prompt(asked))
                contender.rps_distinct.append(args.rps_requests / (time.perf_counter() - start))

        print(
            f"model {model.name}, {args.threads} threads, n_ctx {args.context}, "
            f"max_tokens {args.max_tokens}, {args.rounds} alternating rounds (medians)"
        )
        medians = {}
        for contender in contenders:
            tps = statistics.median(s.tokens_per_s for s in contender.samples)
            ttft = statistics.median(s.ttft_s for s in contender.samples)
            rps = statistics.median(contender.rps)
            rps_distinct = statistics.median(contender.rps_distinct)
            medians[contender.name[0]] = (tps, ttft, rps, rps_distinct)
            memory = f"{peak_rss_mb(contender.pid):.0f} MB" if contender.pid else "-"
            print(
                f"  {contender.name:42s} {tps:7.1f} tok/s  ttft {ttft * 1000:6.1f} ms  "
                f"{rps:6.1f} req/s (max_tokens 1)  {rps_distinct:6.1f} req/s (new prompts)  "
                f"peak RSS {memory}"
            )
        b = medians["b"]
        memory = {c.name[0]: peak_rss_mb(c.pid) for c in contenders if c.pid}
        for other in ("a", "c"):
            if other in medians:
                o = medians[other]
                print(
                    f"  b/{other}: tokens/s {b[0] / o[0]:.3f}  ttft {b[1] / o[1]:.3f} (lower is "
                    f"better)  req/s {b[2] / o[2]:.3f}  req/s new prompts {b[3] / o[3]:.3f}"
                    + (
                        f"  peak RSS {memory['b'] / memory[other]:.3f} (lower is better)"
                        if other in memory
                        else ""
                    )
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
