"""A loaded model's vocabulary: text to tokens and back, and the token tables the engine reads.

Everything here only reads the vocabulary, so it may run on any thread while the model decodes
on another (llama.cpp's own server tokenizes in its HTTP threads too).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import llama_cpp

__all__ = ["Vocabulary"]

_PIECE_BUFFER_SIZE = 256


class Vocabulary:
    """The vocabulary of a model handle from `reference.engine._bindings.load_model`."""

    def __init__(self, model: Any) -> None:
        vocab = llama_cpp.llama_model_get_vocab(model)
        self._vocab = vocab
        self.size: int = llama_cpp.llama_vocab_n_tokens(vocab)
        """Number of token ids; valid ids are ``0 .. size - 1``."""
        self.pieces: list[bytes] = _token_pieces(vocab, self.size, special=False)
        """Each token's bytes (a control token's are empty), indexed by id."""
        self.end_of_generation = frozenset(
            token for token in range(self.size) if llama_cpp.llama_vocab_is_eog(vocab, token)
        )
        """Tokens that end a generation (``<|im_end|>``, EOS)."""
        self.opens_turn = frozenset(
            token
            for token in range(self.size)
            if llama_cpp.llama_vocab_is_control(vocab, token)
            and token not in self.end_of_generation
        )
        """Control tokens that do not end a generation (``<|im_start|>``)."""
        self.breaks_line = frozenset(
            token for token, piece in enumerate(self.pieces) if b"\n" in piece
        )
        """Tokens whose text holds a line break."""
        self.bos: int = llama_cpp.llama_vocab_bos(vocab)
        self.eos: int = llama_cpp.llama_vocab_eos(vocab)
        self.handle = vocab
        """llama.cpp's vocabulary pointer, for the grammar sampler."""

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Token ids of ``text`` (lone surrogates, which JSON allows, become U+FFFD)."""
        data = text.encode("utf-8", "replace")
        # A token stands for at least one byte, so the buffer always suffices (BOS aside).
        capacity = len(data) + 2
        buffer = (llama_cpp.llama_token * capacity)()
        count = llama_cpp.llama_tokenize(
            self._vocab, data, len(data), buffer, capacity, add_bos, special
        )
        if count < 0:  # pragma: no cover - the capacity above rules it out
            raise RuntimeError(f"llama.cpp needs room for {-count} tokens, not {capacity}")
        return buffer[:count]

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of valid ``tokens``; control tokens render as nothing."""
        pieces = self.pieces
        return b"".join([pieces[token] for token in tokens]).decode("utf-8", "replace")

    def special_piece(self, token: int) -> bytes:
        """A token's bytes with control tokens written as the text that writes them."""
        return _piece(self._vocab, token, True)

    def special_text(self, token: int) -> str:
        """`special_piece` as text, or ``""`` for a missing token (id -1)."""
        return self.special_piece(token).decode("utf-8", "replace") if token >= 0 else ""


def _token_pieces(vocab: Any, vocab_size: int, *, special: bool) -> list[bytes]:
    """Every token's bytes, looked up once so that the token loop indexes a list."""
    buffer = ctypes.create_string_buffer(_PIECE_BUFFER_SIZE)
    return [_piece(vocab, token, special, buffer) for token in range(vocab_size)]


def _piece(vocab: Any, token: int, special: bool, buffer: Any = None) -> bytes:
    if buffer is None:
        buffer = ctypes.create_string_buffer(_PIECE_BUFFER_SIZE)
    size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, special)
    if size < 0:  # longer than the buffer: ask again with the size llama.cpp needs
        buffer = ctypes.create_string_buffer(-size)
        size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, special)
    return buffer.raw[:size]
