"""Fixtures for the reference server's tests: the real model, loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reference.engine import LlamaEngine, load_engine
from reference.model_install import default_model_path

#: Small enough to keep memory and prompt times low, large enough for every test prompt.
TEST_CONTEXT_SIZE = 512


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The default model, as installed by ``mimic-reference-install-model``."""
    path = default_model_path()
    if not path.is_file():
        pytest.fail(
            f"the default model is not installed at {path}: run mimic-reference-install-model "
            "(or set MIMIC_MODELS_DIR to where it is)"
        )
    return path


@pytest.fixture(scope="session")
def engine(model_path: Path) -> Iterator[LlamaEngine]:
    """The real model behind the engine interface, shared by the whole session."""
    loaded = load_engine(model_path, context_size=TEST_CONTEXT_SIZE, threads=2)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def chat_prompt(engine: LlamaEngine) -> list[int]:
    """A short chat prompt, as the HTTP layer would build it."""
    text = engine.render_chat([{"role": "user", "content": "Tell me a story about a dragon."}])
    return engine.tokenize(text, add_bos=False, special=True)


# The HTTP layer's fixtures live in their own module (appended by the HTTP layer's author).
from tests.reference._server import app, client, runner, server  # noqa: E402, F401
