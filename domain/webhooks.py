"""process-stripe-webhook: verify, store once by event id, apply without ever moving a status back."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peewee import IntegrityError

import stripe_client
from domain import payment_attempts, payment_events
from domain.context import OperationContext
from domain.ids import new_id
from domain.intent_state import apply_stripe_intent, capture_deadline, intent_event_applies, refund_event_applies
from domain.refunds import apply_refund_status, lock_intent
from domain.schemas import ProcessStripeWebhookInput
from domain.webhook_signature import verify_webhook
from models import PaymentIntent, Refund, WebhookEvent, statements, utcnow, write_transaction
from models.base import for_update
from models.payment_intents import save_with_history
from models.refunds import HOLDING_STATUSES
from observability.metrics import WEBHOOK_WAIT_SECONDS

TOLERANCE_S = 300
# A verified event may wait this long in the queue before its worker checks the signature again.
MAX_QUEUED_S = 3600
# The sweeper looks back this far each run: well past Stripe's first webhook retries.
SWEEP_WINDOW_S = 3600
SECRET_KEYS = frozenset({"client_secret"})
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
# The events the Stripe endpoint must be subscribed to (README): everything else is recorded as `ignored`.
SUBSCRIBED_EVENTS = (
    "payment_intent.created",
    "payment_intent.requires_action",
    "payment_intent.processing",
    "payment_intent.amount_capturable_updated",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
)


@dataclass
class Related:
    """What applying an event needs from Stripe, fetched before its transaction (no Stripe call under a row lock)."""

    refunds: list[dict[str, Any]] = field(default_factory=list)  # a charge's refunds (Charge no longer embeds them)
    foreign_intents: set[str] = field(default_factory=set)  # Stripe intents that are not ours (a shared account)
    capture_before: dt.datetime | None = None  # an authorisation's expiry, read from its charge


def redact(value: Any) -> Any:
    """The event without client secrets: they reach only the caller of create (invariant 6)."""
    if isinstance(value, dict):
        return {k: ("[redacted]" if k in SECRET_KEYS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _ours(obj: dict[str, Any], key: str) -> bool:
    return bool((obj.get("metadata") or {}).get(key))


def _apply_intent_event(event_id: str, created: int, obj: dict[str, Any], related: Related) -> str:
    intent = for_update(PaymentIntent.select().where(PaymentIntent.stripe_payment_intent_id == obj.get("id"))).first()
    if intent is None:
        # Ours but not stored yet (the event outran the create): applied when it is. Not ours: nothing to do.
        return "unmatched" if _ours(obj, "vy_payment_intent_id") else "ignored"
    if not intent_event_applies(intent.status, obj.get("status", ""), created, intent.last_event_created):
        return "stale"
    before = intent.status
    changed = apply_stripe_intent(intent, obj, related.capture_before)
    intent.last_event_created = max(created, intent.last_event_created or 0)
    if changed:
        failed = payment_attempts.settle_open_attempts(intent)  # a 3-D Secure or processing attempt ends with it
        payment_events.save_intent_change(intent, event_id, before=before, failed_attempt=failed)
    else:
        intent.save()
    return "processed"


def _apply_refund_object(event_id: str, created: int, obj: dict[str, Any], related: Related) -> str:
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
            return "ignored" if obj.get("payment_intent") in related.foreign_intents else "unmatched"
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
            payment_events.refund_accepted(refund, intent)
        payment_events.refund_changed(refund, intent, before=None)
        return "processed"
    status = obj.get("status") or refund.status
    if not refund_event_applies(refund.status, status, created, refund.last_event_created):
        return "stale"
    apply_refund_status(refund, status, obj.get("failure_reason"), cause=event_id)
    Refund.update(last_event_created=max(created, refund.last_event_created or 0)).where(
        Refund.id == refund.id
    ).execute()
    return "processed"


def lock_intent_by_stripe_id(stripe_payment_intent_id: str | None) -> PaymentIntent | None:
    if not stripe_payment_intent_id:
        return None
    intent = PaymentIntent.get_or_none(PaymentIntent.stripe_payment_intent_id == stripe_payment_intent_id)
    return lock_intent(intent.id) if intent else None


def _refund_objects(event_type: str, obj: dict[str, Any], related: Related) -> list[dict[str, Any]]:
    if event_type == "charge.refunded":
        return related.refunds
    return [obj] if event_type in REFUND_EVENTS else []


def prefetch(event_type: str, obj: dict[str, Any]) -> Related:
    """Fetch from Stripe what applying the event needs, before its transaction.

    `charge.refunded` has carried no refunds list since API version 2022-11-15: the charge's refunds are listed.
    A refund that is neither ours nor on an intent of ours is checked at Stripe: an intent without our id in its
    metadata belongs to someone else on a shared account, and its refunds are ignored, not left unmatched.
    """
    related = Related()
    charge = obj.get("latest_charge")
    if event_type.startswith("payment_intent.") and obj.get("status") == "requires_capture" and charge:
        related.capture_before = capture_deadline(
            charge if isinstance(charge, dict) else stripe_client.retrieve_charge(charge)
        )
    if event_type == "charge.refunded" and isinstance(obj.get("id"), str):
        embedded = (obj.get("refunds") or {}).get("data") if isinstance(obj.get("refunds"), dict) else None
        related.refunds = [
            r for r in (embedded or stripe_client.list_refunds_of_charge(obj["id"])) if isinstance(r, dict)
        ]
    for refund in _refund_objects(event_type, obj, related):
        stripe_intent_id = refund.get("payment_intent")
        if (
            isinstance(stripe_intent_id, str)
            and not _ours(refund, "vy_refund_id")
            and not Refund.select().where(Refund.stripe_refund_id == refund.get("id")).exists()
            and not PaymentIntent.select().where(PaymentIntent.stripe_payment_intent_id == stripe_intent_id).exists()
            and not _ours(stripe_client.retrieve_payment_intent(stripe_intent_id), "vy_payment_intent_id")
        ):
            related.foreign_intents.add(stripe_intent_id)
    return related


def apply_event(event_id: str, event_type: str, created: int, obj: dict[str, Any], related: Related) -> str:
    """Apply one event inside the caller's transaction; returns the status to record for it."""
    match event_type.split("."):
        case ["payment_intent", _]:
            return _apply_intent_event(event_id, created, obj, related)
        case _ if event_type == "charge.refunded" or event_type in REFUND_EVENTS:
            outcomes = [
                _apply_refund_object(event_id, created, r, related) for r in _refund_objects(event_type, obj, related)
            ]
            for outcome in ("processed", "unmatched", "stale"):
                if outcome in outcomes:
                    return outcome
            return "ignored"
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
    if WebhookEvent.select().where(WebhookEvent.id == event_id).exists():
        return False  # a repeat: nothing to fetch or apply
    related = prefetch(event_type, obj)
    try:
        with write_transaction():
            stored = WebhookEvent.create(
                id=event_id,
                type=event_type,
                event_created=created,
                object_id=obj.get("id"),
                payload=json.dumps(redact(event), separators=(",", ":"), sort_keys=True),
            )
            stored.status = apply_event(event_id, event_type, created, obj, related)
            stored.processed_at = utcnow()
            stored.save()
    except IntegrityError:
        if WebhookEvent.get_or_none(WebhookEvent.id == event_id) is None:
            raise
        return False
    return True


def tolerance_for(received_at: float | None, now: float | None = None) -> int:
    """Stripe's 300 s signature tolerance, measured from when a door received the event (it may have queued)."""
    if received_at is None:
        return TOLERANCE_S
    queued = max(0.0, (now if now is not None else time.time()) - received_at)
    return TOLERANCE_S + int(min(queued, MAX_QUEUED_S))


def process_stripe_webhook(ctx: OperationContext, inp: ProcessStripeWebhookInput) -> dict[str, Any]:
    """Verify the signature (the worker trusts no unverified body), store the event once, apply it in the same
    transaction."""
    event = verify_webhook(inp.payload, inp.signature, tolerance_s=tolerance_for(ctx.received_at))
    if ctx.received_at is not None:
        # How long it waited for a worker: the webhook backlog's age as the workers see it.
        WEBHOOK_WAIT_SECONDS.observe(max(0.0, time.time() - ctx.received_at))
    stored = ingest_event(event)
    return {"eventId": event["id"], "type": event["type"], "duplicate": not stored}


def sweep_events(window_s: int = SWEEP_WINDOW_S, now: int | None = None) -> int:
    """Fetch Stripe's events of the last `window_s` and ingest those no webhook brought; returns how many."""
    return ingest_missing(events_since(window_s, now))


def events_since(window_s: int = SWEEP_WINDOW_S, now: int | None = None) -> Iterable[dict[str, Any]]:
    """Stripe's events of the last `window_s` seconds, fetched page by page as they are read."""
    return stripe_client.list_events(int(now if now is not None else time.time()) - window_s)


def ingest_missing(events: Iterable[dict[str, Any]]) -> int:
    """Ingest the events no webhook brought (a progress bar may wrap `events`); returns how many."""
    recovered = 0
    for event in events:
        if WebhookEvent.get_or_none(WebhookEvent.id == event["id"]) is None and ingest_event(event):
            recovered += 1
    return recovered


def _apply_stored(stored: WebhookEvent) -> str:
    """Apply a stored event again (its Stripe facts fetched first, outside the transaction)."""
    event = json.loads(stored.payload)
    obj = _object_of(event)
    related = prefetch(stored.type, obj)
    with write_transaction():
        status = apply_event(stored.id, stored.type, stored.event_created, obj, related)
        WebhookEvent.update(status=status, processed_at=utcnow(), error=None).where(
            WebhookEvent.id == stored.id
        ).execute()
    return status


def _unmatched_events_of(stripe_object_id: str) -> Any:
    return (
        WebhookEvent.select()
        .where(WebhookEvent.object_id == stripe_object_id, WebhookEvent.status == "unmatched")
        .order_by(WebhookEvent.event_created, WebhookEvent.received_at)
    )


def apply_unmatched_events(stripe_object_id: str | None) -> int:
    """Apply events that arrived before the intent they name was stored (webhooks can outrun the create)."""
    if not stripe_object_id:
        return 0
    waiting = statements.select("unmatched-events-of", _unmatched_events_of, stripe_object_id)
    return sum(_apply_stored(stored) == "processed" for stored in waiting)


def replay_event(event_id: str) -> str:
    """Apply a stored event again (operators, after a fix); state rules make a repeat harmless."""
    from errors import not_found

    stored = WebhookEvent.get_or_none(WebhookEvent.id == event_id)
    if stored is None:
        raise not_found("webhook event", event_id)
    return _apply_stored(stored)
