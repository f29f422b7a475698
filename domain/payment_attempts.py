"""Payment attempts: every confirm and capture of an intent is one, numbered per intent, with how it ended."""

from __future__ import annotations

import datetime as dt
from typing import Any

from peewee import fn

from domain.intent_state import attempt_status_for
from errors import OperationError
from models import PaymentAttempt, PaymentIntent, statements, utcnow
from observability.metrics import PAYMENT_ATTEMPTS

OPEN = ("processing", "requires_action")
# How an attempt ends (the failure rate's numerator and denominator, deploy/prometheus-alerts.yml).
ENDED = ("succeeded", "failed")
# An attempt still open this long after it was made is not "in progress" any more (its worker is gone).
STALE_AFTER = dt.timedelta(minutes=10)


def open_attempt(
    intent: PaymentIntent,
    attempt_id: str,
    operation: str,
    *,
    payment_method_id: str | None = None,
    amount: int | None = None,
    retry_of: str | None = None,
) -> PaymentAttempt:
    """A new attempt of `operation` on the intent; call inside the transaction that holds the intent's row lock."""
    last = PaymentAttempt.select(fn.MAX(PaymentAttempt.attempt_number)).where(
        PaymentAttempt.payment_intent_id == intent.id
    )
    return PaymentAttempt.create(
        id=attempt_id,
        payment_intent_id=intent.id,
        attempt_number=(last.scalar() or 0) + 1,
        operation=operation,
        status="processing",
        payment_method_id=payment_method_id,
        amount=amount,
        retry_of=retry_of,
    )


def refuse_if_another_is_running(intent: PaymentIntent, operation: str) -> None:
    """One confirm or capture of an intent at a time (each with its own key): the other is told to wait."""
    running = PaymentAttempt.select().where(
        PaymentAttempt.payment_intent_id == intent.id,
        PaymentAttempt.operation == operation,
        PaymentAttempt.status == "processing",
        PaymentAttempt.created_at > utcnow() - STALE_AFTER,
    )
    if running.exists():
        raise OperationError(
            "invalid_state",
            f"Another {operation} of this payment is in progress; retry shortly.",
            {"status": intent.status},
            retry_later=True,
        )


def _outcome(intent: PaymentIntent, error: dict[str, Any] | None) -> dict[str, Any]:
    """How an attempt ended, from the intent Stripe answered (and Stripe's error, if it refused)."""
    status = "failed" if error else attempt_status_for(intent.status)
    failure = error or (intent.last_payment_error if status == "failed" else None) or {}
    return {
        "status": status,
        "error_code": failure.get("code") or (status == "failed" and intent.status) or None,
        "error_message": (failure.get("message") or "")[:500] or None,
    }


def _count_if_ended(attempt: PaymentAttempt, before: str | None) -> None:
    if attempt.status in ENDED and attempt.status != before:
        PAYMENT_ATTEMPTS.labels(attempt.operation, attempt.status).inc()


def settle(attempt: PaymentAttempt, intent: PaymentIntent, error: dict[str, Any] | None = None) -> PaymentAttempt:
    """Record how the attempt ended, from the intent Stripe answered (and Stripe's error, if it refused)."""
    before = attempt.status
    for name, value in _outcome(intent, error).items():
        setattr(attempt, name, value)
    attempt.updated_at = utcnow()
    attempt.save()
    _count_if_ended(attempt, before)
    return attempt


def record_first(
    intent: PaymentIntent,
    attempt_id: str,
    operation: str,
    *,
    payment_method_id: str | None,
    error: dict[str, Any] | None,
) -> PaymentAttempt:
    """The first attempt of an intent created in this same transaction, already ended: one insert (number 1, as
    nothing can precede it), not an open attempt settled at once."""
    attempt = PaymentAttempt(
        id=attempt_id,
        payment_intent_id=intent.id,
        attempt_number=1,
        operation=operation,
        payment_method_id=payment_method_id,
        **_outcome(intent, error),
    )
    statements.insert([attempt])
    _count_if_ended(attempt, None)
    return attempt


def payment_failed(attempt: PaymentAttempt, intent: PaymentIntent, error: dict[str, Any] | None = None) -> bool:
    """The attempt ended because the payment failed (a decline: the intent wants another payment method), not
    because the request was refused: what `failed-payment` announces, once per attempt."""
    return (
        attempt.status == "failed"
        and intent.status == "requires_payment_method"
        and bool(intent.last_payment_error)
        and (error is None or error.get("code") == "card_declined")
    )


def settle_open_attempts(intent: PaymentIntent) -> str | None:
    """An event or a sync moved the intent: the attempt it was waiting on (3-D Secure, processing) ends with it.
    Returns the attempt whose payment failed with it, if one did (its failure is announced under its id)."""
    waiting = PaymentAttempt.select().where(
        PaymentAttempt.payment_intent_id == intent.id, PaymentAttempt.status.in_(OPEN)
    )
    failed = None
    for attempt in waiting.order_by(PaymentAttempt.attempt_number):
        if attempt_status_for(intent.status) != attempt.status:
            settle(attempt, intent)
            failed = attempt.id if payment_failed(attempt, intent) else failed
    return failed


def summary(attempt: PaymentAttempt) -> dict[str, Any]:
    """What retry-payment-attempt answers: the new attempt and how it stands."""
    return {
        "attemptId": attempt.id,
        "paymentIntentId": attempt.payment_intent_id,
        "attemptNumber": attempt.attempt_number,
        "operation": attempt.operation,
        "status": attempt.status,
        "errorCode": attempt.error_code,
        "errorMessage": attempt.error_message,
        "retryOf": attempt.retry_of,
    }
