"""Every use of llama-cpp-python beyond its documented ``Llama`` API, in one place.

The engine needs three things that ``Llama`` does not offer: a model loaded without llama.cpp's
extra buffer types (``Llama.__init__`` takes no such argument), a decode that asks for an
output row at every position of a batch (``Llama.eval`` asks for the last one only), and
clearing the KV cache. Each reaches into llama-cpp-python's internals (``Llama._ctx``,
``Llama._batch``, the model parameters it builds while it loads). They live here, behind a
version check, so that a llama-cpp-python release that moves them breaks this one module at
import or in its tests (tests/reference/test_bindings.py), not the token loop.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as low_level
from llama_cpp import Llama

__all__ = ["SUPPORTED", "clear_cache", "decode_every_row", "open_llama", "supported"]

#: The llama-cpp-python releases this module was written and tested against: [lowest, highest).
SUPPORTED = ((0, 3, 16), (0, 4, 0))

_LOADING = threading.Lock()


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


def open_llama(model_path: str, *, extra_buffer_types: bool, **kwargs: Any) -> Llama:
    """``Llama(model_path, **kwargs)``, with llama.cpp's extra buffer types on or off.

    llama.cpp's ``llama_model_params.use_extra_bufts`` decides whether weights are repacked at
    load into the layout of a faster kernel (AMX on Xeons that have it, interleaved layouts on
    some ARM and x86 hosts). ``Llama`` builds its model parameters from
    ``llama_model_default_params()`` and loads at once, so for the duration of the load that
    function returns them with the flag set as asked. The lock keeps two loads from seeing
    each other's setting.
    """
    with _LOADING, _default_params(use_extra_bufts=extra_buffer_types):
        return Llama(model_path=model_path, **kwargs)


@contextlib.contextmanager
def _default_params(**fields: Any) -> Iterator[None]:
    original = low_level.llama_model_default_params

    def patched() -> Any:
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    low_level.llama_model_default_params = patched
    try:
        yield
    finally:
        low_level.llama_model_default_params = original


def clear_cache(llama: Llama) -> None:
    """Drop every position of every sequence from ``llama``'s KV cache."""
    llama._ctx.kv_cache_seq_rm(-1, 0, -1)


def decode_every_row(llama: Llama, tokens: Sequence[int], begin: int) -> None:
    """Decode ``tokens`` at positions ``begin`` on, with an output row for every position.

    ``Llama.eval`` does the same with a row for the last position only; ``llama_get_logits_ith``
    then reads row ``i`` of this batch.
    """
    llama._batch.set_batch(batch=list(tokens), n_past=begin, logits_all=True)
    llama._ctx.decode(llama._batch)
