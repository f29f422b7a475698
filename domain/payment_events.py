"""Payment events: what the platform's other services learn of a payment, once per change, nothing lost.

The domain writes each event into the outbox (`payment_event`) in the same transaction as the change it tells of
and that change's ztracking row: a change rolled back announces nothing, one committed is never lost. The publisher
(event_publisher/) only moves rows to Kafka. An event's id is derived from what it tells (its type and the intent,
refund or version it is about), so the same fact written again — a redelivered task, a webhook and an answer both
reporting one success — is the same event, stored once.

| type | when |
| --- | --- |
| created-payment-intent | an intent is created |
| succeeded-payment | an intent reaches `succeeded`, by any path (an answer, a webhook, the janitor, a sync) |
| failed-payment | each attempt that fails (a decline, a second one too), an expired authorisation |
| canceled-payment | an intent is canceled |
| created-refund | Stripe accepts a refund (ours, or one made in the Dashboard) |
| refund-succeeded-payment | a refund succeeds |
| failed-refund | a refund fails or is canceled |
| payment-status-changed | an intent's status changes (creation included), an attempt fails: the Socket.IO pushes |

Each row is also published, by default, under the PRD's name (`PaymentIntentCreated`, `PaymentSucceeded`,
`PaymentFailed`, `RefundCreated`, `RefundSucceeded`, `RefundFailed`: the topics the platform's order service
subscribes to) with the PRD's fields (`platform_payload`); the same row, the same eventId, one publish per topic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zlib
from typing import Any

from models import PaymentEvent, PaymentIntent, Refund, statements, utcnow
from models.base import iso
from models.payment_intents import save_with_history
from observability.logs import trace_id_var
from settings import get_settings

CREATED_PAYMENT_INTENT = "created-payment-intent"
SUCCEEDED_PAYMENT = "succeeded-payment"
FAILED_PAYMENT = "failed-payment"
CANCELED_PAYMENT = "canceled-payment"
CREATED_REFUND = "created-refund"
REFUND_SUCCEEDED = "refund-succeeded-payment"
FAILED_REFUND = "failed-refund"
PAYMENT_STATUS_CHANGED = "payment-status-changed"
TYPES = (
    CREATED_PAYMENT_INTENT,
    SUCCEEDED_PAYMENT,
    FAILED_PAYMENT,
    CANCELED_PAYMENT,
    CREATED_REFUND,
    REFUND_SUCCEEDED,
    FAILED_REFUND,
    PAYMENT_STATUS_CHANGED,
)


# The PRD's events (its §5.2): each field it carries, read from our payload's field; plus ENVELOPE. PaymentFailed also
# carries orderId and subscriptionId: the order service reads orderId from it, and the original service sent both.
PLATFORM_FIELDS: dict[str, dict[str, str]] = {
    CREATED_PAYMENT_INTENT: {
        "paymentIntentId": "paymentIntentId",
        "orderId": "orderId",
        "subscriptionId": "subscriptionId",
        "amountCents": "amount",
        "currency": "currency",
    },
    SUCCEEDED_PAYMENT: {"paymentIntentId": "paymentIntentId", "orderId": "orderId", "subscriptionId": "subscriptionId"},
    FAILED_PAYMENT: {
        "paymentIntentId": "paymentIntentId",
        "orderId": "orderId",
        "subscriptionId": "subscriptionId",
        "errorCode": "errorCode",
        "errorMessage": "errorMessage",
    },
    CREATED_REFUND: {"refundId": "refundId", "paymentIntentId": "paymentIntentId", "amountCents": "amount"},
    REFUND_SUCCEEDED: {"refundId": "refundId", "paymentIntentId": "paymentIntentId"},
    FAILED_REFUND: {"refundId": "refundId", "paymentIntentId": "paymentIntentId", "errorCode": "errorCode"},
}
ENVELOPE = ("eventId", "version", "occurredAt", "traceId")


def platform_payload(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The PRD's event for one of ours: its fields, then eventId, version, occurredAt, traceId (a pure function of the
    row, so a resend is byte for byte the same)."""
    fields = PLATFORM_FIELDS[event_type]
    return {**{name: payload.get(ours) for name, ours in fields.items()}, **{k: payload.get(k) for k in ENVELOPE}}


def payload_for(event_type: str, dialect: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A row's payload as one of its topics carries it: ours as written ("service"), or the PRD's ("platform")."""
    return platform_payload(event_type, payload) if dialect == "platform" else payload


def shard_of(payment_intent_id: str) -> int:
    """The outbox shard of an intent's events: stable across processes (crc32, not Python's salted hash)."""
    return zlib.crc32(payment_intent_id.encode()) % max(1, get_settings().outbox_shards)


def event_id(event_type: str, *about: str | int) -> str:
    """The same fact, the same id: a type and what it is about (an intent, a refund, a version)."""
    digest = hashlib.sha256("|".join([event_type, *map(str, about)]).encode()).hexdigest()[:32]
    return f"vyev_{digest}"


Event = tuple[str, dict[str, Any], tuple[str | int, ...]]  # type, its fields, what it is about (its id's parts)


def announce_all(intent: PaymentIntent, events: list[Event]) -> int:
    """Write a change's events into the outbox, inside the caller's transaction, in two statements whatever their
    number (which are told already, then the new ones in one insert); returns how many were new."""
    if not events:
        return 0
    now = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    for event_type, fields, about in events:
        ident = event_id(event_type, *about)
        payload = {
            "eventId": ident,
            "type": event_type,
            "occurredAt": iso(now),
            "traceId": trace_id_var.get(),
            "version": intent.ztracking_version,
            "paymentIntentId": intent.id,
            **fields,
        }
        row = {
            "event_id": ident,
            "type": event_type,
            "payment_intent_id": intent.id,
            "shard": shard_of(intent.id),
            "version": intent.ztracking_version,
            "payload": payload,
            "occurred_at": now,
            "publish_attempts": 0,
        }
        rows.setdefault(ident, row)
    # Told already: a redelivery, or another path to the same change.
    told = {e.event_id for e in statements.select(f"events-told-{len(rows)}", _events_told, *rows)}
    new = [PaymentEvent(**row) for ident, row in rows.items() if ident not in told]
    statements.insert(new)  # one statement, in the order given: the publisher sends a shard in id order
    return len(new)


def _events_told(*event_ids: str) -> Any:
    return PaymentEvent.select(PaymentEvent.event_id).where(PaymentEvent.event_id.in_(list(event_ids)))


def announce(event_type: str, intent: PaymentIntent, fields: dict[str, Any], *about: str | int) -> bool:
    """Write one event into the outbox, inside the caller's transaction; False if this fact was already written."""
    return announce_all(intent, [(event_type, fields, about)]) == 1


def _error_of(intent: PaymentIntent) -> tuple[str | None, str | None]:
    error = intent.last_payment_error or {}
    return error.get("code"), error.get("message")


def intent_changed(
    intent: PaymentIntent, before: str | None, *, created: bool = False, failed_attempt: str | None = None
) -> None:
    """The events an intent's change tells of (call in the change's transaction, after its snapshot)."""
    announce_all(intent, events_of_change(intent, before, created=created, failed_attempt=failed_attempt))


def _attempt_failure(intent_id: str, attempt_id: str) -> tuple[str | int, ...]:
    return (intent_id, "attempt", attempt_id)


def attempt_failure_told(intent: PaymentIntent, attempt_id: str) -> bool:
    """Whether the failure of this attempt was announced already (by its answer, or by a webhook that settled it)."""
    told = event_id(FAILED_PAYMENT, *_attempt_failure(intent.id, attempt_id))
    return PaymentEvent.select().where(PaymentEvent.event_id == told).exists()


def events_of_change(
    intent: PaymentIntent, before: str | None, *, created: bool = False, failed_attempt: str | None = None
) -> list[Event]:
    """What an intent's change tells, in the order it is told. `failed_attempt` names the attempt whose failure the
    change records: told even when the status stays where it was (a second decline), once per attempt."""
    events: list[Event] = []
    if created:
        fields = {
            "orderId": intent.order_id,
            "subscriptionId": intent.subscription_id,
            "amount": intent.amount,
            "currency": intent.currency,
        }
        events.append((CREATED_PAYMENT_INTENT, fields, (intent.id,)))
    if intent.status == before and not created and failed_attempt is None:
        return events
    events.append(_status_event(intent, None if created else before))
    if intent.status == "succeeded":
        fields = {"orderId": intent.order_id, "subscriptionId": intent.subscription_id}
        events.append((SUCCEEDED_PAYMENT, {**fields, "amountReceived": intent.amount_received}, (intent.id,)))
    elif intent.status == "requires_payment_method" and intent.last_payment_error:
        code, message = _error_of(intent)
        failed = {
            "orderId": intent.order_id,
            "subscriptionId": intent.subscription_id,
            "errorCode": code,
            "errorMessage": message,
        }
        # One per failed attempt, whichever path tells it first; a failure no attempt of ours made, per version.
        about = _attempt_failure(intent.id, failed_attempt) if failed_attempt else (intent.id, intent.ztracking_version)
        events.append((FAILED_PAYMENT, failed, about))
    elif intent.status == "canceled":
        reason = intent.cancellation_reason
        canceled = {"orderId": intent.order_id, "cancellationReason": reason}
        events.append((CANCELED_PAYMENT, canceled, (intent.id,)))
        if reason == "automatic" and before == "requires_capture":
            # The authorisation expired uncaptured: the payment failed as well as being canceled.
            expired = {
                "orderId": intent.order_id,
                "subscriptionId": intent.subscription_id,
                "errorCode": "authorization_expired",
                "errorMessage": "The authorisation expired before it was captured.",
            }
            events.append((FAILED_PAYMENT, expired, (intent.id, intent.ztracking_version)))
    return events


def _status_event(intent: PaymentIntent, before: str | None) -> Event:
    """One event per status change, whichever status (requires_action and processing too): browsers watching a
    payment over the Socket.IO door learn of each step. It names the customer, so a push reaches only its sockets."""
    # An error belongs to the status it caused (a decline leaves requires_payment_method), not to later ones.
    code, message = _error_of(intent) if intent.status == "requires_payment_method" else (None, None)
    fields = {
        "customerId": intent.customer_id,
        "orderId": intent.order_id,
        "subscriptionId": intent.subscription_id,
        "status": intent.status,
        "previousStatus": before,
        "errorCode": code,
        "errorMessage": message,
    }
    return (PAYMENT_STATUS_CHANGED, fields, (intent.id, intent.ztracking_version))


def save_intent_change(
    intent: PaymentIntent,
    cause: str,
    *,
    before: str | None,
    create: bool = False,
    failed_attempt: str | None = None,
) -> None:
    """Persist an intent's change with its ztracking snapshot and the events it tells of, in one transaction (the
    caller's). A failed attempt is a change even when no field moved: its snapshot and status event carry a new
    version, so the Socket.IO door pushes the failure."""
    save_with_history(intent, cause=cause, create=create)
    intent_changed(intent, before, created=create, failed_attempt=failed_attempt)


def refund_changed(refund: Refund, intent: PaymentIntent, before: str | None) -> None:
    """The events a refund's change tells of (call in the change's transaction)."""
    if refund.status == before:
        return
    base = {"refundId": refund.id, "amount": refund.amount}
    if refund.status == "succeeded":
        announce(REFUND_SUCCEEDED, intent, base, refund.id)
    elif refund.status in ("failed", "canceled"):
        announce(FAILED_REFUND, intent, {**base, "errorCode": refund.failure_reason or refund.status}, refund.id)


def refund_accepted(refund: Refund, intent: PaymentIntent) -> None:
    """Stripe took the refund (it has a Stripe id): created-refund, once."""
    announce(CREATED_REFUND, intent, {"refundId": refund.id, "amount": refund.amount}, refund.id)


def prune_published(now: dt.datetime | None = None) -> int:
    """Delete events published longer ago than OUTBOX_RETENTION_DAYS; one still waiting is never deleted."""
    cutoff = (now or utcnow()) - dt.timedelta(days=get_settings().outbox_retention_days)
    return (
        PaymentEvent.delete()  # type: ignore[misc]  # types-peewee declares delete as a Self-typed class attribute
        .where(PaymentEvent.published_at.is_null(False), PaymentEvent.published_at < cutoff)
        .execute()
    )


def replay(
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    types: tuple[str, ...] = (),
    event_ids: tuple[str, ...] = (),
) -> int:
    """Publish again the events that occurred in [since, until) (for a consumer that lost its data), or those named by
    `event_ids` (the operator page's re-publish): they go out in their order, with their eventIds. Returns how many."""
    if since is None and not event_ids:
        raise ValueError("name a window (since) or the events (event_ids)")
    query = PaymentEvent.update(published_at=None)
    if since is not None:
        query = query.where(PaymentEvent.occurred_at >= since)
    if until is not None:
        query = query.where(PaymentEvent.occurred_at < until)
    if types:
        query = query.where(PaymentEvent.type.in_(types))
    if event_ids:
        query = query.where(PaymentEvent.event_id.in_(event_ids))
    return query.execute()
