"""One generation inside the engine: where it is in its life, and how its tokens become text.

A `Sequence` is made when a generation is submitted and lives until it ends, is cancelled or
fails. The engine moves it through its phases (`Phase`) and hands it each token it samples;
`Sequence.take` turns the token into the items the caller receives (`Piece`, then one
`Finish`), with the rules the engine has always had: an end-of-generation token finishes with
"stop", a stop sequence is cut even across tokens and never released in part, a character
split across tokens is released whole, and ``max_tokens`` or the end of the context finishes
with "length".
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Callable
from collections.abc import Sequence as Tokens
from typing import Any, Literal

import numpy as np

from reference.engine._base import (
    CancelFlag,
    Finish,
    Item,
    Outlet,
    Piece,
    SamplingParams,
    TokenLogprob,
)
from reference.engine._sampler import TokenSampler, token_logprob
from reference.engine._stops import StopMatcher

__all__ = ["Phase", "Sequence"]


class Phase(enum.Enum):
    """Where a sequence is. Only `QUEUED` sequences have no stream."""

    QUEUED = "waiting for a stream"
    ECHO = "evaluating its prompt for the prompt's own logprobs"
    PROMPT = "evaluating its prompt"
    FOLLOW = "waiting for another sequence to finish evaluating the same prompt"
    READY = "prompt evaluated: its first token is sampled next"
    DECODING = "generating: its last token is decoded next"


class Sequence:
    """A generation's state. ``prompt`` is never empty (the engine gives an empty one a BOS)."""

    __slots__ = (
        "_decode_text",
        "_produced",
        "_stops",
        "cancel",
        "echo",
        "items",
        "key",
        "leader",
        "limit",
        "logits",
        "next_chunk",
        "outlet",
        "params",
        "phase",
        "plan",
        "position",
        "prompt",
        "prompt_logprobs",
        "sampler",
        "stream",
        "token",
    )

    def __init__(
        self,
        prompt: list[int],
        plan: list[tuple[int, int]],
        params: SamplingParams,
        sampler: TokenSampler,
        cancel: CancelFlag,
        outlet: Outlet,
        *,
        limit: int,
        echo: bool,
    ) -> None:
        self.prompt = prompt
        self.key = tuple(prompt)
        self.plan = plan
        """The chunks that evaluate the prompt (`reference.engine._prefix.chunk_plan`)."""
        self.params = params
        self.sampler = sampler
        self.cancel = cancel
        self.outlet = outlet
        self.limit = limit
        """Tokens it may generate: ``max_tokens``, or fewer where the context ends first."""
        self.phase = Phase.QUEUED
        self.stream: int | None = None
        self.next_chunk = 0
        """The first chunk of ``plan`` its stream does not hold yet."""
        self.position = len(prompt)
        """Where the next token decoded goes."""
        self.token = -1
        """The token decoded next (`Phase.DECODING`)."""
        self.logits: np.ndarray[Any, np.dtype[np.single]] | None = None
        """The prompt's last logits, which the first token is sampled from (`Phase.READY`)."""
        self.leader: Sequence | None = None
        """The sequence whose evaluation of the same prompt it waits for (`Phase.FOLLOW`)."""
        self.echo = echo
        """Whether its prompt's own logprobs are still to be evaluated (`Phase.ECHO`)."""
        self.prompt_logprobs: list[TokenLogprob] = []
        """The prompt's logprobs so far (`Phase.ECHO`)."""
        self.items: list[Item] = []
        """What it produced in the current step, not yet handed to its outlet."""
        self._produced = 0
        self._decode_text = codecs.getincrementaldecoder("utf-8")("replace").decode
        self._stops = StopMatcher(params.stop) if params.stop else None

    @property
    def running(self) -> bool:
        """Whether it holds a stream."""
        return self.stream is not None

    def take(
        self,
        token: int,
        logits: Callable[[], np.ndarray[Any, np.dtype[np.single]]],
        *,
        pieces: Tokens[bytes],
        end_of_generation: frozenset[int],
    ) -> bool:
        """Turn a sampled ``token`` into items; return True when the generation is finished.

        ``logits()`` gives the row it was sampled from, asked for only to report logprobs.
        """
        if token in end_of_generation:
            return self._finish("stop")
        self._produced += 1
        text = self._decode_text(pieces[token])
        top = self.params.top_logprobs
        logprobs = () if top is None else (token_logprob(logits(), token, top, pieces),)
        if self._stops is not None:
            text, stopped = self._stops.push(text)
            if stopped:
                self.items.append(Piece(text, 1, logprobs))
                self.items.append(Finish("stop", self._produced))
                return True
        self.items.append(Piece(text, 1, logprobs))
        if self._produced >= self.limit:
            return self._finish("length")
        self.token = token
        return False

    def _finish(self, reason: Literal["stop", "length"]) -> bool:
        tail = self._decode_text(b"", final=True)
        if self._stops is not None:
            tail, stopped = self._stops.push(tail)
            if stopped:
                reason = "stop"
            else:
                tail += self._stops.flush()
        if tail:
            self.items.append(Piece(tail, 0))
        self.items.append(Finish(reason, self._produced))
        return True
