"""`mimic-reference`: run the reference server on uvicorn.

    mimic-reference [--host 127.0.0.1] [--port 8000] [--config FILE] [--log-level info]

Environment: `MIMIC_HOST`, `MIMIC_PORT`, `MIMIC_CONFIG`, `MIMIC_API_KEYS` (comma-separated keys
allowed every model); the command line wins over them. On SIGTERM (or Ctrl-C) the server stops
taking requests, gives running generations `shutdown_grace` seconds, and exits with status 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from reference.app import create_app
from reference.config import Config, ConfigError
from reference.connections import RateLimitFilter, guarded_protocol, limits_for
from reference.disconnect import CancelOnDisconnect
from reference.pool import ModelPool
from reference.preflight import EngineCannotRun, prove_all

__all__ = ["main"]

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
_CUT_AFTER_GRACE = 5
"""Seconds after the grace period before uvicorn cuts the connections still open."""


class _Server(uvicorn.Server):
    """uvicorn's server, telling the model pool to drain as soon as it is asked to stop."""

    def __init__(self, config: uvicorn.Config, pool: ModelPool) -> None:
        super().__init__(config)
        self._pool = pool

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first:
            self._pool.begin_drain()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mimic-reference",
        description="The Mimic API's reference server (Falcon on uvicorn, llama.cpp).",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; $MIMIC_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000; $MIMIC_PORT)")
    parser.add_argument("--config", metavar="FILE", help="a TOML config file ($MIMIC_CONFIG)")
    parser.add_argument(
        "--contract",
        choices=("mimic", "openai"),
        help="the contract to serve: mimic (the default) or openai, the /v1 operations with "
        "OpenAI's statuses and bodies (overrides [server] contract)",
    )
    parser.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default=os.environ.get("MIMIC_LOG_LEVEL", "info").lower(),
        help="log level (default info; $MIMIC_LOG_LEVEL)",
    )
    return parser


def _ignore_after_shutdown(signum: int, frame: FrameType | None) -> None:
    """Uvicorn re-raises the stop signal once it has shut down; by then there is nothing to do."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until told to stop.

    Exit status: 0 after a clean shutdown, 2 bad config, 3 no model file, 4 the engine cannot
    run on this host (see `reference.preflight`).
    """
    args = _parser().parse_args(argv)
    try:
        config = Config.load(args.config)
        changes = {
            key: value
            for key, value in (
                ("host", args.host),
                ("port", args.port),
                ("contract", args.contract),
            )
            if value is not None
        }
        if changes:
            config = config.with_server(**changes)
    except ConfigError as error:
        print(f"mimic-reference: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    pool = ModelPool(config, shutdown_grace=config.server.shutdown_grace)
    problems = pool.missing_files()
    if problems:
        for problem in problems:
            print(f"mimic-reference: {problem}", file=sys.stderr)
        return 3
    try:
        prove_all(config.models.values())
    except EngineCannotRun as error:
        print(f"mimic-reference: {error}", file=sys.stderr)
        return 4
    app = create_app(config, pool=pool)
    limits = limits_for(
        config.server.head_timeout, config.server.body_timeout, config.server.max_connections
    )
    # Records a client can cause at will: refused accepts, malformed requests, closed connections.
    for noisy in ("asyncio", "uvicorn.error", "mimic.reference.connections"):
        logging.getLogger(noisy).addFilter(RateLimitFilter())
    server_config = uvicorn.Config(
        CancelOnDisconnect(app),
        http=guarded_protocol(limits),
        host=config.server.host,
        port=config.server.port,
        log_level=args.log_level,
        access_log=False,  # our own access log has one line per request, streams included
        lifespan="on",
        # After the grace period a generation stops within a token, and a prompt being
        # evaluated within a chunk of it (about 32 tokens): leave time for that, on a busy
        # machine too, before cutting connections.
        timeout_graceful_shutdown=math.ceil(config.server.shutdown_grace) + _CUT_AFTER_GRACE,
        log_config=None,  # keep the logging set up above
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _ignore_after_shutdown)
    server = _Server(server_config, pool)
    server.run()
    if not server.started:
        return 3  # uvicorn's own status for a failed start-up (a model file missing, say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
