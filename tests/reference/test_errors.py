from __future__ import annotations

import logging

import falcon
import falcon.asgi
import pytest
from falcon import testing

from reference import errors
from tests.reference._http import CONTRACT, assert_conforms

ANY_OP = CONTRACT.operation("createChatCompletion")


class Raiser:
    """A resource that raises whatever the test put in `error`."""

    def __init__(self) -> None:
        self.error: BaseException = RuntimeError("boom: secret internals")

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        raise self.error


@pytest.fixture
def raiser() -> Raiser:
    return Raiser()


@pytest.fixture
def bare(raiser: Raiser) -> testing.TestClient:
    app = falcon.asgi.App()
    errors.install(app)
    app.add_route("/raise", raiser)
    return testing.TestClient(app)


def raised(
    bare: testing.TestClient, raiser: Raiser, error: Exception, status: int
) -> testing.Result:
    """The answer to a request whose responder raises ``error``: ``status``, as JSON."""
    raiser.error = error
    result = bare.simulate_get("/raise")
    assert result.status_code == status
    assert result.headers["content-type"] == "application/json"
    return result


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.bad_request("'best_of' must be at least 'n'"), 400),
        (errors.unauthorized(), 401),
        (errors.forbidden("mixtral"), 403),
        (errors.model_not_served("gpt-9"), 404),
        (errors.route_not_found("GET", "/x"), 404),
        (errors.method_not_allowed("DELETE", "/v1/models", ["GET"]), 405),
        (errors.queue_full(3), 429),
        (
            errors.RequestValidationError.single(["body", "n"], "Input should be ...", "int_type"),
            422,
        ),
        (errors.APIError(500, "the model failed"), 500),
    ],
)
def test_our_errors_leave_in_the_seed_shape(
    bare: testing.TestClient, raiser: Raiser, error: errors.APIError, status: int
) -> None:
    result = raised(bare, raiser, error, status)
    lowered = {k.lower(): v for k, v in result.headers.items()}
    assert_conforms(ANY_OP, status, "application/json", result.json, lowered)
    if status not in (422, 500):
        assert result.json["errorCode"] == result.json["code"] == status


def test_retry_after_and_allow_headers(bare: testing.TestClient, raiser: Raiser) -> None:
    raiser.error = errors.queue_full(0)
    assert bare.simulate_get("/raise").headers["retry-after"] == "1"  # never "come back now"
    raiser.error = errors.method_not_allowed("PUT", "/v1/models", ["GET", "POST"])
    assert bare.simulate_get("/raise").headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (falcon.HTTPNotFound(), 404),
        (falcon.HTTPBadRequest(title="bad", description="media"), 400),
        (falcon.HTTPUnsupportedMediaType(), 415),
        (falcon.HTTPContentTooLarge(), 413),
        (falcon.HTTPUnprocessableEntity(), 422),
        (falcon.HTTPServiceUnavailable(), 503),
    ],
)
def test_falcon_errors_leave_in_the_seed_shape(
    bare: testing.TestClient, raiser: Raiser, error: falcon.HTTPError, status: int
) -> None:
    body = raised(bare, raiser, error, status).json
    if status == 422:
        assert_conforms(ANY_OP, 422, "application/json", body)
    elif status >= 500:
        assert_conforms(ANY_OP, 500, "application/json", body)
        assert body["errorCode"] == 500
    else:
        assert set(body) == {"error", "errorCode", "code"}
        assert body["errorCode"] == body["code"] == status


def test_falcon_method_not_allowed_keeps_allow(bare: testing.TestClient) -> None:
    result = bare.simulate_post("/raise")
    assert result.status_code == 405
    assert "GET" in result.headers["allow"].split(", ")
    assert set(result.json) == {"error", "errorCode", "code"}


def test_unexpected_errors_are_logged_not_sent(
    bare: testing.TestClient, raiser: Raiser, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="mimic.reference"):
        result = bare.simulate_get("/raise")
    assert result.status_code == 500
    assert_conforms(ANY_OP, 500, "application/json", result.json)
    assert "secret internals" not in result.text
    assert "Traceback" not in result.text
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


def test_validation_error_needs_detail() -> None:
    with pytest.raises(ValueError, match="at least one"):
        errors.RequestValidationError([])
