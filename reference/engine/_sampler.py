"""Choosing each sequence's next token, and what it reports about the choice.

Every sequence has its own `TokenSampler`: a chain of llama.cpp samplers holding its state
(seeded random generator, penalties' window of past tokens, grammar position). The chain is
the one llama-cpp-python's ``Llama.generate`` builds, sampler for sampler and in the same
order, with the logit bias as llama.cpp's own sampler where ``Llama`` ran a Python callback
over the vocabulary each token (the same float additions, without the Python). So a request
with a seed gives the text it gave before the engine decoded several sequences together.

A sequence's tokens after the first come from its row of a decode call shared by several
sequences: `TokenSampler.sample_at` has llama.cpp sample it where it lies, in one call
(``llama_sampler_sample``: each ctypes call gives up Python's lock and takes it back, and on two
cores the event loop thread, writing the last token out, holds it often; five calls a token
instead of one cost about 5% of a stream's speed). Its first token comes from its prompt's last
logits, which may have been computed by another request with the same prompt and kept:
`TokenSampler.sample` reads such a row through `Candidates`, the one vocabulary-sized array of
llama.cpp's token data that every sampler of an engine fills in turn, built from the row
exactly as ``llama_sampler_sample`` builds it from the context.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np

from reference.engine._base import SamplingParams, TokenLogprob, TopLogprob

__all__ = ["RANDOM_SEED", "Candidates", "TokenSampler", "token_logprob"]

#: llama.cpp reserves this seed for "pick one at random", so request seeds are folded below it.
RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED

_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")], align=True)


class Candidates:
    """llama.cpp's ``llama_token_data_array`` over the whole vocabulary, reused for every sample."""

    def __init__(self, vocab_size: int) -> None:
        if ctypes.sizeof(llama_cpp.llama_token_data) != _TOKEN_DATA.itemsize:
            raise RuntimeError("llama_token_data is not laid out as (id, logit, p)")
        self._data = (llama_cpp.llama_token_data * vocab_size)()
        self._view = np.frombuffer(self._data, dtype=_TOKEN_DATA)
        self._logits = self._view["logit"]
        fresh = np.zeros(vocab_size, dtype=_TOKEN_DATA)
        fresh["id"] = np.arange(vocab_size, dtype=np.int32)
        # Copied back with one memmove before each sample (a structured numpy copy of the same
        # bytes took 250 us here; this and the logits, 40 us).
        self._fresh = fresh.tobytes()
        self._array = llama_cpp.llama_token_data_array(
            data=self._data, size=vocab_size, selected=-1, sorted=False
        )
        self._pointer = ctypes.pointer(self._array)
        self._size = vocab_size

    def fill(self, logits: np.ndarray[Any, np.dtype[np.single]]) -> Any:
        """Every token with its logit and p = 0, in id order, unsorted, none selected."""
        ctypes.memmove(self._data, self._fresh, len(self._fresh))  # samplers reorder it in place
        self._logits[:] = logits
        array = self._array
        array.size = self._size
        array.selected = -1
        array.sorted = False
        return self._pointer

    def selected(self) -> int:
        """The token the samplers chose."""
        index = self._array.selected
        if not 0 <= index < self._array.size:
            raise RuntimeError(f"the samplers selected no token (index {index})")
        return int(self._view["id"][index])


class TokenSampler:
    """One sequence's sampler chain; free it with `close`.

    ``penalty_window`` is how many of the latest generated tokens the penalties look back
    over. ``grammar`` is GBNF that has already been parsed once (llama.cpp hands back a null
    sampler for one that does not parse, and a chain would crash on it).
    """

    def __init__(
        self,
        vocabulary: Any,
        vocab_size: int,
        params: SamplingParams,
        *,
        penalty_window: int,
        grammar: str | None,
    ) -> None:
        self._chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        try:
            add = self._add
            if params.logit_bias:
                biases = (llama_cpp.llama_logit_bias * len(params.logit_bias))(
                    *(
                        llama_cpp.llama_logit_bias(token, bias)
                        for token, bias in params.logit_bias.items()
                    )
                )
                add(llama_cpp.llama_sampler_init_logit_bias(vocab_size, len(biases), biases))
            add(
                llama_cpp.llama_sampler_init_penalties(
                    vocab_size,
                    penalty_window,
                    1.0,
                    params.frequency_penalty,
                    params.presence_penalty,
                )
            )
            if grammar is not None:
                add(
                    llama_cpp.llama_sampler_init_grammar(
                        vocabulary, grammar.encode("utf-8"), b"root"
                    )
                )
            if params.temperature == 0.0:
                add(llama_cpp.llama_sampler_init_greedy())
            else:
                # ``Llama.generate``'s chain with the engine's settings: top_k 0, typical_p 1
                # and min_p 0 change nothing, but they stay so that the order of the
                # candidates (which the seeded draw walks) is the one it always was.
                add(llama_cpp.llama_sampler_init_top_k(0))
                add(llama_cpp.llama_sampler_init_typical(1.0, 1))
                add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
                add(llama_cpp.llama_sampler_init_min_p(0.0, 1))
                add(llama_cpp.llama_sampler_init_temp(params.temperature))
                seed = RANDOM_SEED if params.seed is None else params.seed % RANDOM_SEED
                add(llama_cpp.llama_sampler_init_dist(seed))
        except BaseException:
            self.close()
            raise

    def _add(self, sampler: Any) -> None:
        if not sampler:
            raise RuntimeError("llama.cpp could not make a sampler")
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def sample_at(self, context: Any, index: int) -> int:
        """Choose the next token from the ``index``-th row of ``context``'s last decode call."""
        return int(llama_cpp.llama_sampler_sample(self._chain, context, index))

    def sample(self, candidates: Candidates, logits: np.ndarray[Any, np.dtype[np.single]]) -> int:
        """Choose the next token from ``logits`` and remember it (penalties, grammar)."""
        llama_cpp.llama_sampler_apply(self._chain, candidates.fill(logits))
        token = candidates.selected()
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def close(self) -> None:
        """Free the chain and its samplers (idempotent)."""
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None

    def __del__(self) -> None:
        # A generation made but never run (an iterator never started) still frees its chain.
        self.close()


def token_logprob(
    logits: np.ndarray[Any, np.dtype[np.single]],
    token: int,
    top: int,
    pieces: Sequence[bytes],
    data: bytes | None = None,
) -> TokenLogprob:
    """``token``'s logprob under ``logits`` (the model's raw distribution), and the likeliest.

    ``top`` is how many of the likeliest tokens to report beside it.

    ``data`` replaces the token's bytes in the entry (a control token in a prompt, written as
    its text).
    """
    shifted = logits - logits.max()
    log_total = float(np.log(np.exp(shifted).sum()))
    alternatives: tuple[TopLogprob, ...] = ()
    if top:
        best = np.argpartition(shifted, -top)[-top:]
        best = best[np.argsort(-shifted[best], kind="stable")]
        alternatives = tuple(
            TopLogprob(
                pieces[t].decode("utf-8", "replace"), pieces[t], float(shifted[t]) - log_total
            )
            for t in best.tolist()
        )
    if data is None:
        data = pieces[token]
    return TokenLogprob(
        data.decode("utf-8", "replace"), data, float(shifted[token]) - log_total, alternatives
    )
