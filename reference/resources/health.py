"""`GET /health`: not in the contract; says whether the models are loaded. Never needs a key."""

from __future__ import annotations

import falcon
import falcon.asgi

from reference.pool import ModelPool

__all__ = ["HealthResource"]


class HealthResource:
    """200 `{"status": "ok", ...}` once every model is loaded, else 503 (loading or error)."""

    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """Each model's state and the overall one."""
        models = self._pool.status()
        try:
            self._pool.start_loading()  # a no-op once loading has started at start-up
        except FileNotFoundError:
            models = dict.fromkeys(models, "error")
        states = set(models.values())
        status = "error" if "error" in states else "loading" if "loading" in states else "ok"
        resp.status = falcon.HTTP_200 if status == "ok" else falcon.HTTP_503
        resp.media = {"status": status, "models": models}
