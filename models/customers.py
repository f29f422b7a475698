"""Platform customer id → Stripe Customer mapping."""

from peewee import CharField

from models.base import BaseModel, UTCDateTimeField, utcnow


class Customer(BaseModel):
    """One row per platform customer; its Stripe Customer is created on first use."""

    id = CharField(primary_key=True, max_length=40)
    platform_customer_id = CharField(max_length=255, unique=True)
    stripe_customer_id = CharField(max_length=255, null=True, unique=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)
