"""DESIGN.md's error codes: an expected failure is an answer, never a crash or a retry."""

from __future__ import annotations

from typing import Any, TypeVar

_E = TypeVar("_E", bound=BaseException)

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
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "idempotency_key_reused": 422,
    "refund_exceeds_amount": 422,
    "internal_error": 500,
    "stripe_error": 502,
    "service_unavailable": 503,
    # Stripe may have acted and the service cannot tell yet: retry with the same key, never with a new one.
    "outcome_unknown": 503,
    "timeout": 504,
}

# Answers that tell the caller to send the same request again later: never stored as a key's outcome, or the retry
# they invite would replay them for good (a 409 "in progress" after the payment succeeded).
RETRY_CODES = frozenset({"idempotency_key_in_use", "rate_limited", "service_unavailable", "outcome_unknown", "timeout"})


def _restore(cls: type[_E], args: tuple[Any, ...], state: dict[str, Any]) -> _E:
    """An exception as it was pickled: its args and attributes set back, its constructor not run again."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class PicklableError(Exception):
    """An exception that survives pickling whatever its constructor takes: Celery pickles a task's error to log
    and store it (celery.utils.serialization), and the default reduce calls `cls(*args)`, which our constructors
    refuse, so the log showed an UnpickleableExceptionWrapper instead of the error."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self.args, dict(self.__dict__))


class OperationError(PicklableError):
    """An expected failure, carried to the caller as `{"error": {code, message, status, details}}`."""

    def __init__(
        self, code: str, message: str, details: dict[str, Any] | None = None, *, retry_later: bool = False
    ) -> None:
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_later = retry_later  # a refusal for now (another operation is running), not the request's answer

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]

    @property
    def says_retry(self) -> bool:
        """The answer tells the caller to retry the same request later: it is never the key's final answer."""
        return self.retry_later or self.code in RETRY_CODES

    def to_error(self) -> dict[str, Any]:
        """The `error` object of the REST body and of the Kafka envelope."""
        return {"code": self.code, "message": self.message, "status": self.status, "details": self.details}


class TransientError(PicklableError):
    """A failure worth retrying with the same idempotency key: network, 5xx, 409 lock, 429, database gone."""

    def __init__(self, message: str, *, code: str = "service_unavailable") -> None:
        super().__init__(message)
        self.code = code


class PaceExceeded(TransientError):
    """Stripe's shared rate budget has no slot for this call within its wait budget (stripe_pacing.py): nothing was
    sent. The task goes back to the queue for about `retry_after_s`, spending none of its failure retries."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("Stripe's rate budget is taken for now; nothing was sent.", code="rate_limited")
        self.retry_after_s = retry_after_s


class StripeMayHaveActed(TransientError):
    """Stripe answered 5xx, or refused our key with other parameters: it may have acted on the request.

    Never retried under the same key (Stripe replays a saved 5xx for 24 h): the object is looked up first.
    `should_retry` is Stripe's `Stripe-Should-Retry` header (True: it did not act; False: do not repeat it).
    """

    def __init__(self, message: str, *, kind: str, should_retry: bool | None) -> None:
        super().__init__(message, code="stripe_error")
        self.kind = kind  # "server_error" or "idempotency_error"
        self.should_retry = should_retry


def not_found(kind: str, ident: str) -> OperationError:
    return OperationError("not_found", f"No {kind} with id {ident!r}.", {"id": ident})
