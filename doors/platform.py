"""The platform's dialect read into ours, at every door (REST, Kafka, Socket.IO) alike.

The platform this service replaces (GitHub jazzyrana29/vyarna-copy: its gateway, web app and order service) sends
its own field names: `amountCents`, a cart of `items` with `customerDetails`, `personId`/`externalId`… Each door
calls `translate` before it validates a request, so the task, its idempotency fingerprint and everything after it
see one dialect only. A request already in ours passes unchanged; a field given in both dialects is left for the
schema to refuse (never silently preferred). What the platform reads in the answers is added by domain/answers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.personal_data import email_customer_id
from settings import Settings

# The platform's own idempotency field, in the body of its requests (the web app's create may carry one).
IDEMPOTENCY_FIELD = "idempotencyKey"

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


TRANSLATORS: dict[str, Translator] = {
    "create-payment-intent": _create_payment_intent,
}


def translate(operation: str, payload: Any, settings: Settings, *, customer: str | None = None) -> Any:
    """The request in our dialect (a copy; the caller's object is not changed). Anything not a JSON object is left
    for the door to refuse. `customer`: the caller's own customer, when a customer token scopes the caller."""
    translator = TRANSLATORS.get(operation)
    if translator is None or not isinstance(payload, dict):
        return payload
    return translator(dict(payload), settings, customer)


def take_idempotency_key(payload: Any) -> Any:
    """The platform's `idempotencyKey` body field, taken out of the payload (None when absent)."""
    return payload.pop(IDEMPOTENCY_FIELD, None) if isinstance(payload, dict) else None
