"""The engine's proof at start-up: every decode shape, in a child process and in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reference import preflight
from reference.config import ModelConfig
from tests.reference._server import _command

if TYPE_CHECKING:
    from reference.engine import LlamaEngine


@pytest.mark.model
def test_every_shape_runs_on_the_real_engine(engine: LlamaEngine) -> None:
    started: list[str] = []
    preflight.exercise(engine, started.append)
    assert started == [name for name, _ in preflight.SHAPES]


def test_the_shapes_cover_every_engine_path() -> None:
    names = " ".join(name for name, _ in preflight.SHAPES)
    for path in ("one sequence", "long prompt", "n, best_of", "logprobs", "grammar", "samplers"):
        assert path in names


@pytest.mark.model
def test_the_real_engine_passes_its_proof(model_path: Path) -> None:
    preflight.prove(ModelConfig(name="asha", path=model_path, context_size=512, threads=2))


def _dies_by(signal_name: str, after: str) -> list[str]:
    code = (
        "import os, signal, sys\n"
        f"print('shape: {after}', flush=True)\n"
        "print('llama.cpp said something', file=sys.stderr, flush=True)\n"
        f"os.kill(os.getpid(), signal.{signal_name})\n"
    )
    return [sys.executable, "-c", code]


def test_a_child_killed_by_a_signal_names_the_signal_the_shape_and_the_fix(
    tmp_path: Path,
) -> None:
    model_path = tmp_path / "asha.gguf"  # never loaded: the child is a stand-in
    model = ModelConfig(name="asha", path=model_path, extra_buffer_types=True)
    with pytest.raises(preflight.EngineCannotRun) as failure:
        preflight.prove(model, command=_dies_by("SIGILL", "long prompt (batched chunks)"))
    for part in (
        "killed by SIGILL (Illegal instruction)",
        "running the shape 'long prompt (batched chunks)'",
        "model 'asha'",
        "sets extra_buffer_types = true",
        "-DGGML_NATIVE=OFF",
        "llama.cpp said something",
    ):
        assert part in str(failure.value)
    # Without extra buffer types, the build is what is left to blame.
    plain = ModelConfig(name="asha", path=model_path)
    with pytest.raises(preflight.EngineCannotRun) as failure:
        preflight.prove(plain, command=_dies_by("SIGSEGV", "grammar (json_schema)"))
    assert "killed by SIGSEGV" in str(failure.value)
    assert "extra_buffer_types" not in str(failure.value)
    assert "-DGGML_NATIVE=OFF" in str(failure.value)


def test_a_child_that_cannot_load_the_model_names_flash_attention_where_it_is_on(
    tmp_path: Path,
) -> None:
    fails = [sys.executable, "-c", "raise SystemExit(1)"]
    model = ModelConfig(name="asha", path=tmp_path / "asha.gguf")  # the child is a stand-in
    with pytest.raises(preflight.EngineCannotRun) as failure:
        preflight.prove(model, command=fails)
    assert "set flash_attention = false" in str(failure.value)
    off = ModelConfig(name="asha", path=tmp_path / "asha.gguf", flash_attention=False)
    with pytest.raises(preflight.EngineCannotRun) as failure:
        preflight.prove(off, command=fails)
    assert "flash_attention" not in str(failure.value)
    # Once a shape ran, the model loaded: flash attention is not what failed.
    with pytest.raises(preflight.EngineCannotRun) as failure:
        preflight.prove(model, command=_dies_by("SIGSEGV", "grammar (json_schema)"))
    assert "flash_attention" not in str(failure.value)


def test_a_child_that_fails_or_hangs_is_reported(tmp_path: Path) -> None:
    model = ModelConfig(name="asha", path=tmp_path / "asha.gguf")  # the child is a stand-in
    with pytest.raises(preflight.EngineCannotRun, match="exited with status 3 loading the model"):
        preflight.prove(model, command=[sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(preflight.EngineCannotRun, match="did not finish within 1 s"):
        preflight.prove(
            model, command=[sys.executable, "-c", "import time; time.sleep(60)"], timeout=1
        )
    # A child that exits 0 without saying it ran every shape has not proved anything.
    with pytest.raises(preflight.EngineCannotRun, match="exited with status 0"):
        preflight.prove(model, command=[sys.executable, "-c", "print('shape: x')"])


def test_names_sharing_an_engine_are_proved_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_path = tmp_path / "asha.gguf"
    proved: list[str] = []
    monkeypatch.setattr(preflight, "prove", lambda model: proved.append(model.name))
    same = [ModelConfig(name=name, path=model_path) for name in ("asha", "soji")]
    other = ModelConfig(name="mobile", path=model_path, context_size=512)
    preflight.prove_all([*same, other])
    assert proved == ["asha", "mobile"]


@pytest.mark.model
def test_a_server_whose_engine_cannot_run_exits_4_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    config = tmp_path / "broken.toml"
    config.write_text(f'[models.asha]\npath = "{broken}"\n', encoding="utf-8")
    done = subprocess.run(
        [*_command(), "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4
    assert "model 'asha'" in done.stderr
    assert "self-test exited with status 1 loading the model" in done.stderr
