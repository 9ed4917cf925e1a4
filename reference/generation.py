"""From a validated request to engine calls and response objects, for chat and completions alike.

`plan_chat` and `plan_completion` read a request body (already valid against the contract) into
a `Plan`: the prompts as tokens, the `SamplingParams`, how many choices and how to answer. Every
reason to refuse a valid request (a 400 that names the field) is found here, before the request
queues for the model. `serve` then takes the model's turn (a 429 when the queue is full) and
answers with one JSON object or, for `"stream": true`, with server-sent chunks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, replace
from typing import Any, Literal

import falcon.asgi

from reference import streaming
from reference.engine import (
    ContextOverflow,
    Engine,
    Finish,
    InvalidGrammar,
    InvalidRequest,
    Piece,
    SamplingParams,
    TokenLogprob,
)
from reference.errors import APIError, bad_request, queue_full
from reference.scheduler import ModelRunner, QueueFull, RunnerClosed, Slot

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

    def choices(self) -> list[tuple[int, Prompt, SamplingParams]]:
        """Each choice's index, prompt and params: `n` per prompt, indexes consecutive.

        With a seed, choice `i` samples with `seed + i`, so that `n` choices differ from each
        other and the same request still returns the same choices.
        """
        plans = []
        for p, prompt in enumerate(self.prompts):
            for j in range(self.n):
                index = p * self.n + j
                params = self.params
                if params.seed is not None and j:
                    params = replace(params, seed=params.seed + j)
                plans.append((index, prompt, params))
        return plans


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


async def _render(engine: Engine, messages: Any, tools: Any) -> str:
    """The chat prompt, rendered in a thread when the conversation is large."""
    size = sum(len(str(message.get("content") or "")) for message in messages)
    try:
        if size > _OFF_LOOP_CHARS or len(messages) > 256:
            return await asyncio.to_thread(engine.render_chat, messages, tools=tools)
        return engine.render_chat(messages, tools=tools)
    except InvalidRequest as error:
        raise bad_request(f"{_field('messages')}: {error}") from None


def _check(engine: Engine, prompt: Prompt, params: SamplingParams, prompt_field: str) -> None:
    """Refuse now, before the queue, what the engine would refuse at generation."""
    try:
        engine.check(prompt.tokens, params)
    except ContextOverflow as error:
        raise bad_request(f"{_field(prompt_field)} is too long: {error}") from None
    except InvalidGrammar as error:
        raise bad_request(f"{_field('response_format')}: {error}") from None
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


def _chat_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The tools to show the model, or a 400 for the tool choices not honoured yet."""
    tool_choice = body.get("tool_choice")
    if tool_choice == "required" or isinstance(tool_choice, Mapping):
        raise bad_request(
            f"{_field('tool_choice')} {tool_choice!r} is not supported yet: "
            "use 'auto' or 'none' (tool calls are not parsed from the output)"
        )
    function_call = body.get("function_call")
    if isinstance(function_call, Mapping):
        raise bad_request(
            f"{_field('function_call')} naming a function is not supported yet: "
            "use 'auto' or 'none'"
        )
    if tool_choice == "none" or function_call == "none":
        return None
    tools = body.get("tools")
    if tools:
        return list(tools)
    functions = body.get("functions")
    if functions:
        return [{"type": "function", "function": function} for function in functions]
    return None


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
    tools = _chat_tools(body)
    params = _sampling(
        body,
        engine,
        top_logprobs=(_as_int(top_logprobs) if top_logprobs is not None else 0)
        if logprobs
        else None,
        **_chat_grammar(body),
    )
    text = await _render(engine, body["messages"], tools)
    tokens = await _tokenize(engine, text, add_bos=False, prompt_field="messages")
    prompt = Prompt(text=text, tokens=tokens)
    _check(engine, prompt, params, "messages")
    stream, include_usage = _stream_options(body)
    return Plan(
        kind="chat",
        model=model,
        prompts=(prompt,),
        params=params,
        n=n,
        stream=stream,
        include_usage=include_usage,
        logprobs=logprobs,
    )


async def plan_completion(body: Mapping[str, Any], *, model: str, engine: Engine) -> Plan:
    """Read a valid completions request; raise a 400 naming the field for what cannot be served."""
    if body.get("suffix") is not None:
        raise bad_request(
            f"{_field('suffix')} is not supported by model {model!r}: it cannot fill in the middle"
        )
    n = _n(body)
    best_of = body.get("best_of")
    if best_of is not None and _as_int(best_of) < n:
        raise bad_request(f"{_field('best_of')} ({best_of}) must be at least {_field('n')} ({n})")
    if best_of is not None and _as_int(best_of) > n:
        raise bad_request(f"{_field('best_of')} greater than {_field('n')} is not supported yet")
    logprobs = body.get("logprobs")
    echo = bool(body.get("echo", False))
    if echo and logprobs is not None:
        raise bad_request(
            f"{_field('echo')} with {_field('logprobs')} is not supported yet: "
            "the prompt's log probabilities are not computed"
        )
    raw_prompt = body["prompt"]
    texts = [raw_prompt] if isinstance(raw_prompt, str) else list(raw_prompt)
    if len(texts) * n > MAX_CHOICES:
        raise bad_request(
            f"{len(texts)} prompts x {_field('n')} {n} is more than {MAX_CHOICES} choices"
        )
    params = _sampling(
        body, engine, top_logprobs=_as_int(logprobs) if logprobs is not None else None
    )
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
    stream, include_usage = _stream_options(body)
    return Plan(
        kind="completion",
        model=model,
        prompts=prompts,
        params=params,
        n=n,
        stream=stream,
        include_usage=include_usage,
        logprobs=logprobs is not None,
        echo=echo,
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


async def _complete(plan: Plan, slot: Slot) -> dict[str, Any]:
    """Generate every choice and return the `chat.completion` object."""
    response = _Response(plan)
    choices = []
    for index, prompt, params in plan.choices():
        parts: list[str] = [prompt.text] if plan.echo else []
        entries: list[TokenLogprob] = []
        finish: Finish | None = None
        async with aclosing(slot.generate(prompt.tokens, params)) as items:
            async for item in items:
                if item.__class__ is Piece:
                    parts.append(item.text)
                    entries.extend(item.logprobs)
                else:
                    finish = item
        if finish is None:
            raise RuntimeError("the generation ended without a finish")
        response.completion_tokens += finish.completion_tokens
        text = "".join(parts)
        choice: dict[str, Any] = {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "logprobs": response.logprobs(entries, 0),
            "finish_reason": finish.reason,
        }
        if plan.kind == "completion":
            choice["text"] = text
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
    """The stream's chunks: per choice a role chunk, content chunks, a finish chunk."""
    response = _Response(plan)
    for index, prompt, params in plan.choices():
        yield response.chunk(index, {"role": "assistant", "content": ""})
        offset = 0
        if plan.echo and prompt.text:
            offset = len(prompt.text)
            yield response.chunk(index, {"content": prompt.text})
        finish: Finish | None = None
        async with aclosing(slot.generate(prompt.tokens, params)) as items:
            async for item in items:
                if item.__class__ is Piece:
                    if item.text or item.logprobs:
                        logprobs = response.logprobs(item.logprobs, offset)
                        offset += len(item.text)
                        yield response.chunk(index, {"content": item.text}, logprobs=logprobs)
                else:
                    finish = item
        if finish is None:
            raise RuntimeError("the generation ended without a finish")
        response.completion_tokens += finish.completion_tokens
        yield response.chunk(index, {"content": ""}, finish_reason=finish.reason)
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
