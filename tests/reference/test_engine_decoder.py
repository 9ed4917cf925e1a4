"""The decode calls over a context's KV streams (`reference.engine._decoder`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def decoder(model_path: Path) -> Iterator[Any]:
    import llama_cpp

    from reference.engine import _bindings
    from reference.engine._decoder import Decoder

    model = _bindings.load_model(str(model_path), extra_buffer_types=False)
    context = _bindings.new_context(
        model, context_size=256, sequences=2, threads=2, flash_attention=True
    )
    vocab_size = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    made = Decoder(context, vocab_size)
    yield made
    made.close()
    llama_cpp.llama_free(context)
    llama_cpp.llama_model_free(model)


TOKENS = [504, 3575, 282, 4649, 314, 253, 1345]


def test_every_row_gives_a_row_per_position_and_the_last_row_is_the_plain_one(decoder: Any) -> None:
    decoder.keep(0, 0)
    decoder.evaluate(0, TOKENS, 0, every_row=True)
    rows = [decoder.row(index).copy() for index in range(len(TOKENS))]
    assert not np.array_equal(rows[0], rows[-1])  # each predicts its own next token
    decoder.keep(0, 0)
    decoder.evaluate(0, TOKENS, 0, every_row=False)
    assert decoder.row(-1).shape == rows[-1].shape


def test_a_copied_stream_continues_exactly_as_the_original(decoder: Any) -> None:
    decoder.keep(0, 0)
    decoder.evaluate(0, TOKENS, 0, every_row=False)
    decoder.copy(0, 1)
    decoder.step([(0, 30, len(TOKENS)), (1, 30, len(TOKENS))])
    assert np.array_equal(decoder.row(0), decoder.row(1))


def test_a_refused_call_raises_and_leaves_the_context_usable(decoder: Any) -> None:
    from reference.engine._decoder import DecodeFailed

    decoder.keep(0, 0)
    with pytest.raises(DecodeFailed, match="llama_decode returned"):
        decoder.evaluate(0, [10**7], 0, every_row=False)  # no such token
    decoder.evaluate(0, TOKENS, 0, every_row=False)
    assert np.isfinite(decoder.row(-1)).all()
