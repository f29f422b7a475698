"""Stripe webhook events, stored once by Stripe's event id."""

from peewee import BigIntegerField, CharField, TextField

from models.base import BaseModel, LongTextField, UTCDateTimeField, utcnow


class WebhookEvent(BaseModel):
    id = CharField(primary_key=True, max_length=255)  # Stripe's event id: a repeat cannot insert twice
    type = CharField(max_length=128)
    event_created = BigIntegerField()
    object_id = CharField(max_length=255, null=True, index=True)
    # The payload as Stripe sent it, less `client_secret` values (invariant 6).
    payload = LongTextField()  # up to MAX_WEBHOOK_PAYLOAD (1 MB): MEDIUMTEXT (migration 013)
    # received → processed | ignored | stale | unmatched | failed
    status = CharField(max_length=16, default="received")
    error = TextField(null=True)
    received_at = UTCDateTimeField(default=utcnow)
    processed_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("received_at",), False),)  # retention deletes the aged events by it (migration 011)
