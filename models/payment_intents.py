"""Payment intents and their append-only history (`ztracking_payment_intent`)."""

from __future__ import annotations

from typing import Any

from peewee import AutoField, BigIntegerField, CharField, IntegerField, TextField

from execution import cause_of
from models import statements
from models.base import BaseModel, JSONField, MoneyField, UTCDateTimeField, iso, utcnow
from models.payment_attempts import attempts_of


class PaymentIntentColumns(BaseModel):
    """The columns a payment intent and each of its history snapshots share."""

    customer_id = CharField(max_length=255, index=True)
    stripe_customer_id = CharField(max_length=255, null=True)
    stripe_payment_intent_id = CharField(max_length=255, null=True)
    amount = MoneyField()
    amount_capturable = MoneyField(default=0)
    amount_received = MoneyField(default=0)
    amount_refunded = MoneyField(default=0)  # pending + succeeded refunds, like Stripe's charge.amount_refunded
    currency = CharField(max_length=3)
    status = CharField(max_length=32)
    capture_method = CharField(max_length=16)
    payment_method_id = CharField(max_length=40, null=True)
    description = TextField(null=True)
    metadata = JSONField(default=dict)
    last_payment_error = JSONField(null=True)
    order_id = CharField(max_length=255, null=True)  # the platform's order and subscription this pays for
    subscription_id = CharField(max_length=255, null=True)
    capture_before = UTCDateTimeField(null=True)  # when an uncaptured authorisation expires (Stripe cancels it)
    cancellation_reason = CharField(max_length=32, null=True)
    next_action_type = CharField(max_length=64, null=True)  # what the browser must do (3-D Secure) in requires_action
    items = JSONField(null=True)  # the platform's cart the amount was priced from (its checkout), as sent
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)


class PaymentIntent(PaymentIntentColumns):
    id = CharField(primary_key=True, max_length=40)
    stripe_payment_intent_id = CharField(max_length=255, null=True, unique=True)
    order_id = CharField(max_length=255, null=True, index=True)
    ztracking_version = IntegerField(default=0)
    # `created` of the newest Stripe event applied: an older event is stale.
    last_event_created = BigIntegerField(null=True)
    # Where Stripe sends the receipt (personal data: kept here only, never in the history, events or logs).
    receipt_email = CharField(max_length=254, null=True)

    class Meta:
        indexes = ((("created_at",), False),)  # retention walks the aged intents by it (migration 011)

    def to_payload(self, attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The PaymentIntent of DESIGN.md §Payloads (without `clientSecret`, never stored), with its attempts
        (read here unless the caller already has them)."""
        payload = intent_payload(self, self.id)
        payload["attempts"] = attempts if attempts is not None else attempts_of(self.id)
        return payload


class ZtrackingPaymentIntent(PaymentIntentColumns):
    """A full snapshot of a payment intent at each change: the platform's history convention."""

    id = AutoField()  # peewee's implicit key, declared so the type checker knows it
    payment_intent_id = CharField(max_length=40)
    ztracking_version = IntegerField()
    version_date = UTCDateTimeField(default=utcnow)
    cause = CharField(max_length=255)

    class Meta:
        indexes = ((("payment_intent_id", "ztracking_version"), True),)

    def to_payload(self) -> dict[str, Any]:
        payload = intent_payload(self, self.payment_intent_id)
        payload.update(
            ztrackingVersion=self.ztracking_version,
            versionDate=iso(self.version_date),
            cause=self.cause,
        )
        return payload


SNAPSHOT_FIELDS = [name for name in PaymentIntentColumns._meta.fields if name != "id"]


def intent_payload(row: PaymentIntentColumns, intent_id: str) -> dict[str, Any]:
    """The payload of an intent or of a snapshot of one: the shared columns carry no id of their own."""
    return {
        "id": intent_id,
        "customerId": row.customer_id,
        "amount": row.amount,
        "amountCapturable": row.amount_capturable,
        "amountReceived": row.amount_received,
        "amountRefunded": row.amount_refunded,
        "currency": row.currency,
        "status": row.status,
        "captureMethod": row.capture_method,
        "paymentMethodId": row.payment_method_id,
        "description": row.description,
        "metadata": row.metadata or {},
        "lastPaymentError": row.last_payment_error,
        "orderId": row.order_id,
        "subscriptionId": row.subscription_id,
        "captureBefore": iso(row.capture_before),
        "cancellationReason": row.cancellation_reason,
        "nextAction": {"type": row.next_action_type} if row.next_action_type else None,
        "items": row.items,
        "stripePaymentIntentId": row.stripe_payment_intent_id,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


def save_with_history(intent: PaymentIntent, cause: str, *, create: bool = False) -> ZtrackingPaymentIntent:
    """Persist a change and append exactly one ztracking snapshot of it; call inside a transaction."""
    now = utcnow()
    intent.updated_at = now
    intent.ztracking_version += 1
    if create:
        statements.insert([intent])
    else:
        intent.save()
    snapshot = {name: getattr(intent, name) for name in SNAPSHOT_FIELDS}
    row = ZtrackingPaymentIntent(
        payment_intent_id=intent.id,
        ztracking_version=intent.ztracking_version,
        version_date=now,
        cause=cause_of(cause)[:255],
        **snapshot,
    )
    statements.insert([row])
    return row
