"""One JSON error shape for every service: ``{"error": code, "message": text, "details": {...}}``.

Handlers raise :class:`ApiError` (or a werkzeug HTTPException, e.g. 413 from the body limit);
:func:`register_error_handlers` turns either into the shape with the right status code. Any other
exception is logged with its traceback and answered as a bare 500 with a request id: a stack
trace never leaves the process.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: werkzeug status -> our error code, for errors raised outside our handlers (routing, limits).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered to the client; ``details`` must be JSON-serialisable."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "bad_request", message, details)


def unauthorized(message: str) -> ApiError:
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="alertflow"'}
    )


def forbidden(message: str, **details: Any) -> ApiError:
    return ApiError(403, "forbidden", message, details)


def not_found(message: str, **details: Any) -> ApiError:
    return ApiError(404, "not_found", message, details)


def conflict(message: str, **details: Any) -> ApiError:
    return ApiError(409, "conflict", message, details)


def too_large(message: str, **details: Any) -> ApiError:
    return ApiError(413, "payload_too_large", message, details)


def unsupported_media_type(message: str, **details: Any) -> ApiError:
    return ApiError(415, "unsupported_media_type", message, details)


def validation_failed(message: str, issues: list[dict[str, Any]], **details: Any) -> ApiError:
    return ApiError(422, "validation_failed", message, {"issues": issues, **details})


def unavailable(message: str, **details: Any) -> ApiError:
    return ApiError(503, "unavailable", message, details)


def error_response(
    status: int, error: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    response = jsonify({"error": error, "message": message, "details": details or {}})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        response = error_response(err.status, err.error, err.message, err.details)
        response.headers.update(err.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        response = error_response(
            status, _HTTP_CODES.get(status, "http_error"), err.description or err.name
        )
        if status == 405 and err.response is None:
            allowed = getattr(err, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        request_id = uuid.uuid4().hex
        log.exception("unhandled error (request %s)", request_id, exc_info=err)
        return error_response(
            500,
            "internal",
            "internal error; the server log has the details",
            {"request_id": request_id},
        )
