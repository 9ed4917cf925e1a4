"""The one module that reaches into llama-cpp-python's internals, and its version check.

Every test here needs llama-cpp-python: the module under test imports it. It is imported when a
test runs, so that ``pytest -m "not model"`` collects this file without it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def llama_cpp() -> ModuleType:
    import llama_cpp

    return llama_cpp


@pytest.fixture(scope="module")
def low_level() -> ModuleType:
    import llama_cpp.llama_cpp as low_level

    return low_level


@pytest.fixture(scope="module")
def bindings() -> ModuleType:
    from reference.engine import _bindings

    return _bindings


def test_the_installed_release_is_supported(bindings: ModuleType, llama_cpp: ModuleType) -> None:
    assert bindings.supported(llama_cpp.__version__)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.3.16", True), ("0.3.36", True), ("0.3.15", False), ("0.4.0", False), ("x.y", False)],
)
def test_supported_releases(bindings: ModuleType, version: str, expected: bool) -> None:
    assert bindings.supported(version) is expected


@pytest.mark.parametrize("extra_buffer_types", [False, True])
def test_the_model_loads_with_extra_buffer_types_as_asked(
    bindings: ModuleType, low_level: ModuleType, model_path: Path, extra_buffer_types: bool
) -> None:
    default = low_level.llama_model_default_params
    llama = bindings.open_llama(
        str(model_path), extra_buffer_types=extra_buffer_types, n_ctx=64, verbose=False
    )
    try:
        assert llama.model_params.use_extra_bufts is extra_buffer_types
        assert low_level.llama_model_default_params is default  # put back after the load
        assert low_level.llama_model_default_params().use_extra_bufts  # llama.cpp's default
    finally:
        llama.close()


def test_decode_every_row_gives_a_row_per_position(
    bindings: ModuleType, llama_cpp: ModuleType, model_path: Path
) -> None:
    llama = bindings.open_llama(str(model_path), extra_buffer_types=False, n_ctx=64, verbose=False)
    try:
        tokens = llama.tokenize(b"The sea is deep and wide", add_bos=False)
        bindings.decode_every_row(llama, tokens, 0)
        rows = [
            np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(llama.ctx, row), shape=(llama.n_vocab(),)
            ).copy()
            for row in range(len(tokens))
        ]
        # Each row predicts a different next token's distribution.
        assert not np.array_equal(rows[0], rows[-1])
        bindings.clear_cache(llama)
        llama.n_tokens = 0
        llama.eval(tokens)  # a cleared cache takes the same tokens from position 0 again
    finally:
        llama.close()
