"""Rows the workloads need before they start: customers with a default card, and paid intents with history."""

from __future__ import annotations

import datetime as dt
from typing import Any

from domain.ids import new_id
from models import Customer, PaymentIntent, PaymentMethod, ZtrackingPaymentIntent, bind_database, utcnow
from models.schema import migrate, seed
from settings import Settings

CHUNK = 500


def seed_rows(settings: Settings, customers: int, intents: int) -> dict[str, list[str]]:
    """Migrate, seed the reference data, insert the benchmark's rows; returns the ids the load uses."""
    db = bind_database(settings)
    migrate(db)
    seed(db)
    now = utcnow()
    customer_ids = [f"bench-customer-{i}" for i in range(customers)]
    customer_rows, method_rows = [], []
    for i, platform_id in enumerate(customer_ids):
        customer_rows.append(
            {"id": new_id("customer"), "platform_customer_id": platform_id, "stripe_customer_id": f"cus_seed{i}"}
        )
        method_rows.append(
            {
                "id": new_id("payment_method"),
                "customer_id": platform_id,
                "stripe_payment_method_id": f"pm_seed{i}",
                "type": "card",
                "card_brand": "visa",
                "card_last4": "4242",
                "card_exp_month": 12,
                "card_exp_year": 2034,
                "card_fingerprint": f"fp{i}",
                "is_default": True,
            }
        )
    intent_ids, stripe_ids = [], []
    intent_rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    for i in range(intents):
        intent_id, stripe_id = new_id("payment_intent"), f"pi_seed{i}"
        intent_ids.append(intent_id)
        stripe_ids.append(stripe_id)
        columns = {
            "customer_id": customer_ids[i % customers],
            "stripe_customer_id": f"cus_seed{i % customers}",
            "stripe_payment_intent_id": stripe_id,
            "amount": 2000,
            "amount_capturable": 0,
            "amount_received": 2000,
            "amount_refunded": 0,
            "currency": "usd",
            "status": "succeeded",
            "capture_method": "automatic",
            "payment_method_id": None,
            "description": "benchmark seed",
            "metadata": {"order": str(i)},
            "created_at": now,
            "updated_at": now,
        }
        intent_rows.append({**columns, "id": intent_id, "ztracking_version": 2})
        # Two snapshots, as a create followed by a webhook leaves them.
        for version, status in ((1, "processing"), (2, "succeeded")):
            snapshot = {k: v for k, v in columns.items() if k != "stripe_payment_intent_id"}
            history_rows.append(
                {
                    **snapshot,
                    "stripe_payment_intent_id": stripe_id,
                    "status": status,
                    "payment_intent_id": intent_id,
                    "ztracking_version": version,
                    "version_date": now + dt.timedelta(milliseconds=version),
                    "cause": "create-payment-intent" if version == 1 else f"evt_seed{i}",
                }
            )
    with db.connection_context():
        for model, rows in (
            (Customer, customer_rows),
            (PaymentMethod, method_rows),
            (PaymentIntent, intent_rows),
            (ZtrackingPaymentIntent, history_rows),
        ):
            with db.atomic():
                for start in range(0, len(rows), CHUNK):
                    model.insert_many(rows[start : start + CHUNK]).execute()
    db.close_all()
    return {"customers": customer_ids, "intents": intent_ids, "stripe_intents": stripe_ids}
