"""`create_app(config)`: the reference server as a Falcon ASGI app (asgilook's factory style).

Collaborators are built here and injected through constructors: the model pool (also the
lifespan middleware that loads and frees the models), the key ring, the resources, and the
contract router that serves every operation of `spec/openapi.yaml`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import falcon.asgi

import spec
from reference import errors, json_media
from reference.auth import KeyRing
from reference.config import Config
from reference.openai_dialect import OpenAIDialect
from reference.pool import ModelPool
from reference.resources import (
    ChatResource,
    CompletionsResource,
    HealthResource,
    ModelsResource,
)
from reference.routing import ContractRouter
from reference.scheduler import ModelRunner

__all__ = ["AccessLog", "create_app"]

access_logger = logging.getLogger("mimic.reference.access")


class AccessLog:
    """One log line per request: method, path, status, milliseconds, request id.

    Never headers, bodies or keys. A stream is logged when it ends, so that its line carries
    its whole duration and whether the client stayed to the end.
    """

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """Stamp the request with its start time and an id (also sent as `X-Request-ID`)."""
        req.context.started = time.perf_counter()
        req.context.request_id = uuid.uuid4().hex[:16]
        resp.set_header("X-Request-ID", req.context.request_id)

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        """Log now, or when the stream ends."""
        started = getattr(req.context, "started", time.perf_counter())
        line = (req.method, req.path, resp.status_code, getattr(req.context, "request_id", "-"))
        if resp.sse is not None:
            resp.sse = _logged_stream(resp.sse, line, started)
        else:
            _log(line, started, "")


def _log(line: tuple[str, str, int, str], started: float, note: str) -> None:
    method, path, status, request_id = line
    elapsed = (time.perf_counter() - started) * 1000
    access_logger.info("%s %s %d %.1fms id=%s%s", method, path, status, elapsed, request_id, note)


async def _logged_stream(
    events: AsyncIterator[Any], line: tuple[str, str, int, str], started: float
) -> AsyncIterator[Any]:
    # Holds only plain values, never the request or response: see reference.streaming on
    # why a stream must stay out of reference cycles.
    note = " stream"
    try:
        async for event in events:
            yield event
    except GeneratorExit:
        note = " stream closed early (client gone)"
        raise
    finally:
        try:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            _log(line, started, note)


def create_app(
    config: Config,
    *,
    runners: Mapping[str, ModelRunner] | None = None,
    pool: ModelPool | None = None,
) -> falcon.asgi.App:
    """Build the app for `config`.

    Without `runners`, the app loads the configured models at start-up (ASGI lifespan) and
    frees them at shutdown. With `runners` (a runner for every configured name), it uses those
    and leaves their lifecycle to the caller, as tests do with one engine loaded per session.
    A `pool` built by the caller (the command line keeps it, to drain it on SIGTERM) replaces
    both.
    """
    if pool is not None and runners is not None:
        raise ValueError("give runners or pool, not both")
    contract = spec.contract(config.server.contract)
    pool = pool or ModelPool(config, runners, shutdown_grace=config.server.shutdown_grace)
    keyring = KeyRing(config.keys)
    middleware: list[object] = [AccessLog(), pool]
    if config.server.contract == "openai":
        middleware.append(OpenAIDialect(contract))
    app = falcon.asgi.App(middleware=middleware)
    errors.install(app)
    json_media.install(app)
    timeout = config.server.request_timeout
    router = ContractRouter(
        contract,
        {
            "chat": ChatResource(pool, queue_timeout=timeout),
            "completions": CompletionsResource(pool, queue_timeout=timeout),
            "models": ModelsResource(pool),
        },
        keyring=keyring,
        max_body_bytes=config.server.max_body_bytes,
    )
    app.add_route("/health", HealthResource(pool))
    app.add_sink(router, prefix="/")
    return app
