"""Where a prompt is cut into chunks, and how many of them a cached evaluation already holds.

The engine evaluates every prompt in the chunks `chunk_plan` cuts from its tokens alone, so
that a prompt sharing leading chunks with the last one evaluated can reuse their KV cache
without changing a logit (see `reference.engine._llama.LlamaEngine`). Pure functions over token
ids: nothing here needs llama.cpp.
"""

from __future__ import annotations

import itertools
from collections.abc import Container, Sequence

import numpy as np

__all__ = ["PROMPT_CHUNK", "chunk_plan", "shared_chunks", "turn_boundaries"]

#: Prompt chunks hold at most this many tokens of a turn. Smaller chunks notice a cancel sooner
#: (a chunk is ~0.15 s on 2 idle cores) and reuse more of a long shared turn; prompt throughput
#: measured here: 232 tokens/s in chunks of 128, 218 in 32, 198 in 8.
PROMPT_CHUNK = 32
#: A last chunk shorter than this joins the one before it, so that no prompt of two tokens or
#: more ends in a batch of one. Not more: each call costs a fixed time (the output row, the
#: graph; about one token's worth here), but a longer join would re-evaluate a whole shared
#: chunk whenever a prompt adds a few tokens to it ("Hi" after the default system turn).
_SHORTEST_TAIL = 2
#: A turn's header (``<|im_start|>user\n``) ends at the first line break this many tokens or
#: fewer after the control token that opens it.
_HEADER_SPAN = 8


def turn_boundaries(
    prompt: Sequence[int],
    end_of_turn: Container[int],
    opens_turn: Container[int],
    breaks_line: Container[int],
) -> list[int]:
    r"""Where the turns of a chat prompt begin, as positions in ``prompt``, ascending.

    A turn begins where its content does: after its header, which is a control token that
    ``opens_turn`` and the tokens up to the first one that ``breaks_line`` (at most
    `_HEADER_SPAN` tokens on). Prompts that differ from their last turn's content on then
    share every chunk before it, header included (``<|im_start|>user\n`` in ChatML,
    ``<|start_header_id|>user<|end_header_id|>\n\n`` in Llama 3). A prompt without such
    headers (a completion's, or a template without line breaks) begins a turn after each
    token that ends one.
    """
    headers = []
    for position, token in enumerate(prompt):
        if token in opens_turn:
            for end in range(position + 1, min(position + 1 + _HEADER_SPAN, len(prompt))):
                if prompt[end] in breaks_line:
                    headers.append(end + 1)
                    break
    boundaries = set(headers)
    following = iter(headers)
    header = next(following, None)
    for position, token in enumerate(prompt):
        if token in end_of_turn:
            while header is not None and header <= position:
                header = next(following, None)
            # A header just after the end of a turn is where the next turn begins.
            if header is None or header - position > _HEADER_SPAN + 1:
                boundaries.add(position + 1)
    return sorted(boundary for boundary in boundaries if 0 < boundary < len(prompt))


def chunk_plan(prompt: Sequence[int], chunk: int, turns: Sequence[int]) -> list[tuple[int, int]]:
    """The ``(begin, end)`` chunks that evaluate ``prompt``, in order.

    Cut where each turn begins (``turns``, ascending), so that prompts sharing turns share
    chunks, and every ``chunk`` tokens from a turn's start, so that a short turn is one call;
    the last chunk joins the one before it while it is shorter than `_SHORTEST_TAIL`. The plan
    depends on the tokens alone.
    """
    bounds = [0]
    for turn in [*turns, len(prompt)]:
        bounds.extend(range(bounds[-1] + chunk, turn, chunk))
        bounds.append(turn)
    while len(bounds) > 2 and bounds[-1] - bounds[-2] < _SHORTEST_TAIL:
        del bounds[-2]
    return list(itertools.pairwise(bounds))


def shared_chunks(
    done: Sequence[tuple[int, int]],
    cached: Sequence[int],
    plan: Sequence[tuple[int, int]],
    prompt: Sequence[int],
) -> int:
    """How many leading chunks of ``plan`` the cache already holds, as ``plan`` would compute them.

    ``done`` are the chunks evaluated last, over the ``cached`` tokens. A chunk is shared when
    it is the same chunk in both plans and every token up to its end is the same. The last
    chunk of ``plan`` is never shared: it is evaluated, for its logits.
    """
    shared = 0
    for ours, theirs in zip(plan[:-1], done, strict=False):
        if ours != theirs:
            break
        shared += 1
    if not shared:
        return 0
    end = plan[shared - 1][1]
    differ = np.flatnonzero(np.asarray(cached[:end]) != np.asarray(prompt[:end]))
    if not differ.size:
        return shared
    first = int(differ[0])
    return sum(1 for _, chunk_end in plan[:shared] if chunk_end <= first)
