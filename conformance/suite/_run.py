"""The state of one suite run, shared by the plugin and the suite's test modules.

:class:`Run` holds the resolved settings, the contract read from ``--spec``, one bounded
:class:`~conformance.transport.Transport` to the target, what the run has learned of the target
(whether it still answers, how long to wait on it), caches of responses that several
requirements judge, and the cases recorded so far. Every request of the suite goes through
:meth:`Run.send` or :meth:`Run.stream`. The plugin creates the run (one per pytest-xdist
worker) and keeps it on pytest's config; tests reach it through the ``conformance`` fixture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from functools import cached_property
from typing import Any, TypeVar

import pytest

import spec
from conformance.checks.auth import credential_headers, header_schemes
from conformance.curl import to_curl
from conformance.exchange import Exchange, RequestSpec, StreamResult
from conformance.outage import TargetDown
from conformance.profile import Settings
from conformance.requirements import select
from conformance.results import CaseResult, Evidence, Outcome, Requirement
from conformance.suite._liveness import Liveness
from conformance.suite._operations import (
    MODEL_FIELD,
    enum_path_parameters,
    list_all_models_operation,
)
from conformance.suite._patience import Patience
from conformance.transport import Transport

__all__ = ["FINALIZE", "REQUIREMENTS", "Run"]

T = TypeVar("T")

REQUIREMENTS: pytest.StashKey[tuple[str, ...]] = pytest.StashKey()
"""Item stash: the selected requirements a test item judges."""
FINALIZE: pytest.StashKey[Callable[[], list[str]]] = pytest.StashKey()
"""Item stash: called when the item's call ends; returns failure lines (empty: it passed)."""


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
        self.liveness = Liveness()
        """Whether the target still answers (see :mod:`conformance.suite._liveness`)."""
        self.patience = Patience(settings.timeout)
        """How long to wait on the target (see :mod:`conformance.suite._patience`)."""
        self._recorded_at: list[float] = []
        self._cache: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    @cached_property
    def selected_requirements(self) -> tuple[Requirement, ...]:
        """The requirements this run judges (``--requirement`` / ``--skip-requirement``)."""
        settings = self.settings
        chosen = select(settings.requirements, settings.skip_requirements, hostile=settings.robust)
        if settings.cases:
            named = {requirement_id for requirement_id, _ in settings.cases}
            chosen = tuple(requirement for requirement in chosen if requirement.id in named)
        return chosen

    @cached_property
    def selected_ids(self) -> frozenset[str]:
        """The IDs of :attr:`selected_requirements`."""
        return frozenset(requirement.id for requirement in self.selected_requirements)

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

    def send(
        self, request: RequestSpec, *, timeout: float | None = None, credentials: bool = True
    ) -> Exchange:
        """Send one request and read its whole answer, unless the target is taken for down.

        With ``credentials=False`` the request goes out with only its own headers, not the
        run's API key. An incomplete answer counts against the target's liveness (a target that
        streams forever answers every request with a status and then costs a whole timeout),
        except one cut off as stalled: its head arrived, so the target answers, and what its
        silence costs is already bounded by :attr:`patience`. A target that stalls only its
        streams is not down, whatever order the run sends its requests in.
        """
        transport = self.transport if credentials else self._bare_transport
        with self._lock:
            refusal = self.liveness.refusal()
            bounds = self._bounds(request)
        if refusal is not None:
            return Exchange(request=transport.prepare(request), failure=refusal)
        with transport.stream(request, timeout=timeout, **bounds) as body:
            for _ in body:
                pass
        exchange = body.exchange
        self._observe(exchange, failed=exchange.failure is not None and body.ended_by != "stalled")
        return exchange

    def stream(self, request: RequestSpec, *, timeout: float | None = None) -> StreamResult:
        """Send one request and read its answer event by event (see ``Transport.stream_events``).

        A stream cut off after its head arrived is for the stream rules to judge (STREAM-ENDS),
        not a sign that the target is down, unless it was still sending when the timeout passed:
        a target that never ends its streams would otherwise cost a whole timeout per stream.
        """
        with self._lock:
            refusal = self.liveness.refusal()
            bounds = self._bounds(request)
        if refusal is not None:
            exchange = Exchange(request=self.transport.prepare(request), failure=refusal)
            return StreamResult(exchange, [], [], "error", False)
        result = self.transport.stream_events(request, timeout=timeout, **bounds)
        failed = result.exchange.status is None or result.ended_by == "deadline"
        self._observe(result.exchange, failed=failed)
        return result

    @cached_property
    def _bare_transport(self) -> Transport:
        return Transport(self.target, timeout=self.settings.timeout)

    def _bounds(self, request: RequestSpec) -> dict[str, float | None]:
        return {
            "head_timeout": self.patience.head_timeout(),
            "idle_timeout": self.patience.idle_timeout(request.expects_stream),
        }

    def _observe(self, exchange: Exchange, *, failed: bool) -> None:
        with self._lock:
            self.patience.observe(exchange)
            self.liveness.observe(exchange, failed=failed)

    @property
    def taken_for_down(self) -> bool:
        """Whether the target is taken for down now (its requests are not being sent)."""
        with self._lock:
            return self.liveness.outage is not None

    def target_down(self) -> TargetDown | None:
        """The target's outage, if it was down at the end of what this run sent."""
        outage = self.liveness.outage
        if outage is None:
            return None
        last = outage.last_answered
        return TargetDown(
            since=outage.since,
            cause=outage.cause,
            first_failure=outage.first_failure.message,
            last_answered=None if last is None else to_curl(last, secrets=self.secrets),
            last_answered_at=outage.last_answered_at,
            first_failed=to_curl(outage.first_failed, secrets=self.secrets),
            requests_answered=self.liveness.answered,
        )

    def cases_not_run(self) -> set[tuple[str, str]]:
        """(requirement, operation) of the errors recorded since the target went down for good."""
        outage = self.liveness.outage
        if outage is None:
            return set()
        with self._lock:
            recorded = list(zip(self._recorded_at, self.cases, strict=True))
        return {
            (case.requirement_id, case.operation)
            for at, case in recorded
            if at >= outage.started and case.outcome is Outcome.ERROR
        }

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
        measurements: Mapping[str, float] | None = None,
    ) -> CaseResult:
        """Record one case (a requirement judged on one operation), with what it measured."""
        case = CaseResult(
            requirement_id,
            operation,
            outcome,
            evidence,
            reason,
            max(duration, 0.0),
            None if measurements is None else dict(measurements),
        )
        with self._lock:
            self.cases.append(case)
            self._recorded_at.append(time.monotonic())
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
        """Release the transports' connections."""
        self.transport.close()
        if "_bare_transport" in self.__dict__:
            self._bare_transport.close()
