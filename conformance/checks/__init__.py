"""Pure functions that judge what a target answered; each returns :class:`Finding` objects.

One module per family of requirements: :mod:`~conformance.checks.schema` (schemathesis's checks,
mapped to requirement IDs), :mod:`~conformance.checks.streaming`, :mod:`~conformance.checks.errors`,
:mod:`~conformance.checks.semantics`, :mod:`~conformance.checks.fields` (what each documented
request field must do), :mod:`~conformance.checks.auth` and :mod:`~conformance.checks.robustness`
(what hostile traffic must not do). None of them sends a
request: the suite's test modules send, these judge, so that each can be tested on synthetic
data. :func:`choices` reads the choices of an answer or of a streamed chunk, for the checks and
the suite alike.
"""

from conformance.checks._answers import choices
from conformance.checks._finding import Finding, ResponseLike, Validator, schema_problems

__all__ = ["Finding", "ResponseLike", "Validator", "choices", "schema_problems"]
