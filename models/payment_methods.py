"""Vaulted payment methods: only what identifies a card, never its number or CVC."""

from __future__ import annotations

from typing import Any

from peewee import BooleanField, CharField, IntegerField

from models.base import BaseModel, UTCDateTimeField, iso, utcnow


class PaymentMethod(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    customer_id = CharField(max_length=255)
    stripe_payment_method_id = CharField(max_length=255, unique=True)
    type = CharField(max_length=32)
    card_brand = CharField(max_length=32, null=True)
    card_last4 = CharField(max_length=4, null=True)
    card_exp_month = IntegerField(null=True)
    card_exp_year = IntegerField(null=True)
    card_fingerprint = CharField(max_length=64, null=True)
    is_default = BooleanField(default=False)
    created_at = UTCDateTimeField(default=utcnow)
    deleted_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("customer_id", "card_fingerprint"), False), (("customer_id", "id"), False))

    def to_payload(self) -> dict[str, Any]:
        """The PaymentMethod of DESIGN.md §Payloads."""
        card = None
        if self.type == "card":
            card = {
                "brand": self.card_brand,
                "last4": self.card_last4,
                "expMonth": self.card_exp_month,
                "expYear": self.card_exp_year,
                "fingerprint": self.card_fingerprint,
            }
        return {
            "id": self.id,
            "customerId": self.customer_id,
            "type": self.type,
            "card": card,
            "isDefault": self.is_default,
            "stripePaymentMethodId": self.stripe_payment_method_id,
            "createdAt": iso(self.created_at),
        }
