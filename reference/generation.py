"""From a validated request to engine calls and response objects, for chat and completions alike.

`plan_chat` and `plan_completion` read a request body (already valid against the contract) into
a `Plan`: the prompts as tokens, the `SamplingParams`, how many choices and how to answer. Every
reason to refuse a valid request (a 400 that names the field) is found here, before the request
queues for the model. `serve` then takes the model's turn (a 429 when the queue is full) and
answers with one JSON object or, for `"stream": true`, with server-sent chunks.
"""

from __future__ import annotations

import asyncio
import codecs
import math
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import falcon.asgi

from reference import streaming
from reference.chat_prompt import render_chat_prompt
from reference.engine import (
    ContextOverflow,
    Engine,
    Finish,
    InvalidGrammar,
    InvalidRequest,
    Piece,
    PromptLogprobs,
    SamplingParams,
    TokenLogprob,
)
from reference.errors import APIError, bad_request, queue_full
from reference.scheduler import ModelRunner, QueueFull, RunnerClosed, Slot
from reference.tool_calls import Emit, Shaper, TextShaper, ToolPlan, merge_deltas, read_tools

__all__ = ["MAX_CHOICES", "Plan", "Prompt", "plan_chat", "plan_completion", "serve"]

MAX_CHOICES = 128
"""Choices one request may ask for in all (prompts times `n`): the contract's bound on `n`."""

_OFF_LOOP_CHARS = 64 * 1024
"""Prompts longer than this are tokenized in a thread, so the event loop keeps serving."""

Kind = Literal["chat", "completion"]


@dataclass(frozen=True)
class Prompt:
    """One prompt: its text (for `echo`) and its tokens."""

    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """A request in engine terms: what to generate and how to answer."""

    kind: Kind
    model: str
    prompts: tuple[Prompt, ...]
    params: SamplingParams
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    echo: bool = False
    tools: ToolPlan = field(default_factory=ToolPlan)
    best_of: int | None = None

    @property
    def candidates(self) -> int:
        """Generations per prompt: `best_of` when given, else `n`."""
        return max(self.best_of or self.n, self.n)

    def params_for(self, j: int) -> SamplingParams:
        """The params of a prompt's `j`-th generation.

        With a seed, generation `j` samples with `seed + j`, so that `n` choices differ from
        each other and the same request still returns the same choices.
        """
        params = self.params
        if params.seed is not None and j:
            params = replace(params, seed=params.seed + j)
        if self.candidates > self.n and params.top_logprobs is None:
            # `best_of` ranks candidates by their tokens' logprobs.
            params = replace(params, top_logprobs=0)
        return params

    def choices(self) -> list[tuple[int, Prompt, SamplingParams]]:
        """Each choice's index, prompt and params: `n` per prompt, indexes consecutive."""
        return [
            (p * self.n + j, prompt, self.params_for(j))
            for p, prompt in enumerate(self.prompts)
            for j in range(self.n)
        ]

    def shaper(self) -> Shaper:
        """A fresh shaper of one choice's output: text, or tool calls."""
        return self.tools.shaper() if self.kind == "chat" else TextShaper()


# ---------------------------------------------------------------- reading requests


def _field(name: str) -> str:
    return f"'{name}'"


def _as_int(value: Any) -> int:
    # The contract's integers may arrive as JSON numbers like 8.0 (or 1e300), which JSON
    # Schema counts as integers: the engine wants a Python int.
    return int(value)


def _sampling(body: Mapping[str, Any], engine: Engine, **extra: Any) -> SamplingParams:
    """The sampling parameters both kinds of request share."""
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    stop = body.get("stop")
    try:
        return SamplingParams(
            # Absent: until the end of sequence or the context (the engine stops there).
            max_tokens=min(_as_int(limit), engine.context_size)
            if limit is not None
            else engine.context_size,
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            seed=_as_int(body["seed"]) if "seed" in body else None,
            presence_penalty=float(body.get("presence_penalty", 0.0)),
            frequency_penalty=float(body.get("frequency_penalty", 0.0)),
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            logit_bias={int(k): float(v) for k, v in (body.get("logit_bias") or {}).items()},
            **extra,
        )
    except (TypeError, ValueError) as error:
        raise bad_request(str(error)) from None


def _n(body: Mapping[str, Any]) -> int:
    return _as_int(body.get("n", 1))


def _stream_options(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    return stream, stream and bool(options.get("include_usage"))


def _plan(body: Mapping[str, Any], kind: Kind, model: str, **fields: Any) -> Plan:
    """The `Plan`, with the fields every request reads the same way (`n`, streaming)."""
    stream, include_usage = _stream_options(body)
    return Plan(
        kind=kind, model=model, n=_n(body), stream=stream, include_usage=include_usage, **fields
    )


_max_token_bytes: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def _longest_token(engine: Engine) -> int:
    """The most bytes one token of the engine's vocabulary stands for (computed once, ~50 ms)."""
    longest = _max_token_bytes.get(engine)
    if longest is None:
        longest = max(
            len(engine.detokenize([token]).encode("utf-8", "surrogatepass"))
            for token in range(engine.vocab_size)
        )
        _max_token_bytes[engine] = longest = max(longest, 1)
    return longest


async def _tokenize(
    engine: Engine, text: str, *, add_bos: bool, prompt_field: str
) -> tuple[int, ...]:
    """The prompt's tokens; a 400 without tokenizing a text that cannot fit the context.

    Tokenizing is not cheap for huge inputs (llama.cpp's special-token pass grows faster than
    the text: 240 KB of chat turns took 2 s here), and a 4 MB body would be refused anyway. A
    text longer than `context_size` times the longest token surely overflows. Long texts are
    tokenized in a thread, so the event loop keeps serving.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    limit = engine.context_size * _longest_token(engine)
    if size > limit:
        raise bad_request(
            f"{_field(prompt_field)} is too long: {size} bytes is more than the model's context "
            f"of {engine.context_size} tokens can hold"
        )
    if len(text) > _OFF_LOOP_CHARS:
        tokens = await asyncio.to_thread(engine.tokenize, text, add_bos=add_bos, special=True)
    else:
        tokens = engine.tokenize(text, add_bos=add_bos, special=True)
    return tuple(tokens)


def _check(
    engine: Engine,
    prompt: Prompt,
    params: SamplingParams,
    prompt_field: str,
    grammar_field: str = "response_format",
) -> None:
    """Refuse now, before the queue, what the engine would refuse at generation."""
    try:
        engine.check(prompt.tokens, params)
    except ContextOverflow as error:
        raise bad_request(f"{_field(prompt_field)} is too long: {error}") from None
    except InvalidGrammar as error:
        raise bad_request(f"{_field(grammar_field)}: {error}") from None
    except InvalidRequest as error:
        raise bad_request(str(error)) from None


def _chat_grammar(body: Mapping[str, Any]) -> dict[str, Any]:
    """`response_format` as the engine's `json_schema` (None for plain text)."""
    response_format = body.get("response_format") or {"type": "text"}
    if response_format["type"] == "json_object":
        return {"json_schema": {"type": "object"}}
    if response_format["type"] == "json_schema":
        schema = response_format["json_schema"].get("schema")
        return {"json_schema": schema if schema is not None else {}}
    return {}


async def plan_chat(body: Mapping[str, Any], *, model: str, engine: Engine) -> Plan:
    """Read a valid chat request; raise a 400 naming the field for what cannot be served."""
    if "audio" in (body.get("modalities") or []):
        raise bad_request(
            f"audio output is not supported: {_field('modalities')} may only hold 'text'"
        )
    if body.get("audio") is not None:
        raise bad_request(f"audio output is not supported: remove {_field('audio')}")
    logprobs = bool(body.get("logprobs", False))
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not logprobs:
        raise bad_request(f"{_field('top_logprobs')} needs {_field('logprobs')}: true")
    n = _n(body)
    if n > MAX_CHOICES:
        raise bad_request(f"{_field('n')} may be at most {MAX_CHOICES}")
    tools = read_tools(body)
    # A forced or required call is the whole output: its grammar wins over `response_format`.
    call_schema = tools.json_schema
    grammar = {"json_schema": call_schema} if call_schema is not None else _chat_grammar(body)
    params = _sampling(
        body,
        engine,
        top_logprobs=(_as_int(top_logprobs) if top_logprobs is not None else 0)
        if logprobs
        else None,
        **grammar,
    )
    text = await render_chat_prompt(engine, body["messages"], tools.offered)
    tokens = await _tokenize(engine, text, add_bos=False, prompt_field="messages")
    prompt = Prompt(text=text, tokens=tokens)
    grammar_field = "tools" if call_schema is not None else "response_format"
    _check(engine, prompt, params, "messages", grammar_field)
    return _plan(
        body, "chat", model, prompts=(prompt,), params=params, logprobs=logprobs, tools=tools
    )


async def plan_completion(body: Mapping[str, Any], *, model: str, engine: Engine) -> Plan:
    """Read a valid completions request; raise a 400 naming the field for what cannot be served."""
    if body.get("suffix") is not None:
        raise bad_request(
            f"{_field('suffix')} is not supported by model {model!r}: it cannot fill in the middle"
        )
    n = _n(body)
    best_of = _as_int(body["best_of"]) if body.get("best_of") is not None else None
    if best_of is not None and best_of < n:
        raise bad_request(f"{_field('best_of')} ({best_of}) must be at least {_field('n')} ({n})")
    if best_of is not None and best_of > n and body.get("stream"):
        raise bad_request(
            f"{_field('best_of')} greater than {_field('n')} cannot be streamed: "
            "the best choices are known only when all are generated"
        )
    logprobs = body.get("logprobs")
    echo = bool(body.get("echo", False))
    raw_prompt = body["prompt"]
    texts = [raw_prompt] if isinstance(raw_prompt, str) else list(raw_prompt)
    generations = len(texts) * max(best_of or n, n)
    if generations > MAX_CHOICES:
        raise bad_request(
            f"{len(texts)} prompts x {_field('best_of') if best_of else _field('n')} "
            f"{best_of or n} is more than {MAX_CHOICES} generations"
        )
    top = _as_int(logprobs) if logprobs is not None else None
    params = _sampling(body, engine, top_logprobs=top, prompt_logprobs=top if echo else None)
    prompts = tuple(
        [
            Prompt(
                text=text,
                tokens=await _tokenize(engine, text, add_bos=True, prompt_field="prompt"),
            )
            for text in texts
        ]
    )
    for prompt in prompts:
        _check(engine, prompt, params, "prompt")
    return _plan(
        body,
        "completion",
        model,
        prompts=prompts,
        params=params,
        logprobs=logprobs is not None,
        echo=echo,
        best_of=best_of,
    )


# ---------------------------------------------------------------- response objects


def _chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
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


def _legacy_logprobs(entries: Sequence[TokenLogprob], offset: int) -> dict[str, Any]:
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


def _echo_logprobs(echo: PromptLogprobs) -> dict[str, Any]:
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


def _joined_logprobs(*parts: dict[str, Any] | None) -> dict[str, Any] | None:
    """Legacy logprobs of consecutive texts as one: each list the lists in order."""
    present = [part for part in parts if part is not None]
    if not present:
        return None
    return {key: [item for part in present for item in part[key]] for key in present[0]}


class _Response:
    """The parts every response and chunk of one request share."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        prefix = "chatcmpl" if plan.kind == "chat" else "cmpl"
        self.id = f"{prefix}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.prompt_tokens = sum(len(prompt.tokens) for prompt in plan.prompts)
        self.completion_tokens = 0

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def logprobs(self, entries: Sequence[TokenLogprob], offset: int) -> dict[str, Any] | None:
        if not self.plan.logprobs:
            return None
        if self.plan.kind == "chat":
            return _chat_logprobs(entries)
        return _legacy_logprobs(entries, offset)

    def chunk(
        self,
        index: int,
        delta: dict[str, Any],
        *,
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish_reason,
        }
        if self.plan.kind == "completion":
            choice["text"] = delta.get("content") or ""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.plan.model,
            "choices": [choice],
            "usage": None,
        }

    def usage_chunk(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.plan.model,
            "choices": [],
            "usage": self.usage(),
        }


@dataclass(frozen=True)
class _Echo:
    """The prompt, prepended to a choice's text, and its tokens' logprobs when asked for."""

    text: str
    logprobs: PromptLogprobs | None = None

    def legacy_logprobs(self) -> dict[str, Any] | None:
        return None if self.logprobs is None else _echo_logprobs(self.logprobs)


@dataclass(frozen=True)
class _End:
    """The end of one choice: its finish reason and the tokens it consumed."""

    reason: str
    completion_tokens: int


async def _choice_emits(
    plan: Plan,
    slot: Slot,
    prompt: Prompt,
    params: SamplingParams,
    echoed: dict[tuple[int, ...], PromptLogprobs],
) -> AsyncIterator[_Echo | Emit | _End]:
    """One choice's echo (if asked for), deltas as its text is generated, then its `_End`.

    The prompt's logprobs, when asked for, come from the model before its first piece; they
    are kept in ``echoed``, so that the request's other choices of the prompt reuse them.
    """
    shaper = plan.shaper()
    known = echoed.get(prompt.tokens)
    if params.prompt_logprobs is not None and known is not None:
        params = replace(params, prompt_logprobs=None)
    if params.prompt_logprobs is None:
        if plan.echo and prompt.text:
            yield _Echo(prompt.text, known)
        for emit in shaper.start():
            yield emit
    finish: Finish | None = None
    async with aclosing(slot.generate(prompt.tokens, params)) as items:
        async for item in items:
            if item.__class__ is Piece:
                for emit in shaper.feed(item.text, item.logprobs):
                    yield emit
            elif item.__class__ is PromptLogprobs:
                echoed[prompt.tokens] = item
                if prompt.text:
                    yield _Echo(prompt.text, item)
                for emit in shaper.start():
                    yield emit
            else:
                finish = item
    if finish is None:
        raise RuntimeError("the generation ended without a finish")
    tail, reason = shaper.finish(finish.reason)
    for emit in tail:
        yield emit
    yield _End(reason, finish.completion_tokens)


def _mean_logprob(entries: Sequence[TokenLogprob]) -> float:
    """`best_of`'s score, as OpenAI ranks: the highest log probability per token."""
    if not entries:
        return -math.inf
    return math.fsum(entry.logprob for entry in entries) / len(entries)


async def _complete(plan: Plan, slot: Slot) -> dict[str, Any]:
    """Generate every choice and return the `chat.completion` object.

    With `best_of > n`, each prompt's `best_of` candidates are generated and the `n` with the
    highest mean token logprob are returned, best first; usage counts every candidate.
    """
    response = _Response(plan)
    echoed: dict[tuple[int, ...], PromptLogprobs] = {}
    choices = []
    for p, prompt in enumerate(plan.prompts):
        candidates: list[tuple[float, dict[str, Any]]] = []
        for j in range(plan.candidates):
            emits: list[Emit] = []
            echo: _Echo | None = None
            end: _End | None = None
            params = plan.params_for(j)
            async with aclosing(_choice_emits(plan, slot, prompt, params, echoed)) as items:
                async for item in items:
                    if isinstance(item, Emit):
                        emits.append(item)
                    elif isinstance(item, _Echo):
                        echo = item
                        emits.append(Emit({"content": item.text}))
                    else:
                        end = item
            assert end is not None
            response.completion_tokens += end.completion_tokens
            entries = [entry for emit in emits for entry in emit.logprobs]
            message = merge_deltas(emits)
            logprobs = response.logprobs(entries, len(echo.text) if echo else 0)
            if echo is not None and logprobs is not None:
                logprobs = _joined_logprobs(echo.legacy_logprobs(), logprobs)
            choice: dict[str, Any] = {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": end.reason,
            }
            if plan.kind == "completion":
                choice["text"] = message["content"]
            candidates.append((_mean_logprob(entries), choice))
        if plan.candidates > plan.n:
            # sorted() is stable: equal scores keep the order of generation.
            candidates = sorted(candidates, key=lambda scored: -scored[0])[: plan.n]
        for k, (_, choice) in enumerate(candidates):
            choice["index"] = p * plan.n + k
            choices.append(choice)
    return {
        "id": response.id,
        "object": "chat.completion",
        "created": response.created,
        "model": plan.model,
        "choices": choices,
        "usage": response.usage(),
    }


async def _chunks(plan: Plan, slot: Slot) -> AsyncIterator[dict[str, Any]]:
    """The stream's chunks: per choice a role chunk, delta chunks, a finish chunk.

    The finish chunk's delta is `{"content": ""}`, or `{}` after tool call deltas.
    """
    response = _Response(plan)
    echoed: dict[tuple[int, ...], PromptLogprobs] = {}
    calls_only = plan.kind == "chat" and plan.tools.mode in ("forced", "required")
    for index, prompt, params in plan.choices():
        yield response.chunk(index, {"role": "assistant", "content": None if calls_only else ""})
        offset = 0
        called = False
        end: _End | None = None
        async with aclosing(_choice_emits(plan, slot, prompt, params, echoed)) as items:
            async for item in items:
                if isinstance(item, _Echo):
                    logprobs = response.logprobs((), offset)
                    if logprobs is not None:
                        logprobs = _joined_logprobs(item.legacy_logprobs(), logprobs)
                    offset += len(item.text)
                    yield response.chunk(index, {"content": item.text}, logprobs=logprobs)
                elif isinstance(item, Emit):
                    delta = item.delta
                    if "content" in delta:
                        logprobs = response.logprobs(item.logprobs, offset)
                        offset += len(delta["content"])
                    else:
                        logprobs, called = None, True
                    yield response.chunk(index, delta, logprobs=logprobs)
                else:
                    end = item
        assert end is not None
        response.completion_tokens += end.completion_tokens
        yield response.chunk(index, {} if called else {"content": ""}, finish_reason=end.reason)
    if plan.include_usage:
        yield response.usage_chunk()


# ---------------------------------------------------------------- serving


async def _reserve(runner: ModelRunner, stack: AsyncExitStack, timeout: float | None) -> Slot:
    """Take the model's turn, or answer 429 (queue full, waited too long, shutting down)."""
    try:
        async with asyncio.timeout(timeout):
            return await stack.enter_async_context(runner.reserve())
    except QueueFull as error:
        raise queue_full(error.retry_after) from None
    except TimeoutError:
        raise queue_full(runner.retry_after()) from None
    except RunnerClosed:
        raise APIError(
            429, "the server is shutting down; retry later", headers={"Retry-After": "5"}
        ) from None


async def serve(
    plan: Plan,
    runner: ModelRunner,
    resp: falcon.asgi.Response,
    *,
    queue_timeout: float | None = None,
) -> None:
    """Answer `plan` on `resp`: a JSON body, or an event stream that owns the model's turn.

    Every error that can happen before the model's turn (400, 429) happens before the 200. A
    stream releases the turn when it ends, fails, or its client goes away.
    """
    stack = AsyncExitStack()
    slot = await _reserve(runner, stack, queue_timeout)
    if not plan.stream:
        async with stack:
            try:
                resp.media = await _complete(plan, slot)
            except InvalidRequest as error:
                raise bad_request(str(error)) from None
        return
    try:
        resp.sse = streaming.events(_chunks(plan, slot), release=stack.aclose)
    except BaseException:
        await stack.aclose()
        raise
