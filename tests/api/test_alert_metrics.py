"""The metrics the PRD's alerts read (deploy/prometheus-alerts.yml): payment attempts by how they ended, refunds
that failed, how long a Stripe event waited for a worker, and the age of the stored events not applied yet."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
import requests

from tests.api.test_metrics import samples, value
from tests.conftest import WEBHOOK_SECRET, WORKER_METRICS_PORT, make_card
from tests.support.lifecycle import DECLINED
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def worker_metrics() -> dict:
    return samples(requests.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics", timeout=10).text)


def grew(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_attempts_refund_failures_and_webhook_waits_are_counted_by_the_worker(client, anonymous, stripe_api):
    owner = f"alerts-{uuid.uuid4().hex[:10]}"
    before = worker_metrics()
    good = {"customerId": owner, "stripePaymentMethodId": make_card(stripe_api)}
    bad = {"customerId": owner, "stripePaymentMethodId": make_card(stripe_api, DECLINED)}
    good_id = client.post("/payment-methods", json=good).json()["id"]
    bad_id = client.post("/payment-methods", json=bad).json()["id"]
    create = {"customerId": owner, "amount": 2500, "currency": "eur", "confirm": True}
    paid = client.post("/payment-intents", json={**create, "paymentMethodId": good_id})
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded"
    assert client.post("/payment-intents", json={**create, "paymentMethodId": bad_id}).status_code == 402
    refund = client.post("/refunds", json={"paymentIntentId": paid.json()["id"], "amount": 1000}).json()
    assert refund["status"] == "succeeded"

    # Stripe says later that the refund failed (the card was closed): a refund error.
    failed = {
        "id": refund["stripeRefundId"],
        "object": "refund",
        "amount": 1000,
        "currency": "eur",
        "status": "failed",
        "failure_reason": "expired_or_canceled_card",
        "payment_intent": paid.json()["stripePaymentIntentId"],
        "metadata": {"vy_refund_id": refund["id"]},
    }
    event = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "refund.failed", "created": int(time.time())}
    payload = json.dumps({**event, "data": {"object": failed}})
    answer = anonymous.post(
        "/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET)}
    )
    assert answer.status_code == 200, answer.text
    assert client.get(f"/refunds/{refund['id']}").json()["status"] == "failed"

    after = worker_metrics()
    assert grew(before, after, "payments_payment_attempts_total", operation="confirm", status="succeeded") == 1
    assert grew(before, after, "payments_payment_attempts_total", operation="confirm", status="failed") == 1
    assert grew(before, after, "payments_refunds_ended_total", status="succeeded") == 1
    assert grew(before, after, "payments_refunds_ended_total", status="failed") == 1
    assert grew(before, after, "payments_webhook_wait_seconds_count") == 1
    # The failure reason is on the intent's page, where the runbook sends the operator.
    assert "expired_or_canceled_card" in client.get(f"/ops/intents/{paid.json()['id']}").text


def test_the_webhook_backlog_is_the_age_of_the_oldest_stored_event_not_applied_yet(mariadb, monkeypatch):
    from models import WebhookEvent, unit_of_work, utcnow
    from operations import view

    with unit_of_work():
        now = utcnow()
        event_id = f"evt_backlog_{uuid.uuid4().hex}"
        WebhookEvent.create(
            id=event_id,
            type="payment_intent.succeeded",
            event_created=int(time.time()),
            payload="{}",
            status="unmatched",
            received_at=now - dt.timedelta(days=30),  # older than anything else the run stored
        )
        try:
            reading = view.webhooks(now)
        finally:
            WebhookEvent.delete().where(WebhookEvent.id == event_id).execute()
        assert reading["backlog_oldest_s"] == pytest.approx(30 * 86400, abs=1)
        assert view.webhooks(now)["backlog_oldest_s"] is None or view.webhooks(now)["backlog_oldest_s"] < 30 * 86400

    full = {"read_at": now, "readiness": {}, "webhooks": {**reading, "by_status": {}}}
    monkeypatch.setattr(view, "snapshot", lambda fresh=False: full)
    found = {s.name: s.value for family in view.OpsCollector().collect() for s in family.samples}
    assert found["payments_webhook_backlog_oldest_seconds"] == pytest.approx(30 * 86400, abs=1)
