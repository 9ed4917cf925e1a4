"""The state of one suite run, shared by the plugin and the suite's test modules.

:class:`Run` holds the resolved settings, the contract read from ``--spec``, one bounded
:class:`~conformance.transport.Transport` to the target, caches of responses that several
requirements judge, and the cases recorded so far. The plugin creates it; tests reach it through
the ``conformance`` fixture (or :func:`active`, for module-level schemathesis schemas).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from functools import cached_property
from typing import Any, TypeVar

import pytest

import spec
from conformance.checks.auth import credential_headers, header_schemes
from conformance.profile import Settings
from conformance.results import CaseResult, Evidence, Outcome
from conformance.suite._operations import (
    MODEL_FIELD,
    enum_path_parameters,
    list_all_models_operation,
)
from conformance.transport import Exchange, RequestSpec, StreamResult, Transport, TransportFailure

__all__ = ["BREAKER_THRESHOLD", "FINALIZE", "REQUIREMENTS", "Run", "active", "set_active"]

T = TypeVar("T")

REQUIREMENTS: pytest.StashKey[tuple[str, ...]] = pytest.StashKey()
"""Item stash: the selected requirements a test item judges."""
FINALIZE: pytest.StashKey[Callable[[], list[str]]] = pytest.StashKey()
"""Item stash: called when the item's call ends; returns failure lines (empty: it passed)."""

BREAKER_THRESHOLD = 5
"""Consecutive transport failures after which the target counts as down and nothing more is sent.

Without it, a target that stalls every request would cost the timeout once per generated case:
hours, where DESIGN.md §3 asks for bounded time.
"""


class Run:
    """One run against one target: settings, contract, transport, caches and recorded cases."""

    def __init__(self, settings: Settings, target: str) -> None:
        self.settings = settings
        self.target = target.rstrip("/")
        self.document: dict[str, Any] = spec.load_path(settings.spec_path)
        self.contract = spec.Contract(self.document)
        auth = self.auth_headers(settings.api_key) if settings.api_key else {}
        self.transport = Transport(self.target, timeout=settings.timeout, headers=auth)
        self.cases: list[CaseResult] = []
        self._cache: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self._failures_in_a_row = 0
        self.down_reason: str | None = None

    # ------------------------------------------------------------------ target access
    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a report (the API key)."""
        return (self.settings.api_key,) if self.settings.api_key else ()

    def auth_headers(self, key: str) -> dict[str, str]:
        """The header that carries ``key`` in the first header scheme the spec declares."""
        schemes = header_schemes(self.document)
        if not schemes:
            return {"Authorization": f"Bearer {key}"}
        return credential_headers(next(iter(schemes.values())), key)

    def send(self, request: RequestSpec, *, timeout: float | None = None) -> Exchange:
        """Send one request through the transport, unless the target is already judged down."""
        if self.down_reason is not None:
            prepared = self.transport.prepare(request)
            return Exchange(request=prepared, failure=TransportFailure("other", self.down_reason))
        exchange = self.transport.send(request, timeout=timeout)
        # Any incomplete answer counts: a target that streams forever answers every request
        # with a status and then costs a whole timeout.
        self._count(exchange.failure)
        return exchange

    def stream(self, request: RequestSpec, *, timeout: float | None = None) -> StreamResult:
        """Send one request and read its answer event by event (see ``Transport.stream_events``)."""
        if self.down_reason is not None:
            prepared = self.transport.prepare(request)
            exchange = Exchange(
                request=prepared, failure=TransportFailure("other", self.down_reason)
            )
            return StreamResult(exchange, [], [], "error", False)
        result = self.transport.stream_events(request, timeout=timeout)
        failure = result.exchange.failure
        # A stream cut at the deadline after its head arrived is for the stream rules to judge
        # (STREAM-ENDS), not a sign that the target is down.
        self._count(failure if result.exchange.status is None else None)
        return result

    def _count(self, failure: TransportFailure | None) -> None:
        with self._lock:
            if failure is None:
                self._failures_in_a_row = 0
                return
            self._failures_in_a_row += 1
            if self._failures_in_a_row >= BREAKER_THRESHOLD and self.down_reason is None:
                self.down_reason = (
                    f"not sent: the target failed {self._failures_in_a_row} requests in a row "
                    f"(the last: {failure.message})"
                )

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value cached for ``key``, computed once (answers that several rules judge)."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            return self._cache.setdefault(key, value)  # type: ignore[no-any-return]

    @cached_property
    def served_models(self) -> tuple[str, ...]:
        """The model ids the target lists at its list-all-models operation.

        If it lists none (or the list cannot be read), the model names the spec itself knows
        (the enum of the ``model`` path parameter): a guess, but a far better one than the
        arbitrary strings a generator would otherwise put in a body's ``model``.
        """
        listed = self._listed_models()
        return listed if listed else self._spec_models()

    def _spec_models(self) -> tuple[str, ...]:
        for operation in self.contract.operations:
            for parameter, values in enum_path_parameters(self.contract, operation):
                if parameter.name == MODEL_FIELD:
                    return tuple(str(value) for value in values)
        return ()

    def _listed_models(self) -> tuple[str, ...]:
        operation = list_all_models_operation(self.contract)
        if operation is None:
            return ()
        exchange = self.send(RequestSpec("GET", operation.path))
        try:
            listing = exchange.json()
        except ValueError:
            return ()
        data = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(data, list):
            return ()
        return tuple(
            str(entry["id"])
            for entry in data
            if isinstance(entry, dict) and isinstance(entry.get("id"), str)
        )

    # ------------------------------------------------------------------ recording
    def record(
        self,
        requirement_id: str,
        operation: str,
        outcome: Outcome,
        *,
        evidence: Evidence | None = None,
        reason: str | None = None,
        duration: float = 0.0,
    ) -> CaseResult:
        """Record one case (a requirement judged on one operation)."""
        case = CaseResult(requirement_id, operation, outcome, evidence, reason, max(duration, 0.0))
        with self._lock:
            self.cases.append(case)
        return case

    def evidence(
        self,
        operation: str,
        message: str,
        exchange: Exchange | None = None,
        *,
        stream: StreamResult | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Evidence:
        """Evidence for a finding, with the API key kept out of it."""
        if stream is not None:
            return Evidence.from_stream(
                operation, message, stream, secrets=self.secrets, extra=extra
            )
        if exchange is not None:
            return Evidence.from_exchange(
                operation, message, exchange, secrets=self.secrets, extra=extra
            )
        return Evidence(operation=operation, message=message, extra=dict(extra or {}))

    def close(self) -> None:
        """Release the transport's connections."""
        self.transport.close()


_active: Run | None = None


def set_active(run: Run | None) -> None:
    """Make ``run`` the one the suite's modules see at import time (the plugin calls this)."""
    global _active
    _active = run


def active() -> Run:
    """The current run; the suite's modules only make sense inside a run of the plugin."""
    if _active is None:
        raise RuntimeError(
            "conformance.suite is collected only by the conformance plugin: run "
            "`mimic-conformance` or `pytest -p conformance.plugin --pyargs conformance.suite`"
        )
    return _active
