"""The Stripe Customer behind a platform customer id, created on first use."""

from __future__ import annotations

from peewee import IntegrityError

import stripe_client
from domain.idempotency import key_hash
from domain.ids import new_id
from models import Customer, utcnow, write_transaction
from models.base import for_update


def find_customer(platform_customer_id: str) -> Customer | None:
    return Customer.get_or_none(Customer.platform_customer_id == platform_customer_id)


def lock_customer(platform_customer_id: str) -> Customer:
    """The customer row under a row lock: serialises changes to one customer's vault."""
    return for_update(Customer.select().where(Customer.platform_customer_id == platform_customer_id)).get()


def ensure_stripe_customer(platform_customer_id: str) -> Customer:
    """Our customer row with its Stripe Customer, creating either as needed (safe under concurrency)."""
    customer = find_customer(platform_customer_id)
    if customer is None:
        try:
            with write_transaction():
                customer = Customer.create(id=new_id("customer"), platform_customer_id=platform_customer_id)
        except IntegrityError:
            customer = find_customer(platform_customer_id)
            assert customer is not None  # the concurrent insert that beat us is committed
    if customer.stripe_customer_id:
        return customer
    # Same key for every attempt: Stripe answers a repeat with the first Customer.
    created = stripe_client.create_customer(
        platform_customer_id, idempotency_key=f"vy-customer-{key_hash(platform_customer_id)[:40]}"
    )
    with write_transaction():
        customer = lock_customer(platform_customer_id)
        if not customer.stripe_customer_id:
            customer.stripe_customer_id = created["id"]
            customer.updated_at = utcnow()
            customer.save()
    return customer
