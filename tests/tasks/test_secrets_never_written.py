"""Invariant 6: no card number, client secret, Stripe key or webhook secret in logs or in the database."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.conftest import API_KEY, STRIPE_KEY, WEBHOOK_SECRET, make_card
from tests.support import services
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration

CARDS = ("4242424242424242", "4000000000000341", "4000000000000002")


def dump_database(db) -> str:
    """Every row of every table, as text."""
    chunks = []
    for table in db.get_tables():
        for row in db.execute_sql(f"SELECT * FROM `{table}`").fetchall():
            chunks.append(f"{table}: " + " | ".join(str(v) for v in row))
    return "\n".join(chunks)


def test_secrets_reach_no_log_line_and_no_table(dispatch, stripe_api, mariadb, worker):
    customer_id = f"secret-{uuid.uuid4().hex[:8]}"
    method = dispatch(
        "create-payment-method",
        {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, CARDS[0]), "setAsDefault": True},
    )["response"]
    intent = dispatch(
        "create-payment-intent",
        {"customerId": customer_id, "amount": 1234, "currency": "usd", "confirm": True},
        key=f"s-{uuid.uuid4()}",
    )["response"]
    declined_pm = dispatch(
        "create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, CARDS[1])}
    )["response"]
    declined = dispatch(
        "create-payment-intent",
        {
            "customerId": customer_id,
            "amount": 1234,
            "currency": "usd",
            "confirm": True,
            "paymentMethodId": declined_pm["id"],
        },
    )
    assert declined["error"]["code"] == "card_declined"
    dispatch(
        "create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, CARDS[2])}
    )
    client_secrets = {intent["clientSecret"]}
    event = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": intent["stripePaymentIntentId"],
                    "status": "succeeded",
                    "amount_received": 1234,
                    "client_secret": intent["clientSecret"],
                }
            },
        }
    )
    assert "response" in dispatch(
        "process-stripe-webhook", {"payload": event, "signature": sign(event, WEBHOOK_SECRET)}
    )
    # Bad input that carries secrets must not echo them into logs either.
    from tasks.operations import TASKS

    bad = {"customerId": customer_id, "amount": CARDS[0], "currency": "usd"}
    meta = {"idempotencyKey": None, "traceId": None, "door": "test"}
    last = TASKS["create-payment-intent"].apply_async(args=[bad, meta])
    last.get(timeout=90)
    # The worker's last log line for it (Celery's own "succeeded") is in the file: everything before it is too.
    services.wait_until(
        lambda: any(last.id in line and "succeeded" in line for line in worker.read_text().splitlines()),
        30,
        "the last task's closing log line",
    )

    logs = worker.read_text()
    tables = dump_database(mariadb)
    # Positive controls: the scans do read what the service wrote.
    assert intent["id"] in logs and intent["id"] in tables and method["id"] in tables
    forbidden = [*CARDS, *client_secrets, STRIPE_KEY, WEBHOOK_SECRET, API_KEY]
    for secret in forbidden:
        assert secret not in logs, f"{secret[:6]}… in the worker log"
        assert secret not in tables, f"{secret[:6]}… in the database"
    assert not re.search(r"pi_[A-Za-z0-9]+_secret_[A-Za-z0-9]+", logs + tables)
