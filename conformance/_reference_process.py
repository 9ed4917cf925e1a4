"""The kit's reference server as the suite's target: started when a run has no ``--target``.

:class:`ReferenceServer` starts ``reference.cli`` on a free local port with its output in
``reports/reference-server.log``, waits until it answers, and stops it when the run ends. If the
target stops answering during the run, the report says how the process ended
(:meth:`ReferenceServer.exit_description`) and how its log ended
(:meth:`ReferenceServer.log_tail`).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from conformance.server_process import (
    LOCALHOST,
    ServerExitedError,
    ServerNotReadyError,
    free_port,
    launch,
    stop,
    wait_until_ready,
)

__all__ = [
    "LOG_TAIL_LINES",
    "NO_REFERENCE_MESSAGE",
    "READY_PATHS",
    "STARTUP_TIMEOUT",
    "ReferenceServer",
]

NO_REFERENCE_MESSAGE = (
    "no --target given and the reference server is not installed: "
    "pip install 'mimic-conformance[reference]'"
)
LOG_TAIL_LINES = 20
"""Lines of the reference server's log a report shows when the server stopped answering."""
STARTUP_TIMEOUT = 180.0
"""Seconds the reference server may take to answer (it proves and warms up its engine first)."""
READY_PATHS = ("/health",)
"""Where the plugin asks whether the server is ready. The reference answers ``/health`` with 200
only once it has proved its engine on this host and loaded every model, and never asks for a
key there; ``/v1/models`` answers sooner, while the models still load."""
_TAIL_BYTES = 64 * 1024


class ReferenceServer:
    """The kit's reference server, started on a free port when no target is given.

    ``command`` is how it is started (``--host`` and ``--port`` are added). ``api_key``, if
    given, is the one key it accepts. ``environment`` is the environment it starts from
    (default: this process's); ``ready_paths`` where readiness is asked; ``contract``, if
    given, the contract it serves (``--contract``: mimic or openai).
    """

    command: ClassVar[tuple[str, ...]] = (sys.executable, "-m", "reference.cli")

    def __init__(
        self,
        log_path: Path,
        api_key: str | None,
        *,
        environment: Mapping[str, str] | None = None,
        ready_paths: Sequence[str] = READY_PATHS,
        contract: str | None = None,
    ) -> None:
        self.log_path = log_path
        self.contract = contract
        self.api_key = api_key
        self.environment = environment
        self.ready_paths = tuple(ready_paths)
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    @staticmethod
    def installed() -> bool:
        """Whether the reference server and its inference engine can be imported."""
        try:
            return all(
                importlib.util.find_spec(name) is not None
                for name in ("reference.cli", "llama_cpp")
            )
        except (ImportError, ValueError):
            return False

    def start(self, timeout: float = STARTUP_TIMEOUT) -> str:
        """Start it and wait until it answers; return its base URL or raise RuntimeError."""
        port = free_port()
        self.base_url = f"http://{LOCALHOST}:{port}"
        env = dict(os.environ if self.environment is None else self.environment)
        env.pop("MIMIC_PORT", None)
        if self.api_key:
            env["MIMIC_API_KEYS"] = self.api_key
        command = [*self.command, "--host", LOCALHOST, "--port", str(port)]
        if self.contract is not None:
            command += ["--contract", self.contract]
        self.process = launch(command, log_path=self.log_path, env=env)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        try:
            wait_until_ready(
                self.process,
                self.base_url,
                timeout=timeout,
                paths=self.ready_paths,
                headers=headers,
            )
        except ServerExitedError as error:
            raise RuntimeError(
                f"the reference server exited with status {error.returncode}: {self._tail()}"
            ) from None
        except ServerNotReadyError:
            self.stop()
            raise RuntimeError(
                f"the reference server did not answer within {timeout:g} s: {self._tail()}"
            ) from None
        return self.base_url

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text("utf-8", "replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
        """The last ``lines`` lines of its log (none if there is no log)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - _TAIL_BYTES))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ()
        return tuple(text.rstrip().splitlines()[-lines:])

    def exit_description(self, wait: float = 0.0) -> str | None:
        """How the process ended ("was killed by SIGILL (illegal instruction)"), or ``None``.

        ``None`` if it was never started; "is still running" if it has not ended within
        ``wait`` seconds.
        """
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout=wait) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return "is still running"
        if code < 0:
            try:
                number = signal.Signals(-code)
            except ValueError:
                return f"was killed by signal {-code}"
            description = signal.strsignal(number) or "no description"
            return f"was killed by {number.name} ({description.lower()})"
        return f"exited with status {code}"

    def stop(self, grace: float = 15.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after ``grace`` seconds)."""
        if self.process is not None:
            stop(self.process, grace=grace)
