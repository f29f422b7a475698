"""The janitor: resolves operations nobody is finishing (their worker gave up or died). It never starts money
movement: it only looks at Stripe and records what Stripe did.

- A claim whose Stripe call never started is closed with a definitive error: nothing was sent, the caller may send
  the request again. It is never executed minutes later, when its caller may have paid another way.
- A claim whose Stripe call started is resolved by looking the object up at Stripe (our id is in its metadata):
  found, it is stored as the answer; not found (its grace period is long past any request still running at Stripe),
  nothing was made, and the caller hears so. A refund not made gives its held amount back.
- Refunds Stripe left pending are asked about again, with backoff. Events that outran their intent are applied once
  it exists, oldest first, and given up after a bound on age.
- Each item is isolated: one that fails is logged, counted and retried next pass; the rest go on. Selections are
  ordered by when an item was last tried, so a backlog that keeps failing cannot starve newer work.

What it decides is stored as the key's outcome, replayed to the caller's retry with the same key, and every change
to an intent carries a `janitor:` cause in ztracking.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from peewee import fn

import stripe_client
from domain import idempotency
from domain.payment_intents import OPERATION as CREATE_INTENT
from domain.payment_intents import execute_create, intent_at_stripe
from domain.payment_methods import CREATE as CREATE_METHOD
from domain.payment_methods import DELETE as DELETE_METHOD
from domain.refunds import OPERATION as CREATE_REFUND
from domain.refunds import apply_refund_status, send_refund
from domain.schemas import CreatePaymentIntentInput
from errors import OperationError, TransientError
from models import IdempotencyRecord, PaymentIntent, Refund, WebhookEvent, utcnow, write_transaction
from models.base import for_update
from observability.metrics import JANITOR_ITEMS

log = logging.getLogger("janitor")

# Longer than a task can run with its retries: younger work may still be in progress.
GRACE = dt.timedelta(minutes=10)
PER_PASS = 200  # items per kind per pass: a backlog is worked off over passes, within the task's time limit
# Pending refunds are asked about again after 1, 2, 4 … minutes, at most every 6 hours.
REFUND_CHECK_BASE = dt.timedelta(minutes=1)
REFUND_CHECK_CAP = dt.timedelta(hours=6)
# Stripe retries a webhook for 3 days: an event still unmatched after that names nothing that will ever be ours.
UNMATCHED_MAX_AGE = dt.timedelta(days=3)
UNMATCHED_RETRY = dt.timedelta(minutes=1)
PURGE_BUDGET_S = 30.0  # seconds a pass spends deleting resolved idempotency records

NOT_PROCESSED = OperationError(
    "internal_error",
    "This request was not processed and nothing was sent to Stripe; send it again with a new idempotency key.",
    {"stripeCalled": False},
)


def nobody_finishing(now: dt.datetime) -> Any:
    """The claims nobody is finishing: given back after retries, or in flight past their lease (the operator view
    counts them with the same condition)."""
    return (IdempotencyRecord.state == "retryable") | (
        (IdempotencyRecord.state == "in_flight") & (IdempotencyRecord.locked_until < now)
    )


def _abandoned(now: dt.datetime, grace: dt.timedelta) -> list[IdempotencyRecord]:
    """Claims nobody is finishing; least recently tried first (a failed resolution touches `updated_at`, which sends
    it to the back)."""
    return list(
        IdempotencyRecord.select()
        .where(IdempotencyRecord.updated_at < now - grace, nobody_finishing(now))
        .order_by(IdempotencyRecord.updated_at, IdempotencyRecord.id)
        .limit(PER_PASS)
    )


def _take_over(record: IdempotencyRecord, now: dt.datetime) -> idempotency.Claim | None:
    """Own the claim, unless a worker or another janitor moved it meanwhile."""
    owner = f"janitor:{uuid.uuid4()}"
    token = uuid.uuid4().hex
    with write_transaction():
        current = for_update(IdempotencyRecord.select().where(IdempotencyRecord.id == record.id)).first()
        if current is None or current.state == "completed" or current.updated_at != record.updated_at:
            return None
        current.state, current.owner = "in_flight", owner
        current.execution_token, current.execution_until = token, now + idempotency.LEASE
        current.locked_until = now + idempotency.LEASE
        current.updated_at = now
        current.save()
    return idempotency.Claim.of(current, owner)


def resolve_intent(record: IdempotencyRecord, claim: idempotency.Claim, now: dt.datetime) -> str:
    """An abandoned create-payment-intent whose Stripe call started: stored if Stripe made it, else closed."""
    stored = PaymentIntent.get_or_none(PaymentIntent.id == record.resource_id)
    if stored is not None:
        idempotency.complete(claim, {"response": stored.to_payload()})
        return "already stored"
    inp = CreatePaymentIntentInput.from_stored(record.request)
    stripe_customer_id = ((claim.stripe_params or {}).get("params") or {}).get("customer")
    found = intent_at_stripe(claim, stripe_customer_id) if stripe_customer_id else None
    if found is None:
        error = OperationError(
            "stripe_error",
            "The payment was not created at Stripe and nothing was charged; send it again with a new idempotency key.",
            {"stripeCalled": True, "foundAtStripe": False},
        )
        idempotency.complete(claim, {"error": error.to_error()})
        return "not at stripe"
    execute_create(claim, inp, cause=f"janitor:fetched:{CREATE_INTENT}", found_at_stripe=found)
    return "fetched"


def resolve_refund(record: IdempotencyRecord, claim: idempotency.Claim, now: dt.datetime) -> str:
    """An abandoned create-refund whose amount is held: recorded if Stripe made it, else given back and closed."""
    refund = Refund.get_or_none(Refund.id == record.resource_id)
    if refund is None:
        idempotency.complete(claim, {"error": NOT_PROCESSED.to_error()})
        return "not processed"
    intent = PaymentIntent.get_by_id(refund.payment_intent_id)
    stripe_intent_id = intent.stripe_payment_intent_id
    # An intent Stripe never made has no refund there either: nothing to look up.
    found = (
        stripe_client.find_refund(stripe_intent_id, refund.id)
        if not refund.stripe_refund_id and stripe_intent_id
        else None
    )
    if refund.stripe_refund_id and found is None:
        found = stripe_client.retrieve_refund(refund.stripe_refund_id)
    if found is None:
        with write_transaction():
            locked = for_update(Refund.select().where(Refund.id == refund.id)).get()
            apply_refund_status(locked, "failed", "not found at Stripe", cause=f"janitor:not-at-stripe:{refund.id}")
            error = OperationError(
                "stripe_error",
                "The refund was not made at Stripe; its amount is refundable again. Send it again with a new key.",
                {"stripeCalled": True, "foundAtStripe": False, "refundId": refund.id},
            )
            idempotency.finish(claim, {"error": error.to_error()})
        return "not at stripe"
    send_refund(claim, refund, cause=f"janitor:fetched:{CREATE_REFUND}", found_at_stripe=found)
    return "fetched"


def resolve_payment_method(record: IdempotencyRecord, claim: idempotency.Claim, now: dt.datetime) -> str:
    """A vault change left half-done: its Stripe calls (attach, set default, detach) are safe to repeat and move no
    money, so it is finished the way its caller's retry would finish it."""
    from domain import payment_methods, schemas

    if record.operation not in (CREATE_METHOD, DELETE_METHOD):
        raise KeyError(record.operation)
    try:
        if record.operation == CREATE_METHOD:
            payment_methods.finish_create(claim, schemas.CreatePaymentMethodInput.model_validate(record.request))
        else:
            payment_methods.finish_delete(claim, schemas.DeletePaymentMethodInput.model_validate(record.request))
    except OperationError as exc:
        idempotency.complete(claim, {"error": exc.to_error()})
        return f"answered {exc.code}"
    return "finished"


def resolve_lifecycle(record: IdempotencyRecord, claim: idempotency.Claim, now: dt.datetime) -> str:
    """A confirm, capture, cancel or retry whose Stripe call started: settled by what Stripe did to the intent."""
    from domain.intent_lifecycle import resolve_abandoned

    return resolve_abandoned(record.operation, record.request, claim)


RESOLVERS: dict[str, Callable[[IdempotencyRecord, idempotency.Claim, dt.datetime], str]] = {
    CREATE_INTENT: resolve_intent,
    CREATE_REFUND: resolve_refund,
    CREATE_METHOD: resolve_payment_method,
    DELETE_METHOD: resolve_payment_method,
    "confirm-payment-intent": resolve_lifecycle,
    "capture-payment-intent": resolve_lifecycle,
    "cancel-payment-intent": resolve_lifecycle,
    "retry-payment-attempt": resolve_lifecycle,
}


def resolve(record: IdempotencyRecord, claim: idempotency.Claim, now: dt.datetime) -> str:
    """Resolve one abandoned claim: closed if its Stripe call never started, else by what Stripe did."""
    if record.stripe_started_at is None:
        # Nothing was sent: executing it now would start what its caller may have done another way meanwhile.
        if record.operation == CREATE_REFUND and Refund.get_or_none(Refund.id == record.resource_id) is not None:
            return resolve_refund(record, claim, now)  # reserved by code older than the started mark: look it up
        idempotency.complete(claim, {"error": NOT_PROCESSED.to_error()})
        return "not processed"
    if record.request is None or record.operation not in RESOLVERS:
        idempotency.complete(claim, {"error": NOT_PROCESSED.to_error()})
        return "not processed"
    return RESOLVERS[record.operation](record, claim, now)


def _isolated(kind: str, counts: Counter[str], what: str, work: Callable[[], str | None]) -> None:
    """Run one item's work; a failure is logged, counted and left for the next pass, never stops the others."""
    try:
        outcome = work()
    except Exception as exc:
        outcome = "failed"
        if isinstance(exc, TransientError):
            log.warning("janitor %s %s: retry next pass (%s)", kind, what, getattr(exc, "code", type(exc).__name__))
        else:
            log.exception("janitor %s %s failed", kind, what)
    if outcome is None:
        return
    JANITOR_ITEMS.labels(kind, outcome).inc()
    counts[f"{kind}: {outcome}"] += 1


def resolve_abandoned(now: dt.datetime, grace: dt.timedelta, counts: Counter[str]) -> None:
    for record in _abandoned(now, grace):
        claim = _take_over(record, now)
        if claim is None:
            continue

        def work(record: IdempotencyRecord = record, claim: idempotency.Claim = claim) -> str:
            try:
                outcome = resolve(record, claim, now)
            except BaseException:
                idempotency.release(claim)  # left for the next pass (its updated_at sends it to the back)
                raise
            log.info("janitor %s %s: %s", record.operation, record.resource_id, outcome)
            return outcome

        _isolated("claim", counts, f"{record.operation} {record.resource_id}", work)


def _next_check(checks: int, now: dt.datetime) -> dt.datetime:
    return now + min(REFUND_CHECK_CAP, REFUND_CHECK_BASE * (2 ** min(checks, 20)))


def reconcile_pending_refunds(now: dt.datetime, grace: dt.timedelta, counts: Counter[str]) -> None:
    """Ask Stripe about refunds it left pending (a webhook may never come), each less often than the last."""
    due = (Refund.next_check_at.is_null() & (Refund.updated_at < now - grace)) | (Refund.next_check_at <= now)
    waiting = (
        Refund.select()
        .where(Refund.status.in_(("pending", "requires_action")), Refund.stripe_refund_id.is_null(False), due)
        .order_by(fn.COALESCE(Refund.next_check_at, Refund.updated_at), Refund.id)
        .limit(PER_PASS)
    )
    for refund in waiting:

        def work(refund: Refund = refund) -> str:
            assert refund.stripe_refund_id is not None  # the query reads only refunds Stripe took
            found = stripe_client.retrieve_refund(refund.stripe_refund_id)
            with write_transaction():
                locked = for_update(Refund.select().where(Refund.id == refund.id)).get()
                status = found.get("status") or locked.status
                if status != locked.status and apply_refund_status(
                    locked, status, found.get("failure_reason"), cause=f"janitor:reconciled:{refund.id}"
                ):
                    Refund.update(next_check_at=None, checks=0).where(Refund.id == refund.id).execute()
                    return "refund moved"
                Refund.update(next_check_at=_next_check(locked.checks, now), checks=Refund.checks + 1).where(
                    Refund.id == refund.id
                ).execute()
                return "refund still pending"

        def checked_later(refund: Refund = refund) -> str:
            try:
                return work(refund)
            except Exception:
                # A failed check waits its backoff too: a refund Stripe keeps failing on cannot hog every pass.
                Refund.update(next_check_at=_next_check(refund.checks, now), checks=Refund.checks + 1).where(
                    Refund.id == refund.id
                ).execute()
                raise

        _isolated("refund", counts, refund.id, checked_later)


def reapply_unmatched_events(now: dt.datetime, counts: Counter[str]) -> None:
    """Events stored before their object existed here: applied once it does, oldest first; given up (`expired`)
    past Stripe's retry window."""
    from domain.webhooks import apply_unmatched_events

    expired = (
        WebhookEvent.update(status="expired", processed_at=now)
        .where(WebhookEvent.status == "unmatched", WebhookEvent.received_at < now - UNMATCHED_MAX_AGE)
        .execute()
    )
    if expired:
        JANITOR_ITEMS.labels("event", "expired").inc(expired)
        counts["event: expired"] += expired
    waiting = (
        WebhookEvent.select(WebhookEvent.object_id, WebhookEvent.received_at)
        .where(WebhookEvent.status == "unmatched", WebhookEvent.received_at < now - UNMATCHED_RETRY)
        .order_by(WebhookEvent.received_at)
        .limit(PER_PASS)
    )
    seen: set[str] = set()
    for row in waiting:
        object_id = row.object_id
        if object_id is None or object_id in seen:  # without an object id nothing can match it: it just expires
            continue
        seen.add(object_id)

        def apply(oid: str = object_id) -> str:
            return "applied" if apply_unmatched_events(oid) else "still unmatched"

        _isolated("event", counts, object_id, apply)


def run(grace: dt.timedelta = GRACE, now: dt.datetime | None = None) -> dict[str, Any]:
    """One janitor pass, bounded; returns counts by kind and outcome."""
    now = now or utcnow()
    counts: Counter[str] = Counter()
    resolve_abandoned(now, grace, counts)
    reconcile_pending_refunds(now, grace, counts)
    reapply_unmatched_events(now, counts)
    # Bounded like the rest of the pass; a backlog left by the budget goes next minute (or in retention's daily run).
    purged = idempotency.purge_expired(now, until=time.monotonic() + PURGE_BUDGET_S)
    counts["expired keys purged"] = purged
    return dict(counts)
