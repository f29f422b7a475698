"""A customer-scoped caller (a browser's Socket.IO token) acts only on its own customer's records.

Checked in the task, before the operation runs, from the records themselves: a record of another customer is
answered exactly as one that does not exist (`not_found`), so a token tells nothing about other customers."""

from __future__ import annotations

from typing import Any

from errors import OperationError
from models import PaymentAttempt, PaymentIntent, PaymentMethod, Refund
from registry import OPERATIONS

RETRY = "retry-payment-attempt"
# What a retry runs again, by its attempt's operation: a retry is a caller's only where that operation is.
RETRIED_AS = {"confirm": "confirm-payment-intent", "capture": "capture-payment-intent"}


def merchant_only(operation: str) -> bool:
    """Whether a customer token may never run `operation` (the registry says; an unknown one never)."""
    known = OPERATIONS.get(operation)
    return known is None or known.merchant_only


def _forbidden() -> OperationError:
    return OperationError("forbidden", "This operation is the merchant's: a customer token cannot run it.")


def _hidden() -> OperationError:
    return OperationError("not_found", "No record has this id.")


def _intent_customer(payment_intent_id: str) -> str | None:
    column = PaymentIntent.stripe_payment_intent_id if payment_intent_id.startswith("pi_") else PaymentIntent.id
    intent = PaymentIntent.select(PaymentIntent.customer_id).where(column == payment_intent_id).first()
    return intent.customer_id if intent else None


def owners(inp: Any) -> list[str | None]:
    """The customers the records an input names belong to (None: no such record)."""
    found: list[str | None] = []
    if getattr(inp, "customer_id", None) is not None:
        found.append(inp.customer_id)
    if getattr(inp, "payment_intent_id", None) is not None:
        found.append(_intent_customer(inp.payment_intent_id))
    if getattr(inp, "refund_id", None) is not None:
        refund = Refund.get_or_none(Refund.id == inp.refund_id)
        found.append(_intent_customer(refund.payment_intent_id) if refund else None)
    if getattr(inp, "payment_method_id", None) is not None:
        method = PaymentMethod.get_or_none(PaymentMethod.id == inp.payment_method_id)
        found.append(method.customer_id if method else None)
    if getattr(inp, "attempt_id", None) is not None:
        attempt = PaymentAttempt.get_or_none(PaymentAttempt.id == inp.attempt_id)
        found.append(_intent_customer(attempt.payment_intent_id) if attempt else None)
    return found


def check_scope(operation: str, inp: Any, customer_id: str) -> None:
    """Raise not_found unless every record the input names is `customer_id`'s, and forbidden unless the operation is
    one a customer may run at all (a retry: unless its attempt's own operation is)."""
    if merchant_only(operation):
        raise _forbidden()
    found = owners(inp)
    if not found or any(owner != customer_id for owner in found):
        raise _hidden()
    if operation == RETRY:
        # Checked once the attempt is known to be the caller's: another's is `not_found`, never `forbidden`.
        attempt = PaymentAttempt.get_by_id(inp.attempt_id)
        if merchant_only(RETRIED_AS.get(attempt.operation, "")):
            raise _forbidden()
