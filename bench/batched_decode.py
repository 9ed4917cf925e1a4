"""What batching several sequences into one ``llama_decode`` per step buys, and whether it is exact.

Run:  python bench/batched_decode.py [--sequences 4] [--tokens 150] [--rounds 3]
                                     [--unified-kv] [--no-flash-attention]

The groundwork for continuous batching (one decode step over the next token of every running
sequence, each in its own ``seq_id``). Straight on llama.cpp's C API through llama-cpp-python's
bindings, no server: the prompt is evaluated once for sequence 0 and its KV cache copied to the
others (``llama_memory_seq_cp``), then each round decodes ``--tokens`` greedy tokens for one
sequence alone and for ``--sequences`` sequences side by side, one batch per step. Prints the
aggregate tokens/s of both and their ratio per round (alternating, in one run), whether sequence 0
batched picked the same tokens as alone, and the largest difference between its logits alone and
in the batch over the first 30 steps (0.0: batching changes no number). Each round also times one
decode call evaluating prompt tokens, at several lengths: the milliseconds per token tell whether
evaluating several prompts in one call could save anything (it cannot once the cost per token
stops falling). By default the context is the engine's (`reference.engine._bindings.new_context`):
a KV stream per sequence, flash attention on. ``--unified-kv`` shares one cache among the
sequences (the setting the engine measured and did not take), ``--no-flash-attention`` computes
attention as two matrix products, as the engine did before.
"""

from __future__ import annotations

import argparse
import ctypes
import time
from pathlib import Path
from typing import Any

import llama_cpp as llama
import numpy as np

from reference.model_install import default_model_path

PROMPT = (
    "<|im_start|>user\nTell me a long story about a lighthouse keeper.<|im_end|>\n"
    "<|im_start|>assistant\n"
)

#: Prompt tokens evaluated in one decode call, to time per token.
PROMPT_LENGTHS = (1, 8, 32, 128, 352)


class Decoder:
    """One context over the model, able to decode up to ``sequences`` sequences per step."""

    def __init__(
        self, model_path: Path, sequences: int, *, unified: bool, flash_attention: bool
    ) -> None:
        llama.llama_backend_init()
        self.model = llama.llama_model_load_from_file(
            str(model_path).encode(), llama.llama_model_default_params()
        )
        self.vocab = llama.llama_model_get_vocab(self.model)
        self.vocab_size = llama.llama_vocab_n_tokens(self.vocab)
        params = llama.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 4096, 512, 512
        params.n_seq_max = sequences
        params.n_threads = params.n_threads_batch = 2
        params.kv_unified = unified
        params.flash_attn_type = (
            llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attention
            else llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self.context = llama.llama_init_from_model(self.model, params)
        self.memory = llama.llama_get_memory(self.context)
        self.batch = llama.llama_batch_init(512, 0, sequences)
        self.prompt = self.tokenize(PROMPT)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buffer = (llama.llama_token * 512)()
        count = llama.llama_tokenize(self.vocab, data, len(data), buffer, 512, True, True)
        return list(buffer[:count])

    def decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One ``llama_decode`` of (token, position, sequence, wants logits) entries."""
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, wants) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0] = sequence
            batch.logits[i] = wants
        if llama.llama_decode(self.context, batch) != 0:
            raise RuntimeError("llama_decode failed")

    def logits(self, row: int) -> np.ndarray[Any, np.dtype[np.single]]:
        pointer = llama.llama_get_logits_ith(self.context, row)
        return np.ctypeslib.as_array(pointer, shape=(self.vocab_size,))

    def start(self, sequences: int) -> int:
        """Evaluate the prompt for sequence 0, copy it to the others; the first greedy token."""
        llama.llama_memory_clear(self.memory, True)
        last = len(self.prompt) - 1
        self.decode([(token, i, 0, i == last) for i, token in enumerate(self.prompt)])
        for sequence in range(1, sequences):
            llama.llama_memory_seq_cp(self.memory, 0, sequence, -1, -1)
        return int(np.argmax(self.logits(last)))

    def greedy(self, sequences: int, tokens: int) -> tuple[list[list[int]], float, list[Any]]:
        """Each sequence's tokens, the seconds the steps took, sequence 0's first 30 logit rows."""
        first = self.start(sequences)
        picked = [[first] for _ in range(sequences)]
        rows = []
        started = time.perf_counter()
        for step in range(tokens - 1):
            position = len(self.prompt) + step
            self.decode([(picked[s][-1], position, s, True) for s in range(sequences)])
            for sequence in range(sequences):
                row = self.logits(sequence)
                if sequence == 0 and step < 30:
                    rows.append(row.copy())
                picked[sequence].append(int(np.argmax(row)))
        return picked, time.perf_counter() - started, rows

    def prompt_seconds(self, length: int) -> float:
        """Seconds one decode call takes to evaluate ``length`` tokens after the prompt."""
        self.start(1)
        base = len(self.prompt)
        tokens = [self.prompt[i % base] for i in range(length)]
        started = time.perf_counter()
        self.decode([(token, base + i, 0, i == length - 1) for i, token in enumerate(tokens)])
        return time.perf_counter() - started

    def text(self, tokens: list[int]) -> str:
        buffer = ctypes.create_string_buffer(64)
        pieces = []
        for token in tokens:
            size = llama.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
            pieces.append(buffer.raw[:size])
        return b"".join(pieces).decode(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unified-kv", action="store_true", help="one KV cache for all sequences")
    parser.add_argument(
        "--no-flash-attention", action="store_true", help="attention as two matrix products"
    )

    args = parser.parse_args()
    decoder = Decoder(
        args.model,
        args.sequences,
        unified=args.unified_kv,
        flash_attention=not args.no_flash_attention,
    )
    steps = args.tokens - 1
    for round_number in range(args.rounds):
        alone, alone_seconds, alone_rows = decoder.greedy(1, args.tokens)
        together, together_seconds, together_rows = decoder.greedy(args.sequences, args.tokens)
        one = steps / alone_seconds
        many = args.sequences * steps / together_seconds
        drift = max(
            float(np.max(np.abs(a - b))) for a, b in zip(alone_rows, together_rows, strict=True)
        )
        print(
            f"round {round_number}: alone {one:.1f} tokens/s, {args.sequences} batched "
            f"{many:.1f} tokens/s in all, ratio {many / one:.2f}; sequence 0 batched picks the "
            f"same tokens: {together[0] == alone[0]}; largest logit difference {drift}"
        )
        costs = ", ".join(
            f"{length}: {1000 * decoder.prompt_seconds(length) / length:.2f}"
            for length in PROMPT_LENGTHS
        )
        print(f"  prompt evaluation in one call, ms per token by length: {costs}")
    print("text:", repr(decoder.text(alone[0])[:100]))


if __name__ == "__main__":
    main()
