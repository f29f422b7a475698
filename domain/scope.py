"""A customer-scoped caller (a browser's Socket.IO token) acts only on its own customer's records.

Checked in the task, before the operation runs, from the records themselves: a record of another customer is
answered exactly as one that does not exist (`not_found`), so a token tells nothing about other customers."""

from __future__ import annotations

from typing import Any

from domain.errors import OperationError
from models import PaymentAttempt, PaymentIntent, PaymentMethod, Refund

# Operations a customer token may never run, whatever the record: those that give money back or take back a hold
# (a refund, a capture of less than authorised, a cancel) are the merchant's, and Stripe's webhooks the service's.
SERVER_ONLY = {"process-stripe-webhook", "create-refund", "capture-payment-intent", "cancel-payment-intent"}


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
    """Raise not_found unless every record the input names is `customer_id`'s (and the operation is one a customer
    may run at all)."""
    if operation in SERVER_ONLY:
        raise OperationError("forbidden", "This operation is the merchant's: a customer token cannot run it.")
    found = owners(inp)
    if not found or any(owner != customer_id for owner in found):
        raise _hidden()
