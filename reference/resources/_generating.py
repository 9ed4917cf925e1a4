"""The one responder chat and completions share: pick the model, plan the request, serve it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import falcon.asgi

from reference.engine import Engine
from reference.generation import serve
from reference.planning import Plan
from reference.pool import ModelPool

__all__ = ["GeneratingResource", "Planner"]

Planner = Callable[..., Awaitable[Plan]]
"""`plan_chat` or `plan_completion`: `(body, *, model, engine) -> Plan`."""


class GeneratingResource:
    """A `POST` that generates; subclasses say how a body becomes a `Plan`."""

    planner: ClassVar[Planner]

    def __init__(self, pool: ModelPool, *, queue_timeout: float | None = None) -> None:
        self._pool = pool
        self._queue_timeout = queue_timeout

    async def _plan(self, body: Mapping[str, Any], model: str, engine: Engine) -> Plan:
        return await type(self).planner(body, model=model, engine=engine)

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str | None = None
    ) -> None:
        """The path model wins; without one, the body's `model` must be served here."""
        body = req.context.body
        name = model or body["model"]
        runner = await self._pool.runner_for(name, req.context.grant)
        plan = await self._plan(body, name, runner.engine)
        await serve(plan, runner, resp, queue_timeout=self._queue_timeout)
