"""The response objects of chat and completions, built from what a generation yields.

A generation yields, per choice, an `Echo` of the prompt (when `echo` asks for it), the `Emit`s
of its shaper and an `End`. `ResponseBuilder` turns those into the `chat.completion` object or
the `chat.completion.chunk`s of a stream, with logprobs in the shape the request's kind reads:
`chat_logprobs` for chat, `legacy_logprobs` (and `echo_logprobs` for the prompt) for
completions. Nothing here does I/O or knows about HTTP, the scheduler or the event loop.
"""

from __future__ import annotations

import codecs
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reference.engine import PromptLogprobs, TokenLogprob
from reference.tool_calls import Emit, merge_deltas

__all__ = [
    "Echo",
    "End",
    "Kind",
    "ResponseBuilder",
    "best_choices",
    "chat_logprobs",
    "echo_logprobs",
    "joined_logprobs",
    "legacy_logprobs",
    "mean_logprob",
]

Kind = Literal["chat", "completion"]
"""The operation a request came through: chat completions, or text completions."""


# ---------------------------------------------------------------- logprobs


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """The chat shape: `{"content": [...]}`, one entry per token with its bytes and alternatives."""
    return {
        "content": [
            {
                "token": entry.token,
                "logprob": entry.logprob,
                "bytes": list(entry.bytes),
                "top_logprobs": [
                    {"token": top.token, "logprob": top.logprob, "bytes": list(top.bytes)}
                    for top in entry.top
                ],
            }
            for entry in entries
        ]
    }


def legacy_logprobs(entries: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
    """The legacy completions shape; `offset` is where the first token's text starts."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.token)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [{top.token: top.logprob for top in entry.top} for entry in entries],
        "text_offset": offsets,
    }


def echo_logprobs(echo: PromptLogprobs) -> dict[str, Any]:
    """The legacy shape of the prompt's tokens: the first has no logprob and no alternatives.

    A token's offset counts the prompt's characters complete before it, so that offsets point
    into the echoed text even where a token holds part of a character.
    """
    decode = codecs.getincrementaldecoder("utf-8")("replace").decode
    offsets, offset = [], 0
    for data in echo.tokens:
        offsets.append(offset)
        offset += len(decode(data))
    entries: list[TokenLogprob | None] = [None, *echo.logprobs] if echo.tokens else []
    return {
        "tokens": [data.decode("utf-8", "replace") for data in echo.tokens],
        "token_logprobs": [None if entry is None else entry.logprob for entry in entries],
        "top_logprobs": [
            None if entry is None else {top.token: top.logprob for top in entry.top}
            for entry in entries
        ],
        "text_offset": offsets,
    }


def joined_logprobs(*parts: dict[str, Any] | None) -> dict[str, Any] | None:
    """Legacy logprobs of consecutive texts as one: each list the lists in order."""
    present = [part for part in parts if part is not None]
    if not present:
        return None
    return {key: [item for part in present for item in part[key]] for key in present[0]}


def mean_logprob(entries: Sequence[TokenLogprob]) -> float:
    """`best_of`'s score, as OpenAI ranks: the highest log probability per token."""
    if not entries:
        return -math.inf
    return math.fsum(entry.logprob for entry in entries) / len(entries)


# ---------------------------------------------------------------- what a choice yields


@dataclass(frozen=True)
class Echo:
    """The prompt, prepended to a choice's text, and its tokens' logprobs when asked for."""

    text: str
    logprobs: PromptLogprobs | None = None

    def legacy_logprobs(self) -> dict[str, Any] | None:
        """The prompt's logprobs in the legacy shape; None when they were not asked for."""
        return None if self.logprobs is None else echo_logprobs(self.logprobs)


@dataclass(frozen=True)
class End:
    """The end of one choice: its finish reason and the tokens it consumed."""

    reason: str
    completion_tokens: int


# ---------------------------------------------------------------- response objects


def best_choices(scored: Sequence[tuple[float, dict[str, Any]]], n: int) -> list[dict[str, Any]]:
    """The `n` best of one prompt's `(score, choice)` candidates, best first.

    With no more than `n` candidates, all are kept in the order of generation; so are equal
    scores (sorted() is stable).
    """
    if len(scored) > n:
        scored = sorted(scored, key=lambda candidate: -candidate[0])[:n]
    return [choice for _, choice in scored]


class ResponseBuilder:
    """The parts every response and chunk of one request share, and the objects built of them.

    ``id`` and ``created`` are fixed when the builder is made; ``completion_tokens`` is counted
    up by the caller as choices end, for `usage`.
    """

    def __init__(self, kind: Kind, model: str, *, prompt_tokens: int, logprobs: bool) -> None:
        self.kind = kind
        self.model = model
        self.wants_logprobs = logprobs
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0

    def usage(self) -> dict[str, int]:
        """The tokens of every prompt, those generated so far, and their sum."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def logprobs(self, entries: Sequence[TokenLogprob], offset: int) -> dict[str, Any] | None:
        """The entries in the kind's shape (`offset`: see `legacy_logprobs`); None if not asked."""
        if not self.wants_logprobs:
            return None
        if self.kind == "chat":
            return chat_logprobs(entries)
        return legacy_logprobs(entries, offset)

    def choice(
        self, emits: Sequence[Emit], reason: str, echo: Echo | None = None
    ) -> tuple[float, dict[str, Any]]:
        """One choice of a whole answer, with index 0, and its `best_of` score.

        ``emits`` are every delta of the choice, the echoed prompt's content among them;
        ``echo`` is that echo, whose logprobs lead the choice's.
        """
        entries = [entry for emit in emits for entry in emit.logprobs]
        message = merge_deltas(emits)
        logprobs = self.logprobs(entries, len(echo.text) if echo else 0)
        if echo is not None and logprobs is not None:
            logprobs = joined_logprobs(echo.legacy_logprobs(), logprobs)
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": reason,
        }
        if self.kind == "completion":
            choice["text"] = message["content"]
        return mean_logprob(entries), choice

    def completion(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        """The `chat.completion` object of a whole answer, with the usage counted so far."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
        }

    def chunk(
        self,
        index: int,
        delta: dict[str, Any],
        *,
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A stream's chunk of one choice; a completion's carries the delta's content as `text`."""
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }
        if self.kind == "completion":
            choice["text"] = delta.get("content") or ""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": None,
        }

    def usage_chunk(self) -> dict[str, Any]:
        """The stream's last chunk when `include_usage` asks for it: no choices, the usage."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(),
        }
