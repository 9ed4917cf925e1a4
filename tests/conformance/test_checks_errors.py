"""The error checks on synthetic answers: status rules and the body-shape rule, kept apart."""

from __future__ import annotations

import json
from typing import Any

import pytest

import spec
from conformance.checks.errors import (
    check_error_body,
    check_refused_before_stream,
    expect_allow,
    expect_status,
    expect_validation_error,
    parse_allow,
)
from conformance.exchange import Exchange, RequestSpec

CONTRACT = spec.contract()
CHAT = CONTRACT.operation("createChatCompletion")


def answer(status: int, body: Any, **headers: str) -> Exchange:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    pairs = [("content-type", "application/json"), *headers.items()]
    return Exchange(RequestSpec("POST", "/v1/chat/completions"), status, pairs, raw)


VALIDATION = {"detail": [{"loc": ["body", "messages"], "msg": "Field required", "type": "missing"}]}


def test_expect_status() -> None:
    assert expect_status("ERR-UNKNOWN-ROUTE", answer(404, {}), 404, "x") == []
    (finding,) = expect_status(
        "ERR-UNKNOWN-ROUTE", answer(200, {"ok": 1}), 404, "a path outside the spec"
    )
    assert finding.requirement_id == "ERR-UNKNOWN-ROUTE"
    assert "answered 200, not 404" in finding.message and '{"ok": 1}' in finding.message
    assert expect_status("R-X", answer(429, {}), [400, 429], "x") == []


def test_expect_validation_error_checks_status_and_loc() -> None:
    assert (
        expect_validation_error("ERR-MISSING-FIELD", answer(422, VALIDATION), ("body",), "x") == []
    )
    (wrong_status,) = expect_validation_error(
        "ERR-MISSING-FIELD", answer(400, VALIDATION), ("body",), "x"
    )
    assert "not 422" in wrong_status.message
    path = {"detail": [{"loc": ["path", "model"], "msg": "bad", "type": "enum"}]}
    assert (
        expect_validation_error("ERR-PATH-MODEL", answer(422, path), ("path", "model"), "x") == []
    )
    (wrong_loc,) = expect_validation_error(
        "ERR-PATH-MODEL", answer(422, VALIDATION), ("path", "model"), "x"
    )
    assert "['path', 'model']" in wrong_loc.message


def test_a_422_in_the_wrong_shape_is_left_to_the_body_rule() -> None:
    assert (
        expect_validation_error("ERR-MISSING-FIELD", answer(422, {"message": "no"}), ("body",), "x")
        == []
    )


@pytest.mark.parametrize(
    ("allow", "fails"),
    [("POST", False), ("post", False), ("GET, POST", True), (None, True), ("", True)],
)
def test_expect_allow(allow: str | None, fails: bool) -> None:
    headers = {"allow": allow} if allow is not None else {}
    findings = expect_allow(
        "ERR-METHOD-405", answer(405, {}, **headers), ["POST"], "DELETE on /v1/x"
    )
    assert bool(findings) is fails


def test_parse_allow() -> None:
    assert parse_allow("GET, post ,HEAD") == {"GET", "POST", "HEAD"}
    assert parse_allow(None) == set()


def _validator(status: int) -> Any:
    return CONTRACT.response_validator(CHAT, status)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (422, VALIDATION),
        (404, {"error": "model 'x' is not served here", "errorCode": 404, "code": 404}),
        (405, {"error": "no", "errorCode": 405, "code": 405}),
        (
            500,
            {
                "error": "UNKNOWN",
                "message": "m",
                "type": "server_error",
                "code": "",
                "errorCode": 500,
                "param": None,
            },
        ),
    ],
)
def test_well_shaped_error_bodies_pass(status: int, body: Any) -> None:
    assert check_error_body(answer(status, body), _validator(status), "x") == []


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (404, {"message": "not found"}, "does not match"),
        (404, {"error": "e", "errorCode": 400, "code": 400}, "does not match"),
        (422, {"detail": "bad"}, "does not match"),
        (404, b"<html>Not Found</html>", "not JSON"),
    ],
)
def test_badly_shaped_error_bodies_fail(status: int, body: Any, words: str) -> None:
    (finding,) = check_error_body(answer(status, body), _validator(status), "a request")
    assert finding.requirement_id == "ERR-BODY-SHAPE"
    assert words in finding.message


def test_error_code_must_equal_the_status_even_without_a_schema() -> None:
    (finding,) = check_error_body(
        answer(418, {"error": "e", "errorCode": 400, "code": 400}), None, "x"
    )
    assert "errorCode 400" in finding.message
    assert check_error_body(answer(200, b"not json"), None, "x") == []


def test_refused_before_stream_keeps_its_status_and_json() -> None:
    refused = answer(422, VALIDATION)
    assert check_refused_before_stream(422, refused, "application/json", "n of 99") == []
    in_a_stream = Exchange(
        RequestSpec("POST", "/v1/chat/completions"),
        200,
        [("content-type", "text/event-stream")],
        b'data: {"error": "bad"}\n\ndata: [DONE]\n\n',
    )
    (finding,) = check_refused_before_stream(422, in_a_stream, "text/event-stream", "n of 99")
    assert finding.requirement_id == "ERR-BEFORE-STREAM"
    assert 'n of 99, sent with "stream": true, was answered 200, not 422' in finding.message
    assert "not 'application/json'" in finding.message
    (other,) = check_refused_before_stream(404, refused, "application/json", "x")
    assert "answered 422, not 404" in other.message
