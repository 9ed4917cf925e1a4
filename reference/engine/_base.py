"""The engine interface: what the HTTP layer may ask of a loaded model, and nothing more."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "CancelFlag",
    "ContextOverflow",
    "Engine",
    "EngineError",
    "Finish",
    "InvalidGrammar",
    "InvalidRequest",
    "Item",
    "Outlet",
    "Piece",
    "PromptLogprobs",
    "SamplingParams",
    "TokenLogprob",
    "TopLogprob",
]

#: The most alternatives a request may ask for per token (OpenAI's chat limit).
MAX_TOP_LOGPROBS = 20
#: A logit bias of this size bans (negative) or forces (positive) a token.
MAX_LOGIT_BIAS = 100.0


class EngineError(Exception):
    """Base of every error an engine raises on purpose."""


class InvalidRequest(EngineError, ValueError):
    """The request is well-formed but this model cannot serve it (an HTTP 400, not a 500)."""


class ContextOverflow(InvalidRequest):
    """The prompt alone fills the model's context, so not one token could be generated."""

    def __init__(self, prompt_tokens: int, context_size: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.context_size = context_size
        super().__init__(
            f"the prompt is {prompt_tokens} tokens long, but the model's context holds "
            f"{context_size} tokens: shorten the prompt to at most {context_size - 1} tokens"
        )


class InvalidGrammar(InvalidRequest):
    """The grammar or JSON schema that should constrain the output cannot be compiled."""


def _check_range(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample one completion. Every argument is checked here, once, with a clear error.

    ``temperature == 0`` samples greedily (and ignores ``seed``). ``logit_bias`` maps token ids
    to a bias added to their logits: -100 keeps a token out, +100 makes it all but certain.
    ``top_logprobs=None`` reports no logprobs; ``k >= 0`` reports each sampled token's logprob
    and its ``k`` most likely alternatives. ``prompt_logprobs=k`` makes ``generate`` first
    yield the prompt's own `PromptLogprobs`, each with ``k`` alternatives (what a completion
    with ``echo`` and ``logprobs`` reports). ``grammar`` (GBNF) and ``json_schema`` constrain
    the output; give at most one of them.
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    logit_bias: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    top_logprobs: int | None = None
    prompt_logprobs: int | None = None
    grammar: str | None = None
    json_schema: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if _check_int("max_tokens", self.max_tokens) < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        _check_range("temperature", self.temperature, 0.0, 2.0)
        _check_range("top_p", self.top_p, 0.0, 1.0)
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if self.seed is not None:
            _check_int("seed", self.seed)
        object.__setattr__(self, "stop", _checked_stop(self.stop))
        object.__setattr__(self, "logit_bias", _checked_logit_bias(self.logit_bias))
        _check_top("top_logprobs", self.top_logprobs)
        _check_top("prompt_logprobs", self.prompt_logprobs)
        if self.grammar is not None and self.json_schema is not None:
            raise ValueError("give grammar or json_schema, not both")
        if self.grammar is not None and (not isinstance(self.grammar, str) or not self.grammar):
            raise ValueError("grammar must be a non-empty GBNF string")
        if self.json_schema is not None and not isinstance(self.json_schema, Mapping):
            raise TypeError(f"json_schema must be a mapping, not {type(self.json_schema).__name__}")


def _check_top(name: str, value: int | None) -> None:
    if value is not None and not 0 <= _check_int(name, value) <= MAX_TOP_LOGPROBS:
        raise ValueError(f"{name} must be None or between 0 and {MAX_TOP_LOGPROBS}, got {value}")


def _checked_stop(stop: object) -> tuple[str, ...]:
    if isinstance(stop, str):
        # A bare string would otherwise be read as one stop sequence per character.
        raise TypeError(f"stop must be a sequence of strings, not a str: use ({stop!r},)")
    if not isinstance(stop, Sequence):
        raise TypeError(f"stop must be a sequence of strings, not {type(stop).__name__}")
    for item in stop:
        if not isinstance(item, str) or not item:
            raise ValueError(f"every stop sequence must be a non-empty str, got {item!r}")
    return tuple(stop)


def _checked_logit_bias(logit_bias: object) -> Mapping[int, float]:
    if not isinstance(logit_bias, Mapping):
        raise TypeError(f"logit_bias must be a mapping, not {type(logit_bias).__name__}")
    checked: dict[int, float] = {}
    for token, bias in logit_bias.items():
        if _check_int("a logit_bias token id", token) < 0:
            raise ValueError(f"logit_bias token ids must be >= 0, got {token}")
        checked[token] = _check_range(f"logit_bias[{token}]", bias, -MAX_LOGIT_BIAS, MAX_LOGIT_BIAS)
    return MappingProxyType(checked)


class TopLogprob(NamedTuple):
    """One of the likeliest tokens at a position: its text, raw bytes and logprob."""

    token: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The sampled token at one position, its logprob, and the likeliest alternatives.

    Logprobs are the model's own distribution: before temperature, penalties, logit bias or
    grammar reshape it for sampling. ``token`` is ``bytes`` decoded with replacement, since a
    token may hold part of a multi-byte character.
    """

    token: str
    bytes: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class PromptLogprobs:
    """The prompt's own tokens, and how likely the model found each after the ones before it.

    ``tokens`` holds every prompt token's bytes, a control token as the text that wrote it
    (so that they join to the prompt). ``logprobs[i]`` belongs to ``tokens[i + 1]``: nothing
    predicts the first token, so it has no logprob (OpenAI reports null for it).
    """

    tokens: tuple[bytes, ...]
    logprobs: tuple[TokenLogprob, ...]


@dataclass(frozen=True, slots=True)
class Piece:
    """Text released by the generation, and how many tokens were consumed to produce it.

    ``text`` may be empty: a token can hold half a character, or text that might still turn
    out to be the start of a stop sequence. ``logprobs`` has one entry per token consumed
    when logprobs were asked for.
    """

    text: str
    token_count: int
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of a generation: why it ended and how many tokens it produced in all.

    ``reason`` is ``"stop"`` at the end of sequence or a stop sequence, ``"length"`` at
    ``max_tokens`` or at the end of the context. ``completion_tokens`` is the sum of the
    pieces' ``token_count``.
    """

    reason: Literal["stop", "length"]
    completion_tokens: int


#: What a generation yields: its prompt's logprobs if asked for, pieces, then one `Finish`.
Item = PromptLogprobs | Piece | Finish


class CancelFlag(Protocol):
    """What the engine asks of a cancel flag (a ``threading.Event`` is one)."""

    def is_set(self) -> bool:
        """Whether the generation should stop."""
        ...


class Outlet(Protocol):
    """Where a submitted generation's items go, on the thread that steps the engine.

    ``put`` is called with each step's new items (in order), and ``close`` exactly once, when
    the generation has left the engine: after its `Finish`, without one when it was
    cancelled, or with the `EngineError` that ended it. Both must be quick and must not call
    back into the engine.
    """

    def put(self, items: Sequence[Item]) -> None:
        """Take the items a step produced."""
        ...

    def close(self, error: BaseException | None = None) -> None:
        """The generation is over; ``error`` is why, if it failed."""
        ...


@runtime_checkable
class Engine(Protocol):
    """One loaded model, decoding up to `parallel` generations together.

    Generations are submitted with `submit` and advanced by `step`, both called from one
    thread (the model's); `generate` is the same for one generation alone. ``tokenize``,
    ``detokenize``, ``render_chat`` and ``check`` only read the vocabulary and may run on any
    thread while generations run on another.
    """

    @property
    def name(self) -> str:
        """A name for logs and benchmarks (the model file's stem by default)."""
        ...

    @property
    def context_size(self) -> int:
        """Tokens the context holds: prompt and completion together."""
        ...

    @property
    def vocab_size(self) -> int:
        """Number of token ids; valid ids are ``0 .. vocab_size - 1``."""
        ...

    @property
    def parallel(self) -> int:
        """Generations decoded together, at most; more wait their turn inside the engine."""
        ...

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Token ids of ``text``; ``special`` parses control tokens such as ``<|im_end|>``."""
        ...

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` (control tokens render as nothing)."""
        ...

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """The prompt for ``messages`` in the model's chat template, for the assistant's turn.

        Tokenize it with ``special=True, add_bos=False``: the template writes any BOS itself.
        """
        ...

    def check(self, prompt_tokens: Sequence[int], params: SamplingParams) -> None:
        """Raise `InvalidRequest` if ``submit`` would refuse this request; else do nothing."""
        ...

    def submit(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        cancel: CancelFlag,
        outlet: Outlet,
    ) -> None:
        """Check the request, raising `InvalidRequest` at once, then queue it for `step`.

        From then on its items go to ``outlet`` (see `Outlet`). With
        ``params.prompt_logprobs`` set, the first item is the prompt's `PromptLogprobs`. Once
        ``cancel`` is set, the generation stops within a step.
        """
        ...

    def step(self) -> bool:
        """Advance every submitted generation one step; return whether any remains."""
        ...

    def generate(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        cancel: threading.Event,
    ) -> Iterator[Item]:
        """One generation alone: `submit` it, then step the engine while yielding its items.

        The iterator ends with exactly one `Finish`, or early without one once ``cancel`` is
        set. Not while anything else steps the engine.
        """
        ...

    def close(self) -> None:
        """Free the model's memory. The engine is unusable afterwards."""
        ...
