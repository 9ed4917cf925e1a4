"""The HTTP layer's own cost per streamed token, as a share of the time the model takes per token.

Run:  MIMIC_MODELS_DIR=... python bench/http_layer.py [--rounds 5] [--events 1000] [--threads 2]

Side by side in one run, alternating round by round (machines here are shared and noisy, so only
ratios taken side by side mean anything):

- the model: wall time per token of ``engine.generate`` (greedy, the default model);
- the HTTP layer: CPU time, on the event loop's thread, per streamed chat event, with the same
  engine behind the app but its generation replaced by one that hands over a piece every
  ``--interval`` ms without computing (so the loop's work is all that is measured). The app runs
  in-process under ASGI with a ``send`` that drops the bytes: uvicorn and the kernel's socket
  work are not counted, only Falcon, the reference's streaming path and the worker hand-off.

Prints both as medians over rounds and the layer's share of a token's time. On 2 cores the
share is what every token costs in decode speed, since the loop's work preempts a llama.cpp
thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The OpenMP spin count the engine sets for itself (see reference/engine/__init__.py).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

from reference.app import create_app
from reference.config import Config
from reference.engine import Finish, LlamaEngine, Piece, SamplingParams, load_engine
from reference.model_install import default_model_path
from reference.pool import ModelPool
from reference.scheduler import ModelRunner

MODEL_NAMES = ("mythomax", "asha", "soji", "mixtral", "mistral", "mobile")
MESSAGES = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


class PacedEngine:
    """The real engine for everything but generating: a step gives a piece every ``interval`` s."""

    def __init__(self, engine: LlamaEngine, interval: float) -> None:
        self._engine = engine
        self._interval = interval
        self._running: list[list[Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def submit(
        self, prompt_tokens: Sequence[int], params: SamplingParams, cancel: Any, outlet: Any
    ) -> None:
        self._running.append([params.max_tokens, params.max_tokens, cancel, outlet])

    def step(self) -> bool:
        time.sleep(self._interval)  # stands for a decode: the stepping thread holds no GIL
        for generation in list(self._running):
            left, total, cancel, outlet = generation
            if cancel.is_set():
                self._running.remove(generation)
                outlet.close()
                continue
            generation[0] = left - 1
            items: list[Piece | Finish] = [Piece(" word", 1)]
            if left == 1:
                items.append(Finish("length", total))
            outlet.put(items)
            if left == 1:
                self._running.remove(generation)
                outlet.close()
        return bool(self._running)


async def stream_once(app: Any, events: int) -> tuple[int, float]:
    """Stream one chat completion through ``app``; return (events sent, loop-thread CPU s)."""
    body = json.dumps(
        {"model": "mythomax", "messages": MESSAGES, "max_tokens": events, "stream": True}
    ).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    delivered = False
    never = asyncio.Event()
    sent = 0

    async def receive() -> Mapping[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal sent
        if message["type"] == "http.response.body" and message.get("body"):
            sent += 1

    start = time.thread_time()
    await app(scope, receive, send)
    return sent, time.thread_time() - start


async def lifespan(app: Any) -> asyncio.Queue[Mapping[str, Any]]:
    """Start the app's lifespan; put ``lifespan.shutdown`` on the returned queue to end it."""
    messages: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: Mapping[str, Any]) -> None:
        started.set()

    await messages.put({"type": "lifespan.startup"})
    asyncio.get_running_loop().create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, messages.get, send)
    )
    await started.wait()
    return messages


def decode_seconds_per_token(engine: LlamaEngine, tokens: int) -> float:
    prompt = engine.tokenize(engine.render_chat(MESSAGES), add_bos=False, special=True)
    params = SamplingParams(max_tokens=tokens, temperature=0)
    list(engine.generate(prompt, params, threading.Event()))  # the prompt is cached from now on
    start = time.perf_counter()
    produced = sum(1 for item in engine.generate(prompt, params, threading.Event()))
    return (time.perf_counter() - start) / max(produced - 1, 1)


async def run(args: argparse.Namespace) -> None:
    model = default_model_path()
    engine = load_engine(model, context_size=2048, threads=args.threads)
    config_file = Path(tempfile.mkdtemp()) / "bench.toml"
    config_file.write_text(
        "".join(
            f'[models.{name}]\npath = "{model}"\ncontext_size = 2048\nthreads = {args.threads}\n'
            for name in MODEL_NAMES
        )
    )
    config = Config.load(str(config_file))
    paced: Any = PacedEngine(engine, args.interval / 1000)  # an Engine by duck typing
    runner = ModelRunner(paced, max_waiting=4)
    app = create_app(config, pool=ModelPool(config, dict.fromkeys(MODEL_NAMES, runner)))
    control = await lifespan(app)
    await stream_once(app, 16)  # warm-up
    decode, layer = [], []
    for _ in range(args.rounds):
        decode.append(decode_seconds_per_token(engine, args.decode_tokens))
        sent, cpu = await stream_once(app, args.events)
        layer.append(cpu / sent)
    await control.put({"type": "lifespan.shutdown"})
    model_ms = statistics.median(decode) * 1000
    layer_us = statistics.median(layer) * 1e6
    share = statistics.median(cost / token for cost, token in zip(layer, decode, strict=True))
    print(f"model {model.name}, {args.threads} threads, {args.rounds} rounds (medians)")
    print(f"  model, wall time per token            {model_ms:8.2f} ms")
    print(f"  HTTP layer, loop-thread CPU per event {layer_us:8.1f} us")
    print(f"  the layer's share of a token's time   {share:8.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--interval", type=float, default=0.5, help="ms between paced pieces")
    parser.add_argument("--threads", type=int, default=2)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
