"""Count what is at Stripe (localstripe), every page of it: a test's own objects found by their metadata."""

from __future__ import annotations

from collections.abc import Iterable

import stripe


def intents_of_customers(stripe_api: stripe.StripeClient, customers: Iterable[str]) -> list[dict]:
    """PaymentIntents at Stripe made for these platform customers (metadata `vy_customer_id`)."""
    wanted = set(customers)
    listed = stripe_api.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
    return [
        intent.to_dict()
        for intent in listed
        if (intent.metadata.to_dict() if intent.metadata else {}).get("vy_customer_id") in wanted
    ]


def refunds_of(stripe_api: stripe.StripeClient, stripe_intent_id: str, page_size: int = 100) -> list[dict]:
    """Every refund of a PaymentIntent at Stripe, page after page."""
    params = {"payment_intent": stripe_intent_id, "limit": page_size}
    return [r.to_dict() for r in stripe_api.v1.refunds.list(params=params).auto_paging_iter()]


def customers_of(stripe_api: stripe.StripeClient, platform_customer_id: str) -> list[dict]:
    """Stripe Customers made for this platform customer (metadata `vy_customer_id`)."""
    listed = stripe_api.v1.customers.list(params={"limit": 100}).auto_paging_iter()
    return [
        c.to_dict()
        for c in listed
        if (c.metadata.to_dict() if c.metadata else {}).get("vy_customer_id") == platform_customer_id
    ]
