"""`POST /v1/completions`, `/{model}/v1/completions`, `/chub/{model}/v1/completions`."""

from __future__ import annotations

import falcon.asgi

from reference.generation import plan_completion, serve
from reference.pool import ModelPool

__all__ = ["CompletionsResource"]


class CompletionsResource:
    """Text completions: the prompt as given, no chat template."""

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
        plan = await plan_completion(body, model=name, engine=runner.engine)
        await serve(plan, runner, resp, queue_timeout=self._queue_timeout)
