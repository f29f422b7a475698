"""Every error as DESIGN.md's body: `{"error": {code, message, details}, "traceId"}` — never HTML or a traceback."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from doors.envelope import IDEMPOTENCY_HEADER
from errors import STATUS_BY_CODE, OperationError

log = logging.getLogger("api")

# When to ask again: a dependency or an unknown outcome (503), a result still coming (504), a limit (429).
RETRY_AFTER_S = {429: 1, 503: 2, 504: 2}

HTTP_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}, "traceId": g.get("trace_id")}
    response = jsonify(body)
    response.status_code = status or STATUS_BY_CODE.get(code, 500)
    if response.status_code in RETRY_AFTER_S:
        response.headers["Retry-After"] = str(RETRY_AFTER_S[response.status_code])
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_envelope_error(error: dict[str, Any]) -> Response:
    """A task's `{"error": {code, message, status, details}}` as the REST body and status."""
    return error_response(error["code"], error["message"], error.get("details"), status=error.get("status"))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(OperationError)
    def _operation_error(exc: OperationError) -> Response:
        key = exc.details.get("idempotencyKey")
        # An unknown outcome or a timeout names the key the caller must retry with, in the header too.
        return error_response(
            exc.code, exc.message, exc.details, headers={IDEMPOTENCY_HEADER: key} if isinstance(key, str) else None
        )

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = HTTP_CODES.get(status, "internal_error" if status >= 500 else "validation_error")
        headers = {}
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # type: ignore[attr-defined]
        messages = {
            404: "No such route.",
            405: "Method not allowed on this route.",
            413: "The request body is larger than 1 MiB.",
            429: "Too many requests. Retry after the time in Retry-After.",
        }
        return error_response(
            code, messages.get(status, exc.description or "Bad request."), status=status, headers=headers
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in the REST door")  # Sentry's logging integration reports it
        return error_response("internal_error", "Internal error.", status=500)
