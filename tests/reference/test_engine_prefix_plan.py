"""How the engine cuts prompts into chunks, and how many of them a cached evaluation shares.

Pure functions over token ids (`reference.engine._prefix`); that reusing the chunks they pick
changes no logit is tested against the real model in ``test_engine_prefix_cache.py``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reference.engine._prefix import (
    _HEADER_SPAN,
    _SHORTEST_TAIL,
    chunk_plan,
    shared_chunks,
    turn_boundaries,
)

# Token alphabets for the plan's properties: 0 ends a turn, 3 opens one (a control token),
# 2 breaks a line, 1 is anything else.
END_OF_TURN, OPENS_TURN, BREAKS_LINE = frozenset({0}), frozenset({3}), frozenset({2})
tokens = st.lists(st.integers(min_value=0, max_value=3), max_size=30)


def plan_of(prompt: list[int], chunk: int) -> list[tuple[int, int]]:
    turns = turn_boundaries(prompt, END_OF_TURN, OPENS_TURN, BREAKS_LINE)
    return chunk_plan(prompt, chunk, turns)


@given(prompt=tokens, chunk=st.integers(2, 8))
def test_a_plan_covers_the_prompt_in_order_with_no_short_tail(
    prompt: list[int], chunk: int
) -> None:
    plan = plan_of(prompt, chunk)
    assert plan[0][0] == 0 and plan[-1][1] == len(prompt)
    assert [begin for begin, _ in plan[1:]] == [end for _, end in plan[:-1]]
    assert all(end > begin for begin, end in plan) or prompt == []
    assert len(plan) == 1 or plan[-1][1] - plan[-1][0] >= _SHORTEST_TAIL


@given(prompt=tokens, suffix=tokens)
def test_turn_boundaries_depend_only_on_the_tokens_before_them(
    prompt: list[int], suffix: list[int]
) -> None:
    """A prompt's boundaries stay where they are when more tokens follow (past a header span)."""
    turns = turn_boundaries(prompt, END_OF_TURN, OPENS_TURN, BREAKS_LINE)
    longer = turn_boundaries([*prompt, *suffix], END_OF_TURN, OPENS_TURN, BREAKS_LINE)
    settled = len(prompt) - _HEADER_SPAN - 1
    assert [t for t in turns if t < settled] == [t for t in longer if t < settled]


def shares(a: list[int], b: list[int], plan_a: list[Any], plan_b: list[Any], n: int) -> bool:
    """Whether the first ``n`` chunks of both plans are the same chunks over the same tokens."""
    end = plan_b[n - 1][1] if n else 0
    return plan_a[:n] == plan_b[:n] and a[:end] == b[:end]


@given(cached=tokens, prompt=tokens.filter(bool), chunk=st.integers(2, 8), done=st.integers(0, 30))
def test_the_shared_chunks_are_the_longest_run_of_equal_leading_chunks(
    cached: list[int], prompt: list[int], chunk: int, done: int
) -> None:
    cached_plan = plan_of(cached, chunk)[:done]  # a cancel may stop it early
    plan = plan_of(prompt, chunk)
    shared = shared_chunks(cached_plan, cached, plan, prompt)
    assert 0 <= shared < len(plan), "the last chunk is evaluated, for its logits"
    assert shares(cached, prompt, cached_plan, plan, shared)
    if shared + 1 < len(plan):
        assert not shares(cached, prompt, cached_plan, plan, shared + 1)


def test_turns_begin_after_their_header_or_else_after_a_turn_ends() -> None:
    # ChatML's shape: <open> role <newline> content... <end> <newline> <open> role <newline> ...
    chat = [3, 1, 2, 1, 1, 1, 0, 2, 3, 1, 2, 1, 1, 0, 2, 3, 1, 2]
    assert turn_boundaries(chat, END_OF_TURN, OPENS_TURN, BREAKS_LINE) == [3, 11]
    # No header follows the end of a turn: the next turn begins right after it.
    assert turn_boundaries([1, 1, 0, 1, 1, 0, 1], END_OF_TURN, OPENS_TURN, BREAKS_LINE) == [
        3,
        6,
    ]
    # An opening token with no line break within the header span starts no turn.
    far = [3, *[1] * _HEADER_SPAN, 2, 1]
    assert turn_boundaries(far, END_OF_TURN, OPENS_TURN, BREAKS_LINE) == []


def test_turn_starts_and_chunk_sizes_from_the_turn_start_cut_the_plan() -> None:
    assert chunk_plan([1] * 15, 8, [3]) == [(0, 3), (3, 11), (11, 15)]
    assert chunk_plan([1] * 25, 8, [3]) == [(0, 3), (3, 11), (11, 19), (19, 25)]
    assert chunk_plan([1] * 17, 8, []) == [(0, 8), (8, 17)]  # a tail of one joins
    assert chunk_plan([1], 4, []) == [(0, 1)]
    assert chunk_plan([], 4, []) == [(0, 0)]
