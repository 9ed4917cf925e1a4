"""`GET /v1/models`, `/{model}/v1/models`, `/chub/{model}/v1/models`."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from reference.errors import model_not_served
from reference.pool import ModelPool

__all__ = ["ModelsResource"]

OWNER = "mimic-reference"


class ModelsResource:
    """The served models, OpenAI's list shape; with a path model, that one model."""

    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool

    def _entry(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self._pool.created, "owned_by": OWNER}

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, model: str | None = None
    ) -> None:
        """List every served model the key may use, or just the path's model."""
        grant = req.context.grant
        if model is None:
            names = [name for name in self._pool.names if grant.allows(name)]
        else:
            if not self._pool.serves(model):
                raise model_not_served(model)
            grant.check(model)
            names = [model]
        resp.media = {"object": "list", "data": [self._entry(name) for name in names]}
