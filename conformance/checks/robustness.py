"""Hostile-traffic rules (``ROBUST-*``): an answer that is not a crash, and a server still serving.

Here a request that got no answer is the target's failure: it is what hostile traffic does to
a fragile server (the suite's other families call it an error, since they cannot judge).
``ERR-RECOVERS`` shares :func:`check_still_serving`.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from conformance.checks._finding import Finding
from conformance.exchange import Exchange

__all__ = ["check_hostile_answer", "check_stalled_closed", "check_still_serving"]


def _no_answer(exchange: Exchange, bound: float) -> str:
    failure = exchange.failure
    if failure is not None and failure.kind == "timeout":
        return f"got no answer within {bound:g} s"
    return f"got no answer ({failure.message if failure else 'no response'})"


def check_hostile_answer(
    requirement_id: str,
    exchange: Exchange,
    what: str,
    *,
    bound: float,
    documented: Collection[str],
    client_error: bool = False,
) -> list[Finding]:
    """A hostile request was answered in time, with a documented status and a JSON body.

    The status is never a 5xx; with ``client_error`` (the request is invalid) it is a 4xx.
    """
    if exchange.status is None:
        return [Finding(requirement_id, f"A request with {what} {_no_answer(exchange, bound)}.")]
    status = exchange.status
    problems = []
    if status >= 500:
        problems.append(f"was answered {status}: a 5xx is never caused by input alone")
    elif client_error and not 400 <= status < 500:
        problems.append(f"was answered {status}: a request this invalid is answered 4xx")
    elif str(status) not in documented and f"{str(status)[0]}XX" not in documented:
        problems.append(f"was answered {status}, a status the operation does not document")
    if not exchange.body:
        problems.append(f"its {status} answer has an empty body")
    else:
        try:
            json.loads(exchange.body)
        except ValueError:
            problems.append(f"the body of its {status} answer is not JSON")
    return [Finding(requirement_id, f"A request with {what} {problem}.") for problem in problems]


def check_still_serving(
    requirement_id: str, exchange: Exchange, after: str, *, bound: float
) -> list[Finding]:
    """The valid request sent after trouble was answered 2xx in time.

    Trouble is hostile traffic (``ROBUST-*``) or a rejected request (``ERR-RECOVERS``).
    """
    if exchange.status is None:
        message = f"After {after}, a valid request {_no_answer(exchange, bound)}."
        return [Finding(requirement_id, message)]
    if not 200 <= exchange.status < 300:
        message = f"After {after}, a valid request was answered {exchange.status}, not a 2xx."
        return [Finding(requirement_id, message)]
    return []


def check_stalled_closed(
    requirement_id: str, what: str, closed_after: float | None, status: int | None, *, bound: float
) -> list[Finding]:
    """A connection whose request stopped arriving was closed (or answered 4xx) within ``bound``.

    ``closed_after`` is the seconds the target took to close it or answer (``None``: it did
    neither within ``bound``); ``status`` the status of its answer, if it sent one.
    """
    if closed_after is None:
        message = f"A connection with {what} was still open after {bound:g} s."
        return [Finding(requirement_id, message)]
    if status is not None and not 400 <= status < 500:
        message = f"A connection with {what} was answered {status}, not closed or answered 4xx."
        return [Finding(requirement_id, message)]
    return []
