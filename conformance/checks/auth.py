"""Authentication rules, judged only when the suite is given a key (``--api-key``).

The header schemes come from the spec's ``components/securitySchemes``, not from this module:
:func:`credential_headers` turns one scheme into the header that carries a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conformance.checks._finding import Finding, ResponseLike

__all__ = [
    "check_accepted",
    "check_not_served",
    "check_rejected",
    "credential_headers",
    "header_schemes",
]

_REJECTED = 401


def header_schemes(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The spec's security schemes that travel in a request header, by name.

    HTTP bearer schemes (``Authorization: Bearer``) and ``apiKey`` schemes ``in: header``; the
    rest (OAuth flows, cookies, query keys) are outside what the suite can exercise with one key.
    """
    schemes = document.get("components", {}).get("securitySchemes", {})
    return {
        name: scheme
        for name, scheme in schemes.items()
        if isinstance(scheme, Mapping)
        and (
            (scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "bearer")
            or (scheme.get("type") == "apiKey" and scheme.get("in") == "header")
        )
    }


def credential_headers(scheme: Mapping[str, Any], key: str) -> dict[str, str]:
    """The header that carries ``key`` in ``scheme`` (one of :func:`header_schemes`)."""
    if scheme.get("type") == "http":
        return {"Authorization": f"Bearer {key}"}
    return {str(scheme["name"]): key}


def check_rejected(requirement_id: str, response: ResponseLike, what: str) -> list[Finding]:
    """AUTH-MISSING-KEY / AUTH-WRONG-KEY: the request was refused with 401."""
    if response.status == _REJECTED:
        return []
    return [
        Finding(
            requirement_id,
            f"{what} was answered {response.status}, not {_REJECTED}.",
        )
    ]


def check_not_served(requirement_id: str, response: ResponseLike, what: str) -> list[Finding]:
    """AUTH-MISSING-KEY / AUTH-WRONG-KEY on a method the path does not document: never a 2xx.

    Whether such a request is refused for its key (401) or for its method (405) is the
    contract's choice of order; answering it is a way around the keys either way.
    """
    if response.status is None or not 200 <= response.status < 300:
        return []
    return [
        Finding(
            requirement_id,
            f"{what} was answered {response.status}: a method the keys do not guard.",
        )
    ]


def check_accepted(response: ResponseLike, scheme_name: str) -> list[Finding]:
    """AUTH-SCHEMES: a request with the valid key in ``scheme_name`` was not refused."""
    if response.status is not None and 200 <= response.status < 300:
        return []
    return [
        Finding(
            "AUTH-SCHEMES",
            f"a request carrying the valid key in scheme {scheme_name!r} was answered "
            f"{response.status}, not a 2xx.",
        )
    ]
