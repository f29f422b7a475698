"""Stripe's webhook signature and event shape, checked locally (an HMAC with the endpoint's secret, no call to Stripe):
the REST door checks it before queueing anything, the worker again before applying."""

from __future__ import annotations

import json
from typing import Any

import stripe

from errors import OperationError
from settings import get_settings


def verify_webhook(payload: str, signature: str, *, tolerance_s: int = 300) -> dict[str, Any]:
    """Check the `Stripe-Signature` over the raw payload; raise OperationError('invalid_signature')."""
    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise OperationError("invalid_signature", "No webhook secret is configured; events cannot be verified.")
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance=tolerance_s)
    except stripe.SignatureVerificationError:
        raise OperationError("invalid_signature", "The Stripe-Signature header does not match the payload.") from None
    try:
        event = json.loads(payload)
    except ValueError:
        raise OperationError("validation_error", "The webhook payload is not JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        raise OperationError("validation_error", "The webhook payload is not a Stripe event.")
    created, data = event.get("created", 0), event.get("data", {})
    # Signed is not the same as well-formed: anything not shaped like Stripe's event is refused, not applied.
    if (
        not isinstance(created, int)
        or isinstance(created, bool)
        or not 0 <= created < 2**40
        or not isinstance(data, dict)
        or not isinstance(data.get("object", {}), dict)
    ):
        raise OperationError("validation_error", "The webhook payload is not a Stripe event.")
    return event
