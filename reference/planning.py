"""From a validated request body to a `Plan`: what to generate and how to answer.

`plan_chat` and `plan_completion` read a request body (already valid against the contract) into
a `Plan`: the prompts as tokens, the `SamplingParams`, how many choices and how to answer. Every
reason to refuse a valid request (a 400 that names the field) is found here, before the request
queues for the model.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reference.chat_prompt import render_chat_prompt
from reference.engine import ContextOverflow, Engine, InvalidGrammar, InvalidRequest, SamplingParams
from reference.errors import bad_request
from reference.schema_limits import SchemaTooLarge, check_schema
from reference.shaping import Kind
from reference.tool_calls import Shaper, TextShaper, ToolPlan

__all__ = ["MAX_CHOICES", "Plan", "Prompt", "plan_chat", "plan_completion", "read_tools"]

MAX_CHOICES = 128
"""Choices one request may ask for in all (prompts times `n`): the contract's bound on `n`."""

_OFF_LOOP_CHARS = 64 * 1024
"""Prompts longer than this are tokenized in a thread, so the event loop keeps serving."""


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
    def prompt_tokens(self) -> int:
        """The tokens of every prompt: what usage counts as the request's prompt."""
        return sum(len(prompt.tokens) for prompt in self.prompts)

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
            f"{_field(prompt_field)} is too long: {size} bytes is more than the model's "
            f"context of {engine.context_size} tokens can hold"
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


def _check_schema_limits(body: Mapping[str, Any], tools: ToolPlan) -> None:
    """A 400 naming the field for a schema that would become a grammar beyond the limits.

    Checked before the prompt is rendered or the schema converted: see `reference.schema_limits`.
    Only the schemas that constrain this request are checked: a forced call's parameters, every
    tool's under `required`, else `response_format`'s.
    """
    schemas: list[tuple[str, Any]] = []
    if tools.json_schema is not None:
        for index, function in enumerate(tools.functions):
            if tools.mode == "forced" and function["name"] != tools.forced:
                continue
            name = f"functions[{index}]" if tools.legacy else f"tools[{index}].function"
            schemas.append((f"{name}.parameters", function.get("parameters")))
    else:
        schemas.append(("response_format", _chat_grammar(body).get("json_schema")))
    for name, schema in schemas:
        if schema is None:
            continue
        try:
            check_schema(schema)
        except SchemaTooLarge as error:
            raise bad_request(f"{_field(name)}: {error}") from None


def read_tools(body: Mapping[str, Any]) -> ToolPlan:
    """The request's `ToolPlan`; a 400 naming the field for a choice that cannot be served.

    `tools` wins over the deprecated `functions` when both are given, and `tool_choice` over
    `function_call`. Without a choice, tools mean `auto`.
    """
    tools = body.get("tools")
    legacy = not tools and bool(body.get("functions"))
    if legacy:
        functions = tuple(body["functions"])
    else:
        functions = tuple(tool["function"] for tool in tools or ())
    choice_field, choice = "tool_choice", body.get("tool_choice")
    if choice is None:
        choice_field, choice = "function_call", body.get("function_call")
    if choice is None:
        choice = "auto"
    if choice == "none":
        return ToolPlan(mode="none", functions=functions, legacy=legacy)
    if choice == "auto":
        return ToolPlan(mode="auto", functions=functions, legacy=legacy)
    if not functions:
        raise bad_request(
            f"{_field(choice_field)} {json.dumps(choice)} needs {_field('tools')} "
            "(or 'functions') to choose from"
        )
    if choice == "required":
        return ToolPlan(mode="required", functions=functions, legacy=legacy)
    name = choice["function"]["name"] if "function" in choice else choice["name"]
    if name not in {function["name"] for function in functions}:
        raise bad_request(
            f"{_field(choice_field)} names function {name!r}, which is not among the "
            f"{_field('tools' if not legacy else 'functions')} of the request"
        )
    return ToolPlan(mode="forced", functions=functions, forced=name, legacy=legacy)


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
    _check_schema_limits(body, tools)
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
