"""Error-code rules: which status a bad request gets, and the shape of the body it gets.

The status rules (``expect_*``) judge only the status and what is specific to it (the ``loc`` of
a 422, the ``Allow`` of a 405); :func:`check_error_body` judges the body's shape for every
error response. A server whose error bodies are all malformed thus fails ERR-BODY-SHAPE, and
not every other rule at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from conformance.checks._finding import Finding, ResponseLike, Validator, schema_problems

__all__ = [
    "check_error_body",
    "check_no_leak",
    "check_refused_before_stream",
    "expect_allow",
    "expect_named_param",
    "expect_status",
    "expect_validation_error",
    "parse_allow",
]

_EXCERPT = 200


def _excerpt(body: bytes) -> str:
    text = body[:_EXCERPT].decode("utf-8", "replace")
    return text + ("…" if len(body) > _EXCERPT else "")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def expect_status(
    requirement_id: str, response: ResponseLike, expected: int | Iterable[int], what: str
) -> list[Finding]:
    """The response's status is ``expected`` (one status or any of several).

    ``what`` describes the request for the message (e.g. "a body that is not JSON").
    """
    allowed = {expected} if isinstance(expected, int) else set(expected)
    if response.status in allowed:
        return []
    wanted = " or ".join(str(s) for s in sorted(allowed))
    return [
        Finding(
            requirement_id,
            f"{what} was answered {response.status}, not {wanted}; "
            f"body: {_excerpt(response.body)!r}",
        )
    ]


def check_refused_before_stream(
    plain_status: int, streamed: ResponseLike, media_type: str | None, what: str
) -> list[Finding]:
    """ERR-BEFORE-STREAM: a request refused without ``stream`` is refused the same way with it.

    ``plain_status`` is the error status the request got without ``stream``; ``streamed`` is
    the answer to the same request with ``"stream": true`` and ``media_type`` its media type.
    A refusal found before generation starts must keep its status and JSON body: a ``200``
    event stream that carries the error makes every client read it as a success first (the
    openai package raises nothing until it meets the error event, if it looks for one).
    """
    problems = []
    if streamed.status != plain_status:
        problems.append(f"answered {streamed.status}, not {plain_status} as without stream")
    if media_type != "application/json":
        problems.append(f"its Content-Type is {media_type!r}, not 'application/json'")
    if not problems:
        return []
    return [
        Finding(
            "ERR-BEFORE-STREAM",
            f'{what}, sent with "stream": true, was ' + " and ".join(problems) + "; body: "
            f"{_excerpt(streamed.body)!r}",
        )
    ]


def expect_validation_error(
    requirement_id: str, response: ResponseLike, loc_prefix: Sequence[str | int], what: str
) -> list[Finding]:
    """A 422 with a ``detail`` item whose ``loc`` starts with ``loc_prefix``.

    A body without a ``detail`` list is left to :func:`check_error_body`: the status is what
    this rule is about.
    """
    found = expect_status(requirement_id, response, 422, what)
    if found:
        return found
    body = _json(response.body)
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, list):
        return []
    locs = [item.get("loc") for item in detail if isinstance(item, dict)]
    prefix = list(loc_prefix)
    if any(isinstance(loc, list) and loc[: len(prefix)] == prefix for loc in locs):
        return []
    return [
        Finding(
            requirement_id,
            f"{what} was answered 422, but no detail item's loc starts with {prefix!r} "
            f"(locs: {locs[:5]!r}).",
        )
    ]


_PARAM_PARTS = re.compile(r"[.\[\]/]+")


def expect_named_param(
    requirement_id: str, response: ResponseLike, status: int, field: str | None, what: str
) -> list[Finding]:
    """An OpenAI-style error: ``status``, and ``error.param`` naming ``field`` if there is one.

    ``param`` names the field when it is the field, or a path to it (``messages.0.content``,
    ``body.temperature``). A body without an ``error`` object is left to
    :func:`check_error_body`.
    """
    found = expect_status(requirement_id, response, status, what)
    if found or field is None:
        return found
    body = _json(response.body)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return []
    param = error.get("param")
    if isinstance(param, str) and field in _PARAM_PARTS.split(param):
        return []
    return [
        Finding(
            requirement_id,
            f"{what} was answered {status}, but error.param is {param!r}: it must name the "
            f"field at fault, {field!r}.",
        )
    ]


def parse_allow(value: str | None) -> set[str]:
    """The methods an ``Allow`` header lists, upper-cased (empty for a missing header)."""
    if not value:
        return set()
    return {method.strip().upper() for method in value.split(",") if method.strip()}


def expect_allow(
    requirement_id: str, response: ResponseLike, documented: Iterable[str], what: str
) -> list[Finding]:
    """A 405 whose ``Allow`` lists exactly the ``documented`` methods."""
    found = expect_status(requirement_id, response, 405, what)
    if found:
        return found
    expected = {method.upper() for method in documented}
    header = response.header("allow")
    if header is None:
        return [Finding(requirement_id, f"{what} was answered 405 without an Allow header.")]
    listed = parse_allow(header)
    if listed == expected:
        return []
    return [
        Finding(
            requirement_id,
            f"{what} was answered 405 with 'Allow: {header}', but the path documents "
            f"{', '.join(sorted(expected))}.",
        )
    ]


def check_error_body(
    response: ResponseLike, validator: Validator | None, what: str
) -> list[Finding]:
    """ERR-BODY-SHAPE: an error body is JSON valid for its status, with ``errorCode == status``.

    ``validator`` is the schema documented for the response's status (``None``: the spec has
    none for it, and only the JSON and ``errorCode`` rules apply).
    """
    status = response.status
    if status is None or status < 400:
        return []
    body = _json(response.body)
    if body is None:
        return [
            Finding(
                "ERR-BODY-SHAPE",
                f"the {status} answer to {what} has a body that is not JSON: "
                f"{_excerpt(response.body)!r}.",
            )
        ]
    problems = schema_problems(validator, body) if validator is not None else []
    if problems:
        return [
            Finding(
                "ERR-BODY-SHAPE",
                f"the {status} answer to {what} does not match the schema documented for "
                f"{status}: {problems[0]}.",
                details={"problems": problems},
            )
        ]
    if isinstance(body, dict) and "errorCode" in body and body["errorCode"] != status:
        return [
            Finding(
                "ERR-BODY-SHAPE",
                f"the {status} answer to {what} has errorCode {body['errorCode']!r}; it must "
                f"equal the status.",
            )
        ]
    return []


_LEAKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a stack trace", re.compile(r"Traceback \(most recent call last\)|^\s+at [\w.$]+\(", re.M)),
    (
        "a source file path",
        re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.-]+)+\.(?:py|js|ts|go|rs|java|rb)\b|site-packages"),
    ),
    ("an exception class name", re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b")),
)
"""What an error body must not carry, each with a pattern that finds it."""


def check_no_leak(response: ResponseLike, what: str, secret: str | None) -> list[Finding]:
    """ERR-NO-LEAK: an error answer shows no internals and does not echo the key it was sent.

    Internals are a stack trace, a source file path or an exception class name in the body;
    ``secret`` is the key the request carried, looked for in the body and every header.
    """
    status = response.status
    if status is None or status < 400:
        return []
    text = response.body.decode("utf-8", "replace")
    findings = []
    if secret and (secret in text or any(secret in value for _, value in response.headers)):
        findings.append(
            Finding("ERR-NO-LEAK", f"the {status} answer to {what} echoes the key it was sent.")
        )
    for name, pattern in _LEAKS:
        found = pattern.search(text)
        if found is not None:
            findings.append(
                Finding(
                    "ERR-NO-LEAK",
                    f"the {status} answer to {what} carries {name}: {found.group(0)[:80]!r}.",
                )
            )
    return findings
