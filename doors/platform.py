"""The platform's dialect read into ours, at every door (REST, Kafka, Socket.IO) alike.

The platform this service replaces (GitHub jazzyrana29/vyarna-copy: its gateway, web app and order service) sends
its own field names: `amountCents`, a cart of `items` with `customerDetails`, `personId`/`externalId`… Each door
calls `translate` before it validates a request, so the task, its idempotency fingerprint and everything after it
see one dialect only. A request already in ours passes unchanged; a field given in both dialects is left for the
schema to refuse (never silently preferred). What the platform reads in the answers is added by domain/answers.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from domain.personal_data import email_customer_id
from settings import Settings

# The platform's own idempotency field, in the body of its requests (the web app's create may carry one).
IDEMPOTENCY_FIELD = "idempotencyKey"
STRIPE_PAYMENT_METHOD_PREFIX = "pm_"
CAPTURE = "capture-payment-intent"

# (payload, settings, the caller's own customer when a customer token scopes it) → the payload in our dialect
Translator = Callable[[dict[str, Any], Settings, str | None], dict[str, Any]]


def _renamed(payload: dict[str, Any], theirs: str, ours: str) -> None:
    # Both given: left as they are, so the schema refuses the request rather than this module picking one.
    if theirs in payload and ours not in payload:
        payload[ours] = payload.pop(theirs)


def _cart_total(items: Any) -> tuple[int, str] | None:
    """The sum of priceCents * quantity and the first item's currency, when every item is well formed (else, and for a
    cart in several currencies, the schema says what is wrong with it)."""
    if not isinstance(items, list) or not items:
        return None
    total = 0
    for item in items:
        if not isinstance(item, dict):
            return None
        quantity, price, currency = item.get("quantity"), item.get("priceCents"), item.get("currency")
        if not (isinstance(quantity, int) and isinstance(price, int) and isinstance(currency, str)):
            return None
        if isinstance(quantity, bool) or isinstance(price, bool):  # JSON true is no count
            return None
        total += quantity * price
    return total, items[0]["currency"]


def _payer_of_an_order(payload: dict[str, Any]) -> str | None:
    """The PRD's create names an order or subscription, no payer: each is a customer of its own (its intents and
    cards kept together), never merged with another's."""
    for field, kind in (("orderId", "order"), ("subscriptionId", "subscription")):
        value = payload.get(field)
        if isinstance(value, str) and value:
            return f"{kind}:{value}"
    return None


def _create_payment_intent(payload: dict[str, Any], settings: Settings, customer: str | None) -> dict[str, Any]:
    # The PRD's dialect (the order service): amountCents is our amount, and no payer is named.
    if "amountCents" in payload and "customerId" not in payload and "customerDetails" not in payload:
        payer = customer or _payer_of_an_order(payload)
        if payer is not None:
            payload["customerId"] = payer
    _renamed(payload, "amountCents", "amount")
    # The web app's dialect: a cart priced by the caller, and who pays (the platform has no customer id here).
    cart = _cart_total(payload.get("items"))
    if cart is not None:
        payload.setdefault("amount", cart[0])
        payload.setdefault("currency", cart[1])
        # As the original service: the checkout only authorises; the order service captures when the order ships.
        payload.setdefault("captureMethod", "manual")
    details = payload.get("customerDetails")
    email = details.get("email") if isinstance(details, dict) else None
    if "customerId" not in payload and isinstance(email, str) and email.strip():
        # A browser's token names its customer; else the platform knows the person only by e-mail.
        payload["customerId"] = customer or email_customer_id(email)
    return payload


def _confirm_payment_intent(payload: dict[str, Any], settings: Settings, customer: str | None) -> dict[str, Any]:
    # The web app's paymentMethodId is the `pm_…` Stripe.js made in the browser; ours are vypm_….
    method = payload.get("paymentMethodId")
    if isinstance(method, str) and method.startswith(STRIPE_PAYMENT_METHOD_PREFIX):
        _renamed(payload, "paymentMethodId", "stripePaymentMethodId")
    return payload


# The key the platform's Kafka client (libs/ez-utils/src/utils/kafka.ts encodeKafkaMessage) gives every message it
# sends: `<class name>-<Date.now()>-<Math.random()>`, e.g. OrderService-1733457000000-0.90210387.
PLATFORM_MESSAGE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]*-[0-9]{12,14}-(0|0\.[0-9]+|[1-9](\.[0-9]+)?e-[0-9]+)$")


def sent_by_platform(message_key: str | None) -> bool:
    """Whether a Kafka message's key is one the platform's own services make (never one of our callers' keys)."""
    return message_key is not None and PLATFORM_MESSAGE_KEY.fullmatch(message_key) is not None


def _platform_capture(payload: dict[str, Any]) -> dict[str, Any]:
    # The order service fires a capture at every READY_TO_SHIP and reads no answer, each under a new message key;
    # the gateway's REST capture follows its confirm. A repeat of a capture done answers the captured intent.
    if "amountToCapture" not in payload:
        payload.setdefault("ifCaptured", "answer")
    return payload


# The platform's RefundDto reasons; OTHER is no reason Stripe knows, so none is sent.
REFUND_REASONS = {"REQUESTED_BY_CUSTOMER": "requested_by_customer", "FRAUD": "fraudulent", "OTHER": None}


def _create_refund(payload: dict[str, Any], settings: Settings, customer: str | None) -> dict[str, Any]:
    _renamed(payload, "amountCents", "amount")
    reason = payload.get("reason")
    if isinstance(reason, str) and reason in REFUND_REASONS:
        mapped = REFUND_REASONS[reason]
        if mapped is None:
            del payload["reason"]
        else:
            payload["reason"] = mapped
    return payload


# The platform's PaymentMethodDto types, in ours (checked against what Stripe says the method is).
PAYMENT_METHOD_TYPES = {
    "CARD": "card",
    "ACH": "ach",
    "APPLE_PAY": "apple_pay",
    "GOOGLE_PAY": "google_pay",
    "OTHER": "other",
}


def _create_payment_method(payload: dict[str, Any], settings: Settings, customer: str | None) -> dict[str, Any]:
    _renamed(payload, "personId", "customerId")
    _renamed(payload, "externalId", "stripePaymentMethodId")
    _renamed(payload, "isDefault", "setAsDefault")
    kind = payload.get("type")
    if isinstance(kind, str) and kind in PAYMENT_METHOD_TYPES:
        payload["type"] = PAYMENT_METHOD_TYPES[kind]
    if isinstance(payload.get("details"), dict) or payload.get("details", False) is None:
        # The card's facts are read from Stripe, never taken from the caller.
        del payload["details"]
    return payload


def _list_payment_methods(payload: dict[str, Any], settings: Settings, customer: str | None) -> dict[str, Any]:
    _renamed(payload, "personId", "customerId")
    return payload


TRANSLATORS: dict[str, Translator] = {
    "create-payment-intent": _create_payment_intent,
    "confirm-payment-intent": _confirm_payment_intent,
    "create-refund": _create_refund,
    "create-payment-method": _create_payment_method,
    "list-payment-methods": _list_payment_methods,
}


def translate(
    operation: str,
    payload: Any,
    settings: Settings,
    *,
    customer: str | None = None,
    message_key: str | None = None,
) -> Any:
    """The request in our dialect (a copy; the caller's object is not changed). Anything not a JSON object is left
    for the door to refuse. `customer`: the caller's own customer, when a customer token scopes the caller;
    `message_key`: the Kafka message's key (the platform's own services key theirs in one shape)."""
    if not isinstance(payload, dict):
        return payload
    if operation == CAPTURE and sent_by_platform(message_key):
        return _platform_capture(dict(payload))
    translator = TRANSLATORS.get(operation)
    if translator is None:
        return payload
    return translator(dict(payload), settings, customer)


def take_idempotency_key(payload: Any) -> Any:
    """The platform's `idempotencyKey` body field, taken out of the payload (None when absent)."""
    return payload.pop(IDEMPOTENCY_FIELD, None) if isinstance(payload, dict) else None
