"""Proving the engine on this host before the server says it is ready.

llama.cpp is compiled for a CPU, and picks kernels at run time by what the CPU reports and by
the shape of each batch. A build or a kernel that does not suit the host does not raise: it
kills the process with a signal (an AMX kernel that dies with SIGILL on a batched decode, a
wheel built with ``-march=native`` on one host and reused from pip's cache on another). Found
under the first real request, that is a server gone without a word.

So before the server opens its port, `prove` runs every decode shape the server uses
(`SHAPES`: one sequence, the prompt's batched chunks, several sequences decoded together the
way concurrent requests and the choices of ``n`` and ``best_of`` are, logprobs of sampled and
of prompt tokens, a grammar, every sampler setting) in a child process on each configured
model's settings. A child that dies, hangs or fails becomes an `EngineCannotRun` whose
message names the shape, the signal and what to change; ``mimic-reference`` prints it and
exits with status 4. Once the child has passed, the server loads the model itself and runs
the same shapes again in-process (`exercise`) before ``GET /health`` answers ok: the process
that will serve has run every shape once.

    python -m reference.preflight '{"path": "model.gguf", "context_size": 2048, ...}'

runs the child's side by hand: it prints each shape's name as it starts it, then ``ok``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from reference.config import ModelConfig

__all__ = ["SHAPES", "EngineCannotRun", "exercise", "prove"]

#: Seconds the child may take to load the model and run every shape (about 2 s here).
PROOF_TIMEOUT = 300.0
_STARTING = "shape: "
_PASSED = "ok"
_TAIL_LINES = 12

logger = logging.getLogger("mimic.reference")

_REBUILD = (
    "If llama-cpp-python was built on another host (pip reuses a wheel from its cache, and a "
    "wheel built with -march=native runs only where it was built), rebuild it here with the "
    "project's portable flags: CMAKE_ARGS='-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF' pip install "
    "--no-cache-dir --force-reinstall --no-deps llama-cpp-python"
)


class EngineCannotRun(RuntimeError):
    """The engine failed its proof on this host; the message says where, how and what to do."""


def _prompt(engine: Any, words: int) -> list[int]:
    text = engine.render_chat(
        [{"role": "user", "content": " ".join(["Tell me about the sea."] * words)}]
    )
    return engine.tokenize(text, add_bos=False, special=True)


def _run(engine: Any, prompt: Sequence[int], **params: Any) -> None:
    from reference.engine import SamplingParams

    generation = engine.generate(prompt, SamplingParams(**params), threading.Event())
    for _ in generation:
        pass


def _one_sequence(engine: Any) -> None:
    _run(engine, _prompt(engine, 1), max_tokens=3, temperature=0.0)


def _long_prompt(engine: Any) -> None:
    # Several full chunks of prompt evaluation (32 tokens each), then decoding after them.
    _run(engine, _prompt(engine, 24), max_tokens=2, temperature=0.0)


class _Outcome:
    """An outlet that keeps only how a generation ended."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def put(self, items: Any) -> None:
        pass

    def close(self, error: BaseException | None = None) -> None:
        self.error = error


def _several_sequences(engine: Any) -> None:
    # Requests decoded together: the choices of one prompt (`n`, `best_of`) copy the stream
    # that evaluated it, another prompt joins, and they end at different steps.
    from reference.engine import SamplingParams

    prompt, other = _prompt(engine, 2), _prompt(engine, 3)
    outcomes = []
    for index, tokens in enumerate((prompt, prompt, prompt, other)):
        outcome = _Outcome()
        params = SamplingParams(max_tokens=2 + index, temperature=1.0, seed=index, top_logprobs=0)
        engine.submit(tokens, params, threading.Event(), outcome)
        outcomes.append(outcome)
    while engine.step():
        pass
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error


def _logprobs(engine: Any) -> None:
    _run(engine, _prompt(engine, 3), max_tokens=2, top_logprobs=5, prompt_logprobs=2)


def _grammar(engine: Any) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    _run(engine, _prompt(engine, 1), max_tokens=4, temperature=0.0, json_schema=schema)


def _samplers(engine: Any) -> None:
    _run(
        engine,
        _prompt(engine, 1),
        max_tokens=3,
        temperature=0.7,
        top_p=0.9,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={0: -100.0},
        stop=("\n\n",),
    )


#: Every decode shape the server uses, in the order they run.
SHAPES: tuple[tuple[str, Callable[[Any], None]], ...] = (
    ("one sequence", _one_sequence),
    ("long prompt (batched chunks)", _long_prompt),
    ("several sequences together (n, best_of, concurrent requests)", _several_sequences),
    ("logprobs (sampled and prompt tokens)", _logprobs),
    ("grammar (json_schema)", _grammar),
    ("samplers (seed, top_p, penalties, logit_bias, stop)", _samplers),
)


def exercise(engine: Any, started: Callable[[str], None] = lambda name: None) -> None:
    """Run every shape of `SHAPES` on ``engine``, calling ``started(name)`` before each."""
    for name, shape in SHAPES:
        started(name)
        shape(engine)


def _settings(model: ModelConfig) -> dict[str, Any]:
    return {
        "path": str(model.model_path()),
        "context_size": model.context_size,
        "parallel": model.parallel,
        "threads": model.threads,
        "chat_format": model.chat_format,
        "extra_buffer_types": model.extra_buffer_types,
        "flash_attention": model.flash_attention,
    }


def prove(
    model: ModelConfig,
    *,
    timeout: float = PROOF_TIMEOUT,
    command: Sequence[str] | None = None,
) -> None:
    """Run every shape on ``model``'s settings in a child process; raise `EngineCannotRun`.

    ``command`` replaces the child's command line (``python -m reference.preflight SETTINGS``),
    for tests of how a child's death is reported.
    """
    argv = list(command or [sys.executable, "-m", "reference.preflight"])
    argv.append(json.dumps(_settings(model)))
    began = time.perf_counter()
    try:
        child = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=os.environ,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        output = _text(expired.stdout)
        raise EngineCannotRun(
            _explain(model, f"did not finish within {timeout:g} s", output, _text(expired.stderr))
        ) from None
    output = _text(child.stdout)
    if child.returncode == 0 and output.splitlines()[-1:] == [_PASSED]:
        logger.info(
            "model %s: the engine ran every decode shape in a child process in %.1f s",
            model.name,
            time.perf_counter() - began,
        )
        return
    raise EngineCannotRun(_explain(model, _how(child.returncode), output, _text(child.stderr)))


def prove_all(models: Iterable[ModelConfig]) -> None:
    """`prove` each distinct engine among ``models`` (names that share settings, once)."""
    proven: set[Any] = set()
    for model in models:
        key = model.engine_key()
        if key not in proven:
            prove(model)
            proven.add(key)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        description = signal.strsignal(-returncode) or name
        return f"was killed by {name} ({description})"
    return f"exited with status {returncode}"


def _explain(model: ModelConfig, how: str, output: str, errors: str) -> str:
    shapes = [line[len(_STARTING) :] for line in output.splitlines() if line.startswith(_STARTING)]
    where = f" running the shape {shapes[-1]!r}" if shapes else " loading the model"
    tail = "\n".join(f"    {line}" for line in errors.strip().splitlines()[-_TAIL_LINES:])
    message = f"model {model.name!r} ({model.model_path()}): the engine's self-test {how}{where}."
    if model.flash_attention and not shapes:
        message += (
            f"\n  [models.{model.name}] runs flash attention (the default): if llama.cpp's log "
            "says it cannot for this model, set flash_attention = false."
        )
    if model.extra_buffer_types:
        message += (
            f"\n  [models.{model.name}] sets extra_buffer_types = true: llama.cpp's repacked "
            "kernels (AMX on some Xeons) die with SIGILL on batched decodes; set it to false."
        )
    message += f"\n  {_REBUILD}."
    if tail:
        message += f"\n  The self-test's last words:\n{tail}"
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """The child's side: load the model from the settings given as JSON, run every shape."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m reference.preflight SETTINGS_JSON", file=sys.stderr)
        return 2
    settings = json.loads(args[0])
    from reference.engine import load_engine

    def started(name: str) -> None:
        print(f"{_STARTING}{name}", flush=True)

    engine = load_engine(
        Path(settings["path"]),
        context_size=settings["context_size"],
        parallel=settings["parallel"],
        threads=settings["threads"],
        chat_format=settings["chat_format"],
        extra_buffer_types=settings["extra_buffer_types"],
        flash_attention=settings["flash_attention"],
    )
    try:
        exercise(engine, started)
    finally:
        engine.close()
    print(_PASSED, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
