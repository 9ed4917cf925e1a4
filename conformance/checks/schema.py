"""schemathesis's built-in checks, each mapped to the requirement it stands for.

schemathesis judges one response at a time against the spec (status documented, content type,
body and streamed events against their schemas, required headers, acceptance of valid and
rejection of invalid data, 405 for undocumented methods). Running each check on its own, as
:func:`run_check` does, tells which requirement a failure belongs to: one schemathesis failure
group would mix them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conformance.checks._finding import Finding

__all__ = [
    "CHECK_REQUIREMENTS",
    "NEGATIVE_CHECKS",
    "POSITIVE_CHECKS",
    "SCHEMATHESIS_SETTINGS",
    "run_check",
]

CHECK_REQUIREMENTS: Mapping[str, str] = {
    "not_a_server_error": "SCHEMA-NO-5XX",
    "status_code_conformance": "SCHEMA-STATUS-DOCUMENTED",
    "content_type_conformance": "SCHEMA-CONTENT-TYPE",
    "response_schema_conformance": "SCHEMA-RESPONSE-VALID",
    "response_headers_conformance": "SCHEMA-HEADERS",
    "positive_data_acceptance": "SCHEMA-VALID-ACCEPTED",
    "negative_data_rejection": "SCHEMA-INVALID-REJECTED",
    "unsupported_method": "SCHEMA-METHOD-405",
}
"""schemathesis check name → requirement ID."""

_COMMON = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
POSITIVE_CHECKS: tuple[str, ...] = (*_COMMON, "positive_data_acceptance")
"""The checks run on responses to schema-valid requests."""
NEGATIVE_CHECKS: tuple[str, ...] = (*_COMMON, "negative_data_rejection", "unsupported_method")
"""The checks run on responses to schema-violating requests (and undocumented methods)."""

SCHEMATHESIS_SETTINGS: Mapping[str, Any] = {
    "checks": {
        # A valid request may still be refused: 400 is the contract's answer for "valid but
        # cannot be served" (a prompt longer than the context, best_of < n, an unsupported
        # modality), and 429 for "queue full". 5xx is left to SCHEMA-NO-5XX alone, so that a
        # server fault fails one requirement, not two.
        "positive_data_acceptance": {"expected-statuses": ["2XX", "400", "429", "5XX"]},
        # Any non-2xx is a rejection; which 4xx is right is what the ERR-* rules judge, and a
        # 5xx is SCHEMA-NO-5XX's business.
        "negative_data_rejection": {"expected-statuses": ["4XX", "5XX"]},
    },
}
"""The check settings the suite gives schemathesis (merged into its configuration)."""


def run_check(name: str, case: Any, response: Any) -> Finding | None:
    """Run one schemathesis check on ``case``'s ``response``; a Finding if it failed.

    ``case`` is a ``schemathesis.Case``, ``response`` a ``schemathesis.Response``. Exceptions
    other than a check failure (a bug, a broken spec) propagate: they are the harness's errors.
    """
    from schemathesis.checks import CHECKS, load_all_checks
    from schemathesis.core.failures import FailureGroup

    load_all_checks()
    check = CHECKS.get_one(name)
    try:
        case.validate_response(response, checks=[check])
    except FailureGroup as group:
        failures = list(group.exceptions)
        first = failures[0]
        title = getattr(first, "title", type(first).__name__)
        detail = getattr(first, "message", str(first)).strip()
        message = f"{title}: {detail}" if detail else str(title)
        extras = [getattr(f, "title", str(f)) for f in failures[1:4]]
        return Finding(
            CHECK_REQUIREMENTS[name],
            message,
            details={"schemathesis_check": name, **({"also": extras} if extras else {})},
        )
    return None
