"""The Mimic conformance suite: judges any HTTP server against the Mimic API contract.

This package's foundations, on which the checks and the pytest plugin are built:

- :mod:`conformance.sse`: a strict server-sent-events parser that reports every deviation;
- :mod:`conformance.exchange`: the values of one HTTP exchange (request, answer, failure,
  streamed events);
- :mod:`conformance.transport`: a bounded HTTP client (one deadline per request, body caps),
  so that a hostile target cannot hang the suite;
- :mod:`conformance.curl`: curl commands that reproduce a request, secrets left out;
- :mod:`conformance.results`: requirements, outcomes, evidence and the run record;
- :mod:`conformance.report`: ``results.json``, ``report.html``, ``junit.xml`` and
  ``summary.md``, all rendered from the run record.
"""

from __future__ import annotations

from importlib import metadata

from conformance.curl import SECRET_ENV_VAR, to_curl
from conformance.exchange import (
    BodyChunk,
    Exchange,
    RequestSpec,
    ResponseNotJSONError,
    StreamResult,
    TransportFailure,
)
from conformance.report import ReportPaths, render_from_json, write_reports
from conformance.results import (
    CaseResult,
    Evidence,
    Level,
    Outcome,
    Requirement,
    RequirementResult,
    RunRecord,
    Summary,
    Verdict,
    aggregate,
    redact_options,
    utc_now,
)
from conformance.sse import Deviation, DeviationKind, Event, SSEParser
from conformance.transport import BodyStream, ProbeResult, Transport, probe

try:
    __version__ = metadata.version("mimic-conformance")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "SECRET_ENV_VAR",
    "BodyChunk",
    "BodyStream",
    "CaseResult",
    "Deviation",
    "DeviationKind",
    "Event",
    "Evidence",
    "Exchange",
    "Level",
    "Outcome",
    "ProbeResult",
    "ReportPaths",
    "RequestSpec",
    "Requirement",
    "RequirementResult",
    "ResponseNotJSONError",
    "RunRecord",
    "SSEParser",
    "StreamResult",
    "Summary",
    "Transport",
    "TransportFailure",
    "Verdict",
    "__version__",
    "aggregate",
    "probe",
    "redact_options",
    "render_from_json",
    "to_curl",
    "utc_now",
    "write_reports",
]
