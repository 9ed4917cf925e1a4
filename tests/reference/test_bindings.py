"""The llama.cpp handles the engine holds, and the version check.

Every test here needs llama-cpp-python: the module under test imports it. It is imported when a
test runs, so that ``pytest -m "not model"`` collects this file without it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def llama_cpp() -> ModuleType:
    import llama_cpp

    return llama_cpp


@pytest.fixture(scope="module")
def bindings() -> ModuleType:
    from reference.engine import _bindings

    return _bindings


def test_the_installed_release_is_supported(bindings: ModuleType, llama_cpp: ModuleType) -> None:
    assert bindings.supported(llama_cpp.__version__)


@pytest.mark.parametrize(
    ("version", "expected"),
    [("0.3.36", True), ("0.3.99", True), ("0.3.35", False), ("0.4.0", False), ("x.y", False)],
)
def test_supported_releases(bindings: ModuleType, version: str, expected: bool) -> None:
    assert bindings.supported(version) is expected


@pytest.mark.parametrize("extra_buffer_types", [False, True])
def test_the_model_loads_with_extra_buffer_types_as_asked(
    bindings: ModuleType,
    llama_cpp: ModuleType,
    model_path: Path,
    extra_buffer_types: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_load = llama_cpp.llama_model_load_from_file
    seen: list[Any] = []

    def recording_load(path: bytes, params: Any) -> Any:
        seen.append((params.use_extra_bufts, params.n_gpu_layers, params.load_mode))
        return real_load(path, params)

    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", recording_load)
    model = bindings.load_model(str(model_path), extra_buffer_types=extra_buffer_types)
    try:
        assert seen == [(extra_buffer_types, 0, llama_cpp.LLAMA_LOAD_MODE_MMAP)]
    finally:
        llama_cpp.llama_model_free(model)


def test_a_file_that_is_no_model_is_a_value_error(bindings: ModuleType, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="could not load"):
        bindings.load_model(str(junk), extra_buffer_types=False)


def test_a_context_has_a_stream_per_sequence_rounded_to_256_tokens(
    bindings: ModuleType, llama_cpp: ModuleType, model_path: Path
) -> None:
    model = bindings.load_model(str(model_path), extra_buffer_types=False)
    try:
        context = bindings.new_context(
            model, context_size=300, sequences=3, threads=1, flash_attention=True
        )
        try:
            assert llama_cpp.llama_n_seq_max(context) == 3
            assert llama_cpp.llama_n_ctx_seq(context) == 512
            assert llama_cpp.llama_n_ctx(context) == 3 * 512
        finally:
            llama_cpp.llama_free(context)
    finally:
        llama_cpp.llama_model_free(model)


@pytest.mark.parametrize("flash_attention", [False, True])
def test_flash_attention_is_asked_for_as_given_never_left_to_llama_cpp(
    bindings: ModuleType,
    llama_cpp: ModuleType,
    model_path: Path,
    flash_attention: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_init = llama_cpp.llama_init_from_model
    seen: list[int] = []

    def recording_init(model: Any, params: Any) -> Any:
        seen.append(params.flash_attn_type)
        return real_init(model, params)

    monkeypatch.setattr(llama_cpp, "llama_init_from_model", recording_init)
    model = bindings.load_model(str(model_path), extra_buffer_types=False)
    try:
        context = bindings.new_context(
            model, context_size=256, sequences=1, threads=1, flash_attention=flash_attention
        )
        llama_cpp.llama_free(context)
    finally:
        llama_cpp.llama_model_free(model)
    expected = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if flash_attention
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    assert seen == [expected]
