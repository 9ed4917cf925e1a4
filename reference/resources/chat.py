"""`POST` chat completions: `/v1/…`, `/{model}/v1/…` and `/chub/{model}/v1/…`."""

from __future__ import annotations

import falcon.asgi

from reference.generation import plan_chat, serve
from reference.pool import ModelPool

__all__ = ["ChatResource"]


class ChatResource:
    """Chat completions with the model's own chat template."""

    def __init__(self, pool: ModelPool, *, queue_timeout: float | None = None) -> None:
        self._pool = pool
        self._queue_timeout = queue_timeout

    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str | None = None
    ) -> None:
        """The path model wins; without one, the body's `model` must be served here."""
        body = req.context.body
        name = model or body["model"]
        runner = await self._pool.runner_for(name, req.context.grant)
        plan = await plan_chat(body, model=name, engine=runner.engine)
        await serve(plan, runner, resp, queue_timeout=self._queue_timeout)
