"""DESIGN.md's error codes: an expected failure is an answer, never a crash or a retry."""

from __future__ import annotations

from typing import Any

STATUS_BY_CODE = {
    "validation_error": 400,
    "invalid_signature": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "card_declined": 402,
    "not_found": 404,
    "method_not_allowed": 405,
    "idempotency_key_in_use": 409,
    "invalid_state": 409,
    "payload_too_large": 413,
    "idempotency_key_reused": 422,
    "refund_exceeds_amount": 422,
    "internal_error": 500,
    "stripe_error": 502,
    "service_unavailable": 503,
    "timeout": 504,
}


class OperationError(Exception):
    """An expected failure, carried to the caller as `{"error": {code, message, status, details}}`."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]

    def to_error(self) -> dict[str, Any]:
        """The `error` object of the REST body and of the Kafka envelope."""
        return {"code": self.code, "message": self.message, "status": self.status, "details": self.details}


class TransientError(Exception):
    """A failure worth retrying with the same idempotency key: network, 5xx, 409 lock, 429, database gone."""

    def __init__(self, message: str, *, code: str = "service_unavailable") -> None:
        super().__init__(message)
        self.code = code


def not_found(kind: str, ident: str) -> OperationError:
    return OperationError("not_found", f"No {kind} with id {ident!r}.", {"id": ident})
