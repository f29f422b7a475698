"""Stripe's state machines for intents and refunds: which moves are forward, which are stale."""

from __future__ import annotations

import datetime as dt
from typing import Any

from domain.schemas import INTENT_STATUSES
from models import PaymentIntent
from models.payment_intents import intent_payload


def _every_status_but(*statuses: str) -> set[str]:
    return set(INTENT_STATUSES) - set(statuses)


# Where each PaymentIntent status may go next (Stripe's lifecycle); terminal ones go nowhere.
INTENT_TRANSITIONS = {
    "requires_payment_method": _every_status_but("requires_payment_method"),
    "requires_confirmation": _every_status_but("requires_confirmation"),
    "requires_action": _every_status_but("requires_action", "requires_confirmation"),
    "processing": {"requires_payment_method", "requires_capture", "succeeded", "canceled"},
    "requires_capture": {"succeeded", "canceled"},
    "succeeded": set(),
    "canceled": set(),
}

# A refund may still fail after it succeeded (the bank returns it); failed and canceled are final.
REFUND_TRANSITIONS = {
    "pending": {"requires_action", "succeeded", "failed", "canceled"},
    "requires_action": {"pending", "succeeded", "failed", "canceled"},
    "succeeded": {"failed"},
    "failed": set(),
    "canceled": set(),
}


# How far along its lifecycle each status is. Two facts of the same second are ordered by this, not by arrival:
# Stripe's `created` has one-second resolution, so a timestamp alone cannot tell which came last.
INTENT_RANK = {
    "requires_payment_method": 0,
    "requires_confirmation": 1,
    "requires_action": 2,
    "processing": 3,
    "requires_capture": 4,
    "succeeded": 5,
    "canceled": 5,
}
REFUND_RANK = {"pending": 0, "requires_action": 1, "succeeded": 2, "failed": 3, "canceled": 3}


def intent_may_move(current: str, new: str) -> bool:
    return new == current or new in INTENT_TRANSITIONS.get(current, set())


def intent_event_applies(current: str, new: str, created: int, last_created: int | None) -> bool:
    """An event moves the intent only forward: never from an older second, and within the same second only to a
    status further along the lifecycle (or the same); always along Stripe's state machine."""
    if last_created is not None and (
        created < last_created or (created == last_created and INTENT_RANK.get(new, -1) < INTENT_RANK.get(current, -1))
    ):
        return False
    return intent_may_move(current, new)


def refund_may_move(current: str, new: str) -> bool:
    return new == current or new in REFUND_TRANSITIONS.get(current, set())


def refund_event_applies(current: str, new: str, created: int, last_created: int | None) -> bool:
    """As `intent_event_applies`, for a refund."""
    if last_created is not None and (
        created < last_created or (created == last_created and REFUND_RANK.get(new, -1) < REFUND_RANK.get(current, -1))
    ):
        return False
    return refund_may_move(current, new)


def stripe_error_summary(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of Stripe's `last_payment_error` the caller may see (no payment method object)."""
    if not error:
        return None
    return {
        "code": error.get("code"),
        "declineCode": error.get("decline_code"),
        "message": error.get("message"),
        "type": error.get("type"),
    }


def apply_stripe_intent(
    intent: PaymentIntent, stripe_intent: dict[str, Any], capture_before: dt.datetime | None = None
) -> bool:
    """Copy Stripe's view of the intent onto our row; True when a payload field changed.

    `capture_before` is when an authorisation expires (read from its charge): kept once known.
    """
    before = intent_payload(intent, intent.id)
    status = stripe_intent["status"]
    intent.stripe_payment_intent_id = stripe_intent["id"]
    intent.status = status
    intent.amount_capturable = stripe_intent.get("amount_capturable") or 0
    intent.amount_received = stripe_intent.get("amount_received") or 0
    intent.last_payment_error = stripe_error_summary(stripe_intent.get("last_payment_error"))
    next_action = stripe_intent.get("next_action") if status == "requires_action" else None
    # Only its type: what the browser must do is Stripe.js's to interpret (use_stripe_sdk is never read here).
    intent.next_action_type = (next_action or {}).get("type") if isinstance(next_action, dict) else None
    if status == "canceled":
        intent.cancellation_reason = stripe_intent.get("cancellation_reason") or intent.cancellation_reason
    if capture_before is not None:
        intent.capture_before = capture_before
    after = intent_payload(intent, intent.id)
    before.pop("updatedAt"), after.pop("updatedAt")
    return before != after


def capture_deadline(stripe_charge: dict[str, Any] | None) -> dt.datetime | None:
    """When a charge's authorisation expires (Stripe: `payment_method_details.card.capture_before`)."""
    card = ((stripe_charge or {}).get("payment_method_details") or {}).get("card") or {}
    seconds = card.get("capture_before")
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def attempt_status_for(intent_status: str) -> str:
    """Where a confirm or capture attempt stands once the intent shows `intent_status`."""
    return {
        "succeeded": "succeeded",
        "requires_capture": "succeeded",
        "requires_action": "requires_action",
        "processing": "processing",
    }.get(intent_status, "failed")
