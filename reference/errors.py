"""Every error leaves in the seed's body shape for its status, whatever raised it.

The seed documents three bodies: `{"detail": [...]}` for 422 (FastAPI's validation error),
`{"error", "message", "type", "code", "errorCode": 500, "param"}` for 500, and
`{"error", "errorCode", "code"}` for every other status. `install(app)` registers Falcon error
handlers so that our own `APIError`s, Falcon's `HTTPError`s (its 404, 405, media errors) and any
unexpected exception all leave in those shapes, as `application/json`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import falcon
import falcon.asgi

__all__ = [
    "APIError",
    "RequestValidationError",
    "bad_request",
    "error_body",
    "forbidden",
    "install",
    "internal_error_body",
    "method_not_allowed",
    "model_not_served",
    "queue_full",
    "route_not_found",
    "unauthorized",
]

logger = logging.getLogger("mimic.reference")


def error_body(status: int, message: str) -> dict[str, Any]:
    """The seed's body for every status but 422 and 500."""
    return {"error": message, "errorCode": status, "code": status}


def internal_error_body(message: str = "the server failed to handle the request") -> dict[str, Any]:
    """The seed's 500 body; also the one error event of a stream that fails after its 200."""
    return {
        "error": "internal_error",
        "message": message,
        "type": "server_error",
        "code": "",
        "errorCode": 500,
        "param": None,
    }


class APIError(Exception):
    """An error with a status, a message and headers; it leaves as the seed's body."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The response body for this error."""
        if self.status >= 500:
            return internal_error_body(self.message)
        return error_body(self.status, self.message)


class RequestValidationError(APIError):
    """422: the request does not match the contract; `detail` is FastAPI's list of items."""

    def __init__(self, detail: Sequence[Mapping[str, Any]]) -> None:
        if not detail:
            raise ValueError("a validation error needs at least one detail item")
        super().__init__(422, "; ".join(str(item["msg"]) for item in detail))
        self.detail = [dict(item) for item in detail]

    @classmethod
    def single(cls, loc: Sequence[str | int], msg: str, type_: str) -> RequestValidationError:
        """A validation error with one detail item."""
        return cls([{"loc": list(loc), "msg": msg, "type": type_}])

    def body(self) -> dict[str, Any]:
        """`{"detail": [...]}`."""
        return {"detail": self.detail}


def bad_request(message: str) -> APIError:
    """400: the request matches the contract but cannot be served; `message` names the field."""
    return APIError(400, message)


def unauthorized() -> APIError:
    """401: keys are configured and the request carries none the server knows."""
    return APIError(401, "missing or unknown API key")


def forbidden(model: str) -> APIError:
    """403: the key is known but may not use `model`."""
    return APIError(403, f"this key may not use model {model!r}")


def route_not_found(method: str, path: str) -> APIError:
    """404: no operation of the contract has this path."""
    return APIError(404, f"no route for {method} {path}")


def model_not_served(model: str) -> APIError:
    """404: a body `model` on `/v1/…` that the server does not serve."""
    return APIError(404, f"model {model!r} is not served here")


def method_not_allowed(method: str, path: str, allowed: Sequence[str]) -> APIError:
    """405: the path exists with other methods, listed in `Allow`."""
    return APIError(
        405,
        f"method {method} is not allowed on {path}",
        headers={"Allow": ", ".join(allowed)},
    )


def queue_full(retry_after: int) -> APIError:
    """429: the model's queue is full; `Retry-After` in whole seconds."""
    return APIError(
        429,
        "request queue is full; retry later",
        headers={"Retry-After": str(max(1, int(retry_after)))},
    )


def _respond(resp: falcon.asgi.Response, status: int, body: Mapping[str, Any]) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.media = body
    # An error after resp.sse was set must not leave as a stream.
    resp.sse = None


async def _handle_api_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: APIError, params: Any
) -> None:
    _respond(resp, error.status, error.body())
    resp.set_headers(error.headers)


async def _handle_http_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: falcon.HTTPError, params: Any
) -> None:
    """Falcon's own errors (route not found, method not allowed, media errors) in the seed shape."""
    status = error.status_code
    message = error.description or error.title or "error"
    if status == 422:
        body = RequestValidationError.single(["body"], message, "value_error").body()
    elif status >= 500:
        body = internal_error_body(message)
    else:
        body = error_body(status, message)
    _respond(resp, status, body)
    resp.set_headers(error.headers or {})


async def _handle_unexpected(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, error: Exception, params: Any
) -> None:
    """A fault of the server: logged with its traceback here, never sent."""
    logger.error("unhandled error in %s %s", req.method, req.path, exc_info=error)
    _respond(resp, 500, internal_error_body())


def install(app: falcon.asgi.App) -> None:
    """Register the handlers; Falcon picks the most specific one by the exception's class."""
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)
    app.add_error_handler(APIError, _handle_api_error)
