"""Refunds of a payment intent."""

from __future__ import annotations

from typing import Any

from peewee import BigIntegerField, CharField, IntegerField

from models.base import BaseModel, JSONField, MoneyField, UTCDateTimeField, utcnow

# A refund in these states holds its amount against the intent's refundable balance.
HOLDING_STATUSES = ("pending", "requires_action", "succeeded")


class Refund(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    payment_intent_id = CharField(max_length=40, index=True)
    stripe_refund_id = CharField(max_length=255, null=True, unique=True)
    amount = MoneyField()
    currency = CharField(max_length=3)
    status = CharField(max_length=32)
    reason = CharField(max_length=32, null=True)
    failure_reason = CharField(max_length=255, null=True)
    metadata = JSONField(default=dict)
    # `created` of the newest Stripe event applied to this refund.
    last_event_created = BigIntegerField(null=True)
    # When the janitor asks Stripe again about a refund it left pending, and how often it has (backoff).
    next_check_at = UTCDateTimeField(null=True)
    checks = IntegerField(default=0)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    def to_payload(self) -> dict[str, Any]:
        """The Refund of DESIGN.md §Payloads."""
        return {
            **self.columns_as_payload(
                "id", "payment_intent_id", "amount", "currency", "status", "reason", "failure_reason"
            ),
            "metadata": self.metadata or {},
            **self.columns_as_payload("stripe_refund_id", "created_at", "updated_at"),
        }
