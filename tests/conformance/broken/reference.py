"""Starting the real reference server (with the real model) for the broken-server tests."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conformance._reference_process import STARTUP_TIMEOUT, ReferenceServer

_IGNORED_ENV = ("MIMIC_PORT", "MIMIC_HOST", "MIMIC_CONFIG")


@contextmanager
def reference_server(api_key: str | None = None, contract: str | None = None) -> Iterator[str]:
    """Run `reference.cli` on a free port (``MIMIC_MODELS_DIR`` honoured); yield its base URL.

    It runs with its default configuration (serving ``contract``, if given), and is taken for
    started once ``/health`` says ok.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("the reference server's extra is not installed")
    env = {k: v for k, v in os.environ.items() if k not in _IGNORED_ENV}
    with tempfile.TemporaryDirectory() as directory:
        server = ReferenceServer(
            Path(directory) / "reference.log", api_key, environment=env, contract=contract
        )
        try:
            yield server.start(timeout=STARTUP_TIMEOUT)
        finally:
            server.stop(grace=20.0)
