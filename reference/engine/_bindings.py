"""The llama.cpp handles the engine holds, made with the settings it needs; the version check.

The engine calls llama.cpp's C API through llama-cpp-python's ctypes bindings of ``llama.h``
(``llama_cpp.llama_*``). It does not use the high-level ``Llama`` class: that holds one sequence
per context and samples through its own loop, and the engine decodes several sequences in one
batch, each with its own sampler. This module makes the long-lived handles:

- the model, loaded with llama.cpp's extra buffer types on or off (weight repacking, see
  `reference.config.ModelConfig.extra_buffer_types`);
- a context with one KV stream per parallel sequence (``kv_unified = false``). A sequence's
  logits then never depend on what the other sequences hold or where in the cache its cells
  lie: measured on SmolLM2 Q4_1, a sequence decoded beside three others, with others joining,
  leaving and copied into other streams, gave exactly the logits it gives alone (largest
  difference 0.0), with flash attention on or off, where one unified cache shared by all
  sequences did not (without flash attention: other tokens from the second step on; with it:
  as soon as a sequence that ended left a hole that a running one filled).

Every other setting is what ``Llama(model, n_ctx=..., n_threads=..., flash_attn=...)`` uses,
so that with one sequence the engine computes exactly what ``Llama`` computes: the tests
compare the two (tests/reference/test_engine_batching.py).

The module checks at import that the installed release is one it was written against, so that
a release that changes these structures breaks here, in tests/reference/test_bindings.py.
"""

from __future__ import annotations

import threading
from typing import Any

import llama_cpp

__all__ = ["BATCH_CAPACITY", "SUPPORTED", "load_model", "new_context", "supported"]

#: The llama-cpp-python releases this module was written and tested against: [lowest, highest).
SUPPORTED = ((0, 3, 36), (0, 4, 0))

#: Tokens one decode call may hold (``n_batch`` and ``n_ubatch``, as ``Llama`` set them). The
#: engine's calls are far smaller: a prompt chunk, or one token per running sequence.
BATCH_CAPACITY = 512

_BACKEND = threading.Lock()
_backend_ready = False


def supported(version: str) -> bool:
    """Whether ``version`` (``"0.3.36"``) lies in `SUPPORTED`."""
    try:
        parts = tuple(int(part) for part in version.split(".")[:3])
    except ValueError:
        return False
    lowest, above = SUPPORTED
    return lowest <= parts < above


if not supported(llama_cpp.__version__):  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"llama-cpp-python {llama_cpp.__version__} is installed; the reference engine supports "
        f"{'.'.join(map(str, SUPPORTED[0]))} up to (not including) "
        f"{'.'.join(map(str, SUPPORTED[1]))}: reference/engine/_bindings.py names what it uses"
    )


def _init_backend() -> None:
    global _backend_ready
    with _BACKEND:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


def load_model(path: str, *, extra_buffer_types: bool) -> Any:
    """Load the GGUF file at ``path`` on the CPU, memory-mapped; raise ValueError if it fails.

    ``extra_buffer_types`` decides whether llama.cpp repacks weights at load into the layout of
    a faster kernel (AMX on Xeons that have it, interleaved layouts on some ARM and x86 hosts).
    Free the model with ``llama_cpp.llama_model_free``.
    """
    _init_backend()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    params.split_mode = llama_cpp.LLAMA_SPLIT_MODE_LAYER
    params.main_gpu = 0
    params.vocab_only = False
    params.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP
    params.use_extra_bufts = extra_buffer_types
    model = llama_cpp.llama_model_load_from_file(path.encode("utf-8"), params)
    if not model:
        raise ValueError(f"llama.cpp could not load the model file {path} (its log says why)")
    return model


def new_context(
    model: Any, *, context_size: int, sequences: int, threads: int, flash_attention: bool
) -> Any:
    """A context of ``sequences`` KV streams of ``context_size`` tokens each.

    ``flash_attention`` chooses llama.cpp's fused attention kernel over its matrix products
    (see `reference.config.ModelConfig.flash_attention`). llama.cpp rounds each stream up to a
    multiple of 256 tokens; ``llama_n_ctx_seq`` tells the size it got. Raise ValueError if
    llama.cpp cannot make it (out of memory, say). Free it with ``llama_cpp.llama_free``.
    """
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = context_size * sequences
    params.n_seq_max = sequences
    params.kv_unified = False
    params.n_batch = params.n_ubatch = BATCH_CAPACITY
    params.n_threads = params.n_threads_batch = threads
    # Asked for, not left to llama.cpp's "auto": the kernel decides the numbers a seed gives.
    params.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        if flash_attention
        else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    # What `Llama` set where llama.cpp's defaults differ.
    params.rope_scaling_type = llama_cpp.LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED
    params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
    params.attention_type = llama_cpp.LLAMA_ATTENTION_TYPE_UNSPECIFIED
    params.rope_freq_base = params.rope_freq_scale = 0.0
    params.yarn_ext_factor = -1.0
    params.yarn_attn_factor = 1.0
    params.yarn_beta_fast = 32.0
    params.yarn_beta_slow = 1.0
    params.yarn_orig_ctx = 0
    params.embeddings = False
    params.offload_kqv = True
    params.no_perf = False
    context = llama_cpp.llama_init_from_model(model, params)
    if not context:
        raise ValueError(
            f"llama.cpp could not make a context of {sequences} x {context_size} tokens "
            "(its log says why)"
        )
    return context
