"""What the platform reads in an answer, added beside ours (answers are supersets: nothing of ours changes).

The platform (GitHub jazzyrana29/vyarna-copy) reads its original service's field names: the gateway resolves on a
truthy `response`, the web app reads `paymentIntentId`, `clientSecret`, `success`… Applied by every door to every answer
of an operation, a replayed one too (REST and Socket.IO as they answer, Kafka as the worker writes the reply); what
a task returns and stores stays in our dialect alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from models import currency_data as currencies

Widen = Callable[[dict[str, Any]], dict[str, Any]]


def amount_unit(currency: str) -> str:
    """The platform's `amountUnit`: `cents` where the minor unit is a hundredth, else Stripe's smallest unit."""
    return "cents" if currencies.exponent(currency) == 2 else "minor_units"


# The confirm answer's `success`: the payment went through, or is only waiting for its capture or the browser.
CONFIRM_SUCCEEDED = ("succeeded", "requires_capture", "requires_action")


def _intent(answer: dict[str, Any]) -> dict[str, Any]:
    # The original service's PaymentIntentDto names beside ours.
    return {
        "paymentIntentId": answer.get("id"),
        "amountCents": answer.get("amount"),
        "externalId": answer.get("stripePaymentIntentId"),
        **answer,
    }


# What only a create answers (the platform's PaymentIntentCreatedDto), beside the intent every answer carries.
CREATED_ONLY = ("success", "totalAmount", "originalAmount", "amountUnit", "appliedCoupons")


def _created_intent(answer: dict[str, Any]) -> dict[str, Any]:
    # PaymentIntentCreatedDto: coupons are not supported here (README), so the total is the original amount.
    return _intent(
        {
            "success": True,
            "totalAmount": answer.get("amount"),
            "originalAmount": answer.get("amount"),
            "amountUnit": amount_unit(str(answer.get("currency") or "usd")),
            "appliedCoupons": [],
            **answer,
        }
    )


def _confirmed_intent(answer: dict[str, Any]) -> dict[str, Any]:
    # ConfirmedPaymentIntentDto: what the web app reads after Stripe.js or our confirm.
    error = answer.get("lastPaymentError") or {}
    status = answer.get("status")
    return _intent(
        {
            "success": status in CONFIRM_SUCCEEDED,
            "requiresAction": status == "requires_action",
            "errorCode": error.get("code"),
            "errorMessage": error.get("message"),
            **answer,
        }
    )


def _latest_attempt(answer: dict[str, Any]) -> dict[str, Any]:
    attempts = answer.get("attempts") or []
    return attempts[-1] if attempts else {}


def _captured_intent(answer: dict[str, Any]) -> dict[str, Any]:
    # The original service answered capture with its attempt: `attemptId`, `nextRetryAt` (no retry is planned).
    return _intent({"attemptId": _latest_attempt(answer).get("attemptId"), "nextRetryAt": None, **answer})


def _retried_attempt(answer: dict[str, Any]) -> dict[str, Any]:
    # A retry is run at once, never scheduled: nothing is planned after it.
    return {"nextRetryAt": None, **answer}


def _refund(answer: dict[str, Any]) -> dict[str, Any]:
    # RefundDto's names beside ours.
    return {
        "refundId": answer.get("id"),
        "amountCents": answer.get("amount"),
        "externalId": answer.get("stripeRefundId"),
        **answer,
    }


def _payment_method(answer: dict[str, Any]) -> dict[str, Any]:
    # PaymentMethodDto's names beside ours.
    return {
        "paymentMethodId": answer.get("id"),
        "personId": answer.get("customerId"),
        "externalId": answer.get("stripePaymentMethodId"),
        **answer,
    }


def _history(answer: Any) -> Any:
    return [_intent(snapshot) for snapshot in answer] if isinstance(answer, list) else answer


def _page_of(record: Widen) -> Widen:
    """A list's page, each of its records widened as its own answer would be."""
    return lambda answer: {**answer, "data": [record(item) for item in answer.get("data") or []]}


WIDENERS: dict[str, Widen] = {
    "create-payment-intent": _created_intent,
    "get-payment-intent": _intent,
    "confirm-payment-intent": _confirmed_intent,
    "capture-payment-intent": _captured_intent,
    "cancel-payment-intent": _intent,
    "list-payment-intents": _page_of(_intent),
    "retry-payment-attempt": _retried_attempt,
    "create-refund": _refund,
    "get-refund": _refund,
    "list-refunds": _page_of(_refund),
    "create-payment-method": _payment_method,
    "list-payment-methods": _page_of(_payment_method),
}


def widen_envelope(operation: str, envelope: dict[str, Any]) -> dict[str, Any]:
    """A task's envelope as a door answers it to the platform: its `response` widened, an error as it is."""
    if "response" not in envelope:
        return envelope
    return {**envelope, "response": widen(operation, envelope["response"])}


def widen(operation: str, answer: Any) -> Any:
    """`answer` with the platform's fields added (ours win where a name is shared)."""
    if operation == "get-ztracking-payment-intent":
        return _history(answer)
    widener = WIDENERS.get(operation)
    if widener is None or not isinstance(answer, dict):
        return answer
    return widener(answer)
