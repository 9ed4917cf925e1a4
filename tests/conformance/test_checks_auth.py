"""The authentication checks, and reading header schemes from the spec."""

from __future__ import annotations

import spec
from conformance.checks.auth import (
    check_accepted,
    check_not_served,
    check_rejected,
    credential_headers,
    header_schemes,
)
from conformance.exchange import Exchange, RequestSpec


def answer(status: int) -> Exchange:
    return Exchange(RequestSpec("GET", "/v1/models"), status, [], b"{}")


def test_the_spec_declares_three_header_schemes() -> None:
    schemes = header_schemes(spec.load())
    assert set(schemes) == {"bearerAuth", "chApiKey", "samwise"}
    headers = [credential_headers(scheme, "k") for scheme in schemes.values()]
    assert {"Authorization": "Bearer k"} in headers
    assert {"CH-API-KEY": "k"} in headers
    assert {"samwise": "k"} in headers


def test_non_header_schemes_are_left_out() -> None:
    document = {
        "components": {
            "securitySchemes": {
                "cookie": {"type": "apiKey", "in": "cookie", "name": "c"},
                "basic": {"type": "http", "scheme": "basic"},
                "oauth": {"type": "oauth2", "flows": {}},
            }
        }
    }
    assert header_schemes(document) == {}


def test_rejected_and_accepted() -> None:
    assert check_rejected("AUTH-MISSING-KEY", answer(401), "x") == []
    (finding,) = check_rejected("AUTH-MISSING-KEY", answer(200), "a request without a key")
    assert finding.requirement_id == "AUTH-MISSING-KEY" and "200, not 401" in finding.message
    assert check_accepted(answer(200), "samwise") == []
    assert "'samwise'" in check_accepted(answer(401), "samwise")[0].message


def test_an_undocumented_method_may_be_refused_for_its_key_or_its_method() -> None:
    assert check_not_served("AUTH-MISSING-KEY", answer(401), "a HEAD") == []
    assert check_not_served("AUTH-MISSING-KEY", answer(405), "a HEAD") == []
    [finding] = check_not_served("AUTH-MISSING-KEY", answer(200), "a request without a key by HEAD")
    assert finding.requirement_id == "AUTH-MISSING-KEY"
    assert "by HEAD was answered 200" in finding.message
