"""The Stripe Customer behind a platform customer id, created on first use."""

from __future__ import annotations

from typing import Any

from peewee import IntegrityError

import stripe_client
from domain.idempotency import key_hash
from domain.ids import new_id
from domain.personal_data import digest, normalised_email
from domain.schemas import CustomerDetails
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


def stripe_contact(details: CustomerDetails | None) -> dict[str, Any] | None:
    """Stripe's Customer fields for the person the platform's checkout names (None without one)."""
    if details is None:
        return None
    contact: dict[str, Any] = {"email": normalised_email(details.email)}
    if details.name:
        contact["name"] = details.name
    if details.address is not None:
        address = details.address
        fields = {
            "line1": address.street,
            "city": address.city,
            "state": address.state,
            "postal_code": address.zip,
            "country": address.country.upper() if address.country else None,
        }
        contact["address"] = {name: value for name, value in fields.items() if value}
    return contact


def _adoptable(platform_customer_id: str, email: str) -> str | None:
    """A Stripe Customer the platform made for this e-mail before us (its original service found customers by
    e-mail), or one of ours for this very customer: never another customer of ours."""
    for found in stripe_client.list_customers_by_email(email):
        if normalised_email(found.get("email") or "") != email or found.get("deleted"):
            continue
        owner = (found.get("metadata") or {}).get("vy_customer_id")
        if owner in (None, platform_customer_id):
            return str(found["id"])
    return None


def ensure_stripe_customer(platform_customer_id: str, details: CustomerDetails | None = None) -> Customer:
    """Our customer row with its Stripe Customer, creating either as needed (safe under concurrency).

    `details`: the person as the platform's checkout names them: their Stripe Customer is found by e-mail (one per
    address, compared lower-cased) or created with it."""
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
    contact = stripe_contact(details)
    if contact:
        # Another checkout of the same person may name them otherwise: its own key, never Stripe's 400 for a key
        # reused with other parameters (an unused Customer at worst, as below).
        key = f"{key}-c{digest(contact)[:12]}"
    try:
        adopted = _adoptable(platform_customer_id, contact["email"]) if contact else None
        if adopted is not None:
            created = {"id": adopted}
        else:
            created = stripe_client.create_customer(platform_customer_id, idempotency_key=key, contact=contact)
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
