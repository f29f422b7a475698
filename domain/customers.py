"""The Stripe Customer behind a platform customer id, created on first use."""

from __future__ import annotations

from typing import Any

from peewee import IntegrityError

import stripe_client
from domain.idempotency import key_hash
from domain.ids import new_id
from errors import StripeMayHaveActed
from models import Customer, statements, utcnow, write_transaction
from models.base import for_update


def _customer_by_platform_id(platform_customer_id: str) -> Any:
    return Customer.select().where(Customer.platform_customer_id == platform_customer_id).limit(1)


def find_customer(platform_customer_id: str) -> Customer | None:
    return statements.first("customer-by-platform-id", _customer_by_platform_id, platform_customer_id)


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
    # Same key for every attempt of a round: Stripe answers a repeat with the first Customer.
    key = f"vy-customer-{key_hash(platform_customer_id)[:40]}"
    if customer.stripe_key_step > 1:
        key = f"{key}-s{customer.stripe_key_step}"
    try:
        created = stripe_client.create_customer(platform_customer_id, idempotency_key=key)
    except StripeMayHaveActed:
        # Stripe saved a 5xx under the key and would replay it for 24 h: the next attempt uses a new round. At worst
        # an unused Customer is left at Stripe (no money, nothing attached to it).
        Customer.update(stripe_key_step=Customer.stripe_key_step + 1).where(
            Customer.platform_customer_id == platform_customer_id, Customer.stripe_customer_id.is_null()
        ).execute()
        raise
    with write_transaction():
        customer = lock_customer(platform_customer_id)
        if not customer.stripe_customer_id:
            customer.stripe_customer_id = created["id"]
            customer.updated_at = utcnow()
            customer.save()
    return customer
