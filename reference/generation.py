"""Serving a `Plan`: take the model's turn, run its generations, answer with what they yield.

`serve` takes the model's turn (a 429 when the queue is full) and answers with one
`chat.completion` object or, for `"stream": true`, with server-sent chunks. The objects
themselves are built by `reference.shaping`; the `Plan` comes from `reference.planning`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, aclosing
from dataclasses import replace
from typing import Any, TypeVar

import falcon.asgi
from aiostream.stream import merge

from reference import streaming
from reference.engine import Finish, InvalidRequest, Piece, PromptLogprobs, SamplingParams
from reference.errors import APIError, bad_request, queue_full
from reference.planning import Plan, Prompt
from reference.scheduler import ModelRunner, QueueFull, RunnerClosed, Slot
from reference.shaping import Echo, End, ResponseBuilder, best_choices, joined_logprobs
from reference.tool_calls import Emit

__all__ = ["serve"]

_T = TypeVar("_T")


def _builder(plan: Plan) -> ResponseBuilder:
    """The builder of the plan's response objects."""
    return ResponseBuilder(
        plan.kind, plan.model, prompt_tokens=plan.prompt_tokens, logprobs=plan.logprobs
    )


class _PromptEchoes:
    """Each prompt's own logprobs: evaluated by the first choice that asks, shared with the rest.

    A request's choices run side by side, so the others wait for the first one's, rather than
    each evaluating the prompt once more.
    """

    def __init__(self) -> None:
        self._shared: dict[tuple[int, ...], asyncio.Future[PromptLogprobs]] = {}

    def claim(self, prompt: Prompt) -> tuple[bool, asyncio.Future[PromptLogprobs]]:
        """Whether the caller is the one to evaluate them, and where they will be."""
        shared = self._shared.get(prompt.tokens)
        if shared is not None:
            return False, shared
        shared = self._shared[prompt.tokens] = asyncio.get_running_loop().create_future()
        return True, shared


async def _choice_emits(
    plan: Plan, slot: Slot, prompt: Prompt, params: SamplingParams, echoes: _PromptEchoes
) -> AsyncIterator[Echo | Emit | End]:
    """One choice's echo (if asked for), deltas as its text is generated, then its `End`.

    The prompt's logprobs, when asked for, come from the model before its first piece, once
    per prompt (`_PromptEchoes`).
    """
    shaper = plan.shaper()
    known: PromptLogprobs | None = None
    evaluates, shared = False, None
    if params.prompt_logprobs is not None:
        evaluates, shared = echoes.claim(prompt)
        if not evaluates:
            known = await asyncio.shield(shared)
            params = replace(params, prompt_logprobs=None)
    if params.prompt_logprobs is None:
        if plan.echo and prompt.text:
            yield Echo(prompt.text, known)
        for emit in shaper.start():
            yield emit
    finish: Finish | None = None
    try:
        async with aclosing(slot.generate(prompt.tokens, params)) as items:
            async for item in items:
                if item.__class__ is Piece:
                    for emit in shaper.feed(item.text, item.logprobs):
                        yield emit
                elif item.__class__ is PromptLogprobs:
                    if shared is not None:
                        shared.set_result(item)
                    if prompt.text:
                        yield Echo(prompt.text, item)
                    for emit in shaper.start():
                        yield emit
                else:
                    finish = item
    finally:
        if evaluates and shared is not None and not shared.done():
            shared.set_exception(RuntimeError("the prompt's logprobs were not evaluated"))
            shared.exception()  # retrieved: the choices waiting for it end with the error
    if finish is None:
        raise RuntimeError("the generation ended without a finish")
    tail, reason = shaper.finish(finish.reason)
    for emit in tail:
        yield emit
    yield End(reason, finish.completion_tokens)


async def _together(coroutines: list[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Run ``coroutines`` side by side; the first error cancels the rest and is raised."""
    if len(coroutines) == 1:
        return [await coroutines[0]]
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _complete(plan: Plan, slot: Slot) -> dict[str, Any]:
    """Generate every choice, side by side, and return the `chat.completion` object.

    With `best_of > n`, each prompt's `best_of` candidates are generated and the `n` with the
    highest mean token logprob are returned, best first; usage counts every candidate.
    """
    builder = _builder(plan)
    echoes = _PromptEchoes()

    async def candidate(prompt: Prompt, j: int) -> tuple[list[Emit], Echo | None, End]:
        emits: list[Emit] = []
        echo: Echo | None = None
        end: End | None = None
        params = plan.params_for(j)
        async with aclosing(_choice_emits(plan, slot, prompt, params, echoes)) as items:
            async for item in items:
                if isinstance(item, Emit):
                    emits.append(item)
                elif isinstance(item, Echo):
                    echo = item
                    emits.append(Emit({"content": item.text}))
                else:
                    end = item
        assert end is not None
        return emits, echo, end

    generated = iter(
        await _together(
            [candidate(prompt, j) for prompt in plan.prompts for j in range(plan.candidates)]
        )
    )
    choices = []
    for p in range(len(plan.prompts)):
        candidates: list[tuple[float, dict[str, Any]]] = []
        for _ in range(plan.candidates):
            emits, echo, end = next(generated)
            builder.completion_tokens += end.completion_tokens
            candidates.append(builder.choice(emits, end.reason, echo))
        for k, choice in enumerate(best_choices(candidates, plan.n)):
            choice["index"] = p * plan.n + k
            choices.append(choice)
    return builder.completion(choices)


async def _choice_chunks(
    plan: Plan,
    slot: Slot,
    builder: ResponseBuilder,
    echoes: _PromptEchoes,
    choice: tuple[int, Prompt, SamplingParams],
) -> AsyncIterator[dict[str, Any]]:
    """One choice's chunks: a role chunk, delta chunks, a finish chunk.

    The finish chunk's delta is `{"content": ""}`, or `{}` after tool call deltas.
    """
    index, prompt, params = choice
    calls_only = plan.kind == "chat" and plan.tools.mode in ("forced", "required")
    yield builder.chunk(index, {"role": "assistant", "content": None if calls_only else ""})
    offset = 0
    called = False
    end: End | None = None
    async with aclosing(_choice_emits(plan, slot, prompt, params, echoes)) as items:
        async for item in items:
            if isinstance(item, Echo):
                logprobs = builder.logprobs((), offset)
                if logprobs is not None:
                    logprobs = joined_logprobs(item.legacy_logprobs(), logprobs)
                offset += len(item.text)
                yield builder.chunk(index, {"content": item.text}, logprobs=logprobs)
            elif isinstance(item, Emit):
                delta = item.delta
                if "content" in delta:
                    logprobs = builder.logprobs(item.logprobs, offset)
                    offset += len(delta["content"])
                else:
                    logprobs, called = None, True
                yield builder.chunk(index, delta, logprobs=logprobs)
            else:
                end = item
    assert end is not None
    builder.completion_tokens += end.completion_tokens
    yield builder.chunk(index, {} if called else {"content": ""}, finish_reason=end.reason)


async def _chunks(plan: Plan, slot: Slot) -> AsyncIterator[dict[str, Any]]:
    """The stream's chunks: every choice's, side by side as they come, then the usage chunk.

    Each choice's own chunks keep their order (role first, finish last); chunks of different
    choices interleave, told apart by their `index`.
    """
    builder = _builder(plan)
    echoes = _PromptEchoes()
    choices = [_choice_chunks(plan, slot, builder, echoes, choice) for choice in plan.choices()]
    # Several choices run side by side (aiostream: the first error cancels the others, and so
    # does leaving early); a single one streams without a task in between.
    merged = aclosing(choices[0]) if len(choices) == 1 else merge(*choices).stream()
    async with merged as chunks:
        async for chunk in chunks:
            yield chunk
    if plan.include_usage:
        yield builder.usage_chunk()


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
