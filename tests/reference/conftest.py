"""Fixtures for the reference server's tests: the real model, loaded once per session.

Nothing here imports llama-cpp-python until a fixture that needs it runs, so that the tests
that need neither it nor the model (``pytest -m "not model"``) run where it is not installed.
A test that uses the model, through any fixture here, carries the ``model`` marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Imported first for the OpenMP default it sets (reference/engine/__init__.py), which must be in
# place before a test module imports llama_cpp itself; the interface needs no llama-cpp-python.
import reference.engine  # noqa: F401
from reference.model_install import default_model_path

if TYPE_CHECKING:
    from reference.engine import LlamaEngine

#: Small enough to keep memory and prompt times low, large enough for every test prompt.
TEST_CONTEXT_SIZE = 512


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that reaches the model through a fixture here but lacks the marker."""
    unmarked = [
        item.nodeid
        for item in items
        if "model_path" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("model") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests use the real model but are not marked `model`, so that "
            '`pytest -m "not model"` would run them: ' + ", ".join(unmarked)
        )


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
    from reference.engine import load_engine

    loaded = load_engine(model_path, context_size=TEST_CONTEXT_SIZE, threads=2)
    yield loaded
    loaded.close()


@pytest.fixture
def llama_logits_all(engine: LlamaEngine, model_path: Path) -> Iterator[Any]:
    """llama-cpp-python's own ``Llama`` with every position's logits, computing as `engine` does."""
    from llama_cpp import Llama

    reference = Llama(
        str(model_path),
        n_ctx=128,
        n_threads=2,
        logits_all=True,
        flash_attn=engine.flash_attention,
        verbose=False,
    )
    yield reference
    reference.close()


@pytest.fixture(scope="session")
def chat_prompt(engine: LlamaEngine) -> list[int]:
    """A short chat prompt, as the HTTP layer would build it."""
    text = engine.render_chat([{"role": "user", "content": "Tell me a story about a dragon."}])
    return engine.tokenize(text, add_bos=False, special=True)


# The HTTP layer's fixtures (the app in-process, its test client, the shared model runner, the
# real server as a subprocess) live in their own module; pytest finds fixtures only where a
# conftest defines or imports them, so importing them here serves every test in this directory.
from tests.reference._server import app, client, runner, server  # noqa: E402, F401
