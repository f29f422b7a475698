"""process-stripe-webhook: verify, store once by event id, apply without ever moving a status back."""

from __future__ import annotations

import json
import time
from typing import Any

from peewee import IntegrityError

import stripe_client
from domain.context import OperationContext
from domain.ids import new_id
from domain.intent_state import apply_stripe_intent, intent_may_move
from domain.refunds import apply_refund_status, lock_intent
from domain.schemas import ProcessStripeWebhookInput
from models import PaymentIntent, Refund, WebhookEvent, utcnow, write_transaction
from models.base import for_update
from models.payment_intents import save_with_history
from models.refunds import HOLDING_STATUSES

TOLERANCE_S = 300
# The sweeper looks back this far each run: well past Stripe's first webhook retries.
SWEEP_WINDOW_S = 3600
SECRET_KEYS = frozenset({"client_secret"})
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})


def redact(value: Any) -> Any:
    """The event without client secrets: they reach only the caller of create (invariant 6)."""
    if isinstance(value, dict):
        return {k: ("[redacted]" if k in SECRET_KEYS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _apply_intent_event(event_id: str, created: int, obj: dict[str, Any]) -> str:
    intent = for_update(PaymentIntent.select().where(PaymentIntent.stripe_payment_intent_id == obj.get("id"))).first()
    if intent is None:
        return "unmatched"
    if intent.last_event_created is not None and created < intent.last_event_created:
        return "stale"
    if not intent_may_move(intent.status, obj.get("status", "")):
        return "stale"
    changed = apply_stripe_intent(intent, obj)
    intent.last_event_created = created
    if changed:
        save_with_history(intent, cause=event_id)
    else:
        intent.save()
    return "processed"


def _apply_refund_object(event_id: str, created: int, obj: dict[str, Any]) -> str:
    refund = for_update(Refund.select().where(Refund.stripe_refund_id == obj.get("id"))).first()
    ours = (obj.get("metadata") or {}).get("vy_refund_id")
    if refund is None and ours:
        # Our own refund, whose Stripe answer has not been recorded yet (the event outran it).
        refund = for_update(Refund.select().where(Refund.id == ours, Refund.stripe_refund_id.is_null())).first()
        if refund is not None:
            refund.stripe_refund_id = obj["id"]
            refund.save()
    if refund is None:
        # A refund made outside the service (the Dashboard): adopt it, so the refundable balance stays true.
        intent = lock_intent_by_stripe_id(obj.get("payment_intent"))
        if intent is None:
            return "unmatched"
        status = obj.get("status") or "pending"
        refund = Refund.create(
            id=new_id("refund"),
            payment_intent_id=intent.id,
            stripe_refund_id=obj["id"],
            amount=int(obj.get("amount") or 0),
            currency=obj.get("currency") or intent.currency,
            status=status,
            reason=obj.get("reason"),
            failure_reason=obj.get("failure_reason"),
            metadata={},
            last_event_created=created,
        )
        if status in HOLDING_STATUSES:
            intent.amount_refunded += refund.amount
            save_with_history(intent, cause=event_id)
        return "processed"
    if refund.last_event_created is not None and created < refund.last_event_created:
        return "stale"
    if not apply_refund_status(refund, obj.get("status") or refund.status, obj.get("failure_reason"), cause=event_id):
        return "stale"
    Refund.update(last_event_created=created).where(Refund.id == refund.id).execute()
    return "processed"


def lock_intent_by_stripe_id(stripe_payment_intent_id: str | None) -> PaymentIntent | None:
    if not stripe_payment_intent_id:
        return None
    intent = PaymentIntent.get_or_none(PaymentIntent.stripe_payment_intent_id == stripe_payment_intent_id)
    return lock_intent(intent.id) if intent else None


def apply_event(event_id: str, event_type: str, created: int, obj: dict[str, Any]) -> str:
    """Apply one event inside the caller's transaction; returns the status to record for it."""
    match event_type.split("."):
        case ["payment_intent", _]:
            return _apply_intent_event(event_id, created, obj)
        case ["charge", "refunded"]:
            refunds = (obj.get("refunds") or {}).get("data") or []
            outcomes = [_apply_refund_object(event_id, created, r) for r in refunds if isinstance(r, dict)]
            return "processed" if "processed" in outcomes else (outcomes[0] if outcomes else "ignored")
        case _ if event_type in REFUND_EVENTS:
            return _apply_refund_object(event_id, created, obj)
        case _:
            return "ignored"


def _object_of(event: dict[str, Any]) -> dict[str, Any]:
    obj = (event.get("data") or {}).get("object")
    return obj if isinstance(obj, dict) else {}


def ingest_event(event: dict[str, Any]) -> bool:
    """Store a verified event once and apply it in the same transaction; False when it was already stored."""
    event_id, event_type = event["id"], event["type"]
    created = int(event.get("created") or 0)
    obj = _object_of(event)
    try:
        with write_transaction():
            stored = WebhookEvent.create(
                id=event_id,
                type=event_type,
                event_created=created,
                object_id=obj.get("id"),
                payload=json.dumps(redact(event), separators=(",", ":"), sort_keys=True),
            )
            stored.status = apply_event(event_id, event_type, created, obj)
            stored.processed_at = utcnow()
            stored.save()
    except IntegrityError:
        if WebhookEvent.get_or_none(WebhookEvent.id == event_id) is None:
            raise
        return False
    return True


def process_stripe_webhook(ctx: OperationContext, inp: ProcessStripeWebhookInput) -> dict[str, Any]:
    """Verify the signature (300 s tolerance), store the event once, apply it in the same transaction."""
    event = stripe_client.verify_webhook(inp.payload, inp.signature, tolerance_s=TOLERANCE_S)
    stored = ingest_event(event)
    return {"eventId": event["id"], "type": event["type"], "duplicate": not stored}


def sweep_events(window_s: int = SWEEP_WINDOW_S, now: int | None = None) -> int:
    """Fetch Stripe's events of the last `window_s` and ingest those no webhook brought; returns how many."""
    since = int(now if now is not None else time.time()) - window_s
    recovered = 0
    for event in stripe_client.list_events(since):
        if WebhookEvent.get_or_none(WebhookEvent.id == event["id"]) is None and ingest_event(event):
            recovered += 1
    return recovered


def apply_unmatched_events(stripe_object_id: str | None) -> int:
    """Apply events that arrived before the intent they name was stored (webhooks can outrun the create)."""
    if not stripe_object_id:
        return 0
    applied = 0
    waiting = (
        WebhookEvent.select()
        .where(WebhookEvent.object_id == stripe_object_id, WebhookEvent.status == "unmatched")
        .order_by(WebhookEvent.event_created, WebhookEvent.received_at)
    )
    for stored in waiting:
        with write_transaction():
            event = json.loads(stored.payload)
            status = apply_event(stored.id, stored.type, stored.event_created, _object_of(event))
            WebhookEvent.update(status=status, processed_at=utcnow()).where(WebhookEvent.id == stored.id).execute()
            applied += status == "processed"
    return applied


def replay_event(event_id: str) -> str:
    """Apply a stored event again (operators, after a fix); state rules make a repeat harmless."""
    from domain.errors import not_found

    stored = WebhookEvent.get_or_none(WebhookEvent.id == event_id)
    if stored is None:
        raise not_found("webhook event", event_id)
    with write_transaction():
        event = json.loads(stored.payload)
        status = apply_event(stored.id, stored.type, stored.event_created, _object_of(event))
        WebhookEvent.update(status=status, processed_at=utcnow(), error=None).where(
            WebhookEvent.id == event_id
        ).execute()
    return status
