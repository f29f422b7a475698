"""The payment events outbox: each event written in the transaction of the change it tells of, then published."""

from __future__ import annotations

from peewee import AutoField, BigIntegerField, CharField, IntegerField, TextField

from models.base import BaseModel, JSONField, UTCDateTimeField, utcnow


class PaymentEvent(BaseModel):
    id = AutoField()  # the order events were written in: a shard is published in this order
    event_id = CharField(max_length=64, unique=True)  # stable: a repeat of the same fact cannot be written twice
    type = CharField(max_length=64)
    payment_intent_id = CharField(max_length=40)  # the Kafka key when the intent has no order nor subscription
    shard = IntegerField()  # of the outbox: one publisher at a time owns a shard, so an intent's events keep order
    version = BigIntegerField()  # the intent's ztracking version when it happened
    payload = JSONField()
    occurred_at = UTCDateTimeField(default=utcnow)
    published_at = UTCDateTimeField(null=True)
    publish_attempts = IntegerField(default=0)
    last_error = TextField(null=True)

    class Meta:
        indexes = ((("shard", "published_at", "id"), False), (("occurred_at",), False))


class OutboxPublisher(BaseModel):
    """A publisher that is running (it renews `seen_at` every pass): the shards are shared among these."""

    owner = CharField(primary_key=True, max_length=64)
    seen_at = UTCDateTimeField()


class OutboxLease(BaseModel):
    """Who publishes a shard, until when: a publisher renews its leases while it runs."""

    shard = IntegerField(primary_key=True)
    owner = CharField(max_length=64, null=True)
    until = UTCDateTimeField(null=True)
