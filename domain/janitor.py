"""The janitor: resolves operations whose outcome is unknown (Stripe timed out, the worker died).

Within Stripe's 24 h idempotency window it replays the same derived key — Stripe answers with what it
did, or does it now. Past the window it looks the object up at Stripe (our id is in its metadata).
Every change it makes to an intent carries a `janitor:` cause in ztracking.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import stripe_client
from domain import idempotency
from domain.errors import OperationError, TransientError
from domain.payment_intents import OPERATION as CREATE_INTENT
from domain.payment_intents import execute_create
from domain.refunds import OPERATION as CREATE_REFUND
from domain.refunds import apply_refund_status, send_refund
from domain.schemas import CreatePaymentIntentInput
from models import IdempotencyRecord, PaymentIntent, Refund, utcnow, write_transaction
from models.base import for_update

log = logging.getLogger("janitor")

# Longer than a task can run with its retries: younger work may still be in progress.
GRACE = dt.timedelta(minutes=10)
STRIPE_IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
PER_PASS = 200  # records resolved per pass: a backlog is worked off over passes, within the task's time limit


def _abandoned(operation: str, now: dt.datetime, grace: dt.timedelta) -> list[IdempotencyRecord]:
    """Claims nobody is finishing: given back after retries, or in flight past their lease."""
    return list(
        IdempotencyRecord.select().where(
            IdempotencyRecord.operation == operation,
            IdempotencyRecord.updated_at < now - grace,
            (IdempotencyRecord.state == "retryable")
            | ((IdempotencyRecord.state == "in_flight") & (IdempotencyRecord.locked_until < now)),
        )
    )


def _take_over(record: IdempotencyRecord, now: dt.datetime) -> idempotency.Claim | None:
    """Own the claim, unless a worker or another janitor moved it meanwhile."""
    owner = f"janitor:{uuid.uuid4()}"
    with write_transaction():
        current = for_update(IdempotencyRecord.select().where(IdempotencyRecord.id == record.id)).first()
        if current is None or current.state == "completed" or current.updated_at != record.updated_at:
            return None
        current.state, current.owner = "in_flight", owner
        current.locked_until = now + idempotency.LEASE
        current.updated_at = now
        current.save()
    return idempotency.Claim.of(current, owner)


def _intent_at_stripe(record: IdempotencyRecord, inp: CreatePaymentIntentInput) -> dict[str, Any] | None:
    from domain.customers import find_customer

    customer = find_customer(inp.customer_id)
    if customer is None or not customer.stripe_customer_id:
        return None
    for intent in stripe_client.list_payment_intents(customer.stripe_customer_id):
        if (intent.get("metadata") or {}).get("vy_payment_intent_id") == record.resource_id:
            return intent
    return None


def resolve_intent(record: IdempotencyRecord, claim: idempotency.Claim, now: dt.datetime) -> str:
    """Finish one abandoned create-payment-intent; returns what was done."""
    stored = PaymentIntent.get_or_none(PaymentIntent.id == record.resource_id)
    if stored is not None:
        idempotency.complete(claim, {"response": stored.to_payload()})
        return "already stored"
    if record.request is None:
        return "no request stored"  # claimed before requests were kept (migration 003)
    inp = CreatePaymentIntentInput.model_validate(record.request)

    try:
        if now - record.created_at < STRIPE_IDEMPOTENCY_WINDOW:
            execute_create(claim, inp, cause=f"janitor:replayed:{CREATE_INTENT}")
            return "replayed"
        found = _intent_at_stripe(record, inp)
        if found is None:
            error = OperationError("stripe_error", "The payment was not created at Stripe; send it again.")
            idempotency.complete(claim, {"error": error.to_error()})
            return "not at stripe"
        execute_create(claim, inp, cause=f"janitor:fetched:{CREATE_INTENT}", found_at_stripe=found)
        return "fetched"
    except OperationError as exc:
        idempotency.complete(claim, {"error": exc.to_error()})
        return f"answered {exc.code}"


def _refund_at_stripe(refund: Refund) -> dict[str, Any] | None:
    intent = PaymentIntent.get_by_id(refund.payment_intent_id)
    for found in stripe_client.list_refunds(intent.stripe_payment_intent_id):
        if (found.get("metadata") or {}).get("vy_refund_id") == refund.id:
            return found
    return None


def resolve_refund(record: IdempotencyRecord, claim: idempotency.Claim, now: dt.datetime) -> str:
    """Finish one abandoned create-refund whose amount is held but Stripe's answer never came."""
    refund = Refund.get_or_none(Refund.id == record.resource_id)
    if refund is None:
        # Nothing was reserved, so nothing reached Stripe: forget the key, the caller may send it again.
        IdempotencyRecord.delete().where(
            IdempotencyRecord.id == record.id, IdempotencyRecord.owner == claim.owner
        ).execute()
        return "nothing reserved"
    try:
        if now - record.created_at < STRIPE_IDEMPOTENCY_WINDOW:
            send_refund(claim, refund, cause=f"janitor:replayed:{CREATE_REFUND}")
            return "replayed"
        found = _refund_at_stripe(refund)
        if found is None:
            with write_transaction():
                locked = for_update(Refund.select().where(Refund.id == refund.id)).get()
                apply_refund_status(locked, "failed", "not found at Stripe", cause=f"janitor:not-at-stripe:{refund.id}")
                error = OperationError("stripe_error", "The refund was not made at Stripe; send it again.")
                idempotency.complete(claim, {"error": error.to_error()})
            return "not at stripe"
        send_refund(claim, refund, cause=f"janitor:fetched:{CREATE_REFUND}", found_at_stripe=found)
        return "fetched"
    except OperationError as exc:
        return f"answered {exc.code}"


def reconcile_pending_refunds(now: dt.datetime, grace: dt.timedelta) -> int:
    """Ask Stripe about refunds it left `pending` (a webhook may never come); apply what it says."""
    moved = 0
    waiting = (
        Refund.select()
        .where(
            Refund.status.in_(("pending", "requires_action")),
            Refund.stripe_refund_id.is_null(False),
            Refund.updated_at < now - grace,
        )
        .limit(PER_PASS)
    )
    for refund in waiting:
        found = stripe_client.retrieve_refund(refund.stripe_refund_id)
        with write_transaction():
            locked = for_update(Refund.select().where(Refund.id == refund.id)).get()
            status = found.get("status") or locked.status
            if status == locked.status:
                continue
            moved += apply_refund_status(
                locked, status, found.get("failure_reason"), cause=f"janitor:reconciled:{refund.id}"
            )
    return moved


def reapply_unmatched_events(now: dt.datetime, grace: dt.timedelta) -> int:
    """Events stored before their intent existed, whose create has committed since (a race the create may lose)."""
    from domain.webhooks import apply_unmatched_events
    from models import WebhookEvent

    waiting = (
        WebhookEvent.select(WebhookEvent.object_id)
        .where(WebhookEvent.status == "unmatched", WebhookEvent.received_at < now - grace)
        .distinct()
        .limit(PER_PASS)
    )
    return sum(apply_unmatched_events(row.object_id) for row in waiting)


def run(grace: dt.timedelta = GRACE, now: dt.datetime | None = None) -> dict[str, int]:
    """One janitor pass, bounded; returns counts by outcome. A failure leaves that claim for the next pass."""
    now = now or utcnow()
    counts: dict[str, int] = {}
    for operation, resolve in ((CREATE_INTENT, resolve_intent), (CREATE_REFUND, resolve_refund)):
        for record in _abandoned(operation, now, grace)[:PER_PASS]:
            claim = _take_over(record, now)
            if claim is None:
                continue
            try:
                outcome = resolve(record, claim, now)
            except Exception as exc:  # one broken record must not stop the others
                idempotency.release(claim)
                outcome = f"retry later ({getattr(exc, 'code', type(exc).__name__)})"
                if not isinstance(exc, TransientError):
                    log.exception("janitor could not resolve %s %s", operation, record.resource_id)
            log.info("janitor %s %s: %s", operation, record.resource_id, outcome)
            counts[outcome] = counts.get(outcome, 0) + 1
    counts["reconciled refunds"] = reconcile_pending_refunds(now, grace)
    counts["early events applied"] = reapply_unmatched_events(now, dt.timedelta(minutes=1) if grace else grace)
    counts["expired keys purged"] = idempotency.purge_expired(now)
    return counts
