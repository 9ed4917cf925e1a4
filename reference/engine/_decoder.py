"""The decode calls: one llama.cpp context, its KV streams, and the batch it decodes.

Every use of ``llama_batch``, ``llama_decode`` and llama.cpp's memory functions is here. A
context holds one KV stream per sequence (`reference.engine._bindings.new_context`); sequence
``s`` lives in stream ``s``, so the two words name the same thing. Two kinds of call:

- `Decoder.evaluate`: a chunk of one stream's prompt, with an output row for its last
  position (as ``Llama.eval`` asked) or for every position (a prompt's own logprobs);
- `Decoder.step`: the next token of each of several streams, with an output row each.

llama.cpp fits into one compute pass (a ubatch) only sequences whose ids follow each other
(``llama_batch_allocr::split_equal``): a step over streams 0, 2 and 3 costs two passes,
measured 25 % more than one over streams 0, 1 and 2. The engine keeps running sequences in
the lowest streams for that reason (`Decoder.copy` moves one down).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import llama_cpp
import numpy as np

from reference.engine._base import EngineError
from reference.engine._bindings import BATCH_CAPACITY

__all__ = ["DecodeFailed", "Decoder"]


class DecodeFailed(EngineError):
    """``llama_decode`` refused or failed a call; the streams it touched hold unknown cells."""


class Decoder:
    """Decode calls over one context's KV streams. Use it from one thread at a time."""

    def __init__(self, context: Any, vocab_size: int) -> None:
        self.context = context
        """llama.cpp's context, for samplers that read a row where it lies."""
        self._vocab_size = vocab_size
        self._memory = llama_cpp.llama_get_memory(context)
        self.streams: int = llama_cpp.llama_n_seq_max(context)
        """How many streams the context holds: sequences it can decode together."""
        self.stream_size: int = llama_cpp.llama_n_ctx_seq(context)
        """Tokens one stream holds, as llama.cpp rounded it (a multiple of 256)."""
        self._batch = llama_cpp.llama_batch_init(BATCH_CAPACITY, 0, 1)
        self.calls = 0
        """Decode calls made so far (tests read it to see that work was, or was not, done)."""

    def evaluate(self, stream: int, tokens: Sequence[int], begin: int, *, every_row: bool) -> None:
        """Decode ``tokens`` into ``stream`` at positions ``begin`` on.

        Output rows: the last position's (`row` ``-1``), or with ``every_row`` one per
        position (`row` ``i`` for position ``begin + i``).
        """
        batch = self._batch
        count = len(tokens)
        last = count - 1
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = begin + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = stream
            batch.logits[i] = every_row or i == last
        batch.n_tokens = count
        self._decode()

    def step(self, entries: Sequence[tuple[int, int, int]]) -> None:
        """Decode one ``(stream, token, position)`` per stream; row ``i`` is ``entries[i]``'s.

        Give the entries in ascending stream order, so that llama.cpp can take consecutive
        streams in one pass.
        """
        batch = self._batch
        for i, (stream, token, position) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = stream
            batch.logits[i] = True
        batch.n_tokens = len(entries)
        self._decode()

    def row(self, index: int) -> np.ndarray[Any, np.dtype[np.single]]:
        """The logits of the last call's ``index``-th token (-1: its last output row).

        llama.cpp's own buffer, not a copy: valid until the next call.
        """
        pointer = llama_cpp.llama_get_logits_ith(self.context, index)
        if not pointer:
            raise EngineError(f"llama.cpp has no output row {index} for the last decode call")
        return np.ctypeslib.as_array(pointer, shape=(self._vocab_size,))

    def keep(self, stream: int, end: int) -> None:
        """Drop the stream's cells from position ``end`` on (0: all of them)."""
        llama_cpp.llama_memory_seq_rm(self._memory, stream, end, -1)

    def copy(self, source: int, target: int) -> None:
        """Make ``target`` hold what ``source`` holds, cell for cell.

        llama.cpp copies the stream's whole buffer (a stream's size in tokens, all layers) at
        the start of the next decode call: about 8.5 ms for 2,048 tokens of SmolLM2 here, where
        evaluating a prompt costs about 3.7 ms a token.
        """
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    def close(self) -> None:
        """Free the batch (the context is the engine's to free)."""
        llama_cpp.llama_batch_free(self._batch)

    def _decode(self) -> None:
        self.calls += 1
        status = llama_cpp.llama_decode(self.context, self._batch)
        if status != 0:
            raise DecodeFailed(f"llama_decode returned {status}")
