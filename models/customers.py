"""Platform customer id → Stripe Customer mapping."""

from peewee import CharField, IntegerField

from models.base import BaseModel, UTCDateTimeField, utcnow


class Customer(BaseModel):
    """One row per platform customer; its Stripe Customer is created on first use."""

    id = CharField(primary_key=True, max_length=40)
    platform_customer_id = CharField(max_length=255, unique=True)
    stripe_customer_id = CharField(max_length=255, null=True, unique=True)
    # The round of the Customer create's key: a 5xx Stripe saved under a key is replayed for 24 h, so a new round.
    stripe_key_step = IntegerField(default=1)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
