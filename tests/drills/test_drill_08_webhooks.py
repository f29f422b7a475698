"""Drill 8 (REST part): Stripe webhooks through gunicorn — concurrent duplicates, out-of-order delivery, stale and
tampered signatures. Each event is applied once, a late event never moves a status back, a bad signature stores
nothing. (The sweeper for missed events is the other half of drill 8.)"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.drills.conftest import WEBHOOK_SECRET
from tests.drills.helpers import customer, paid_intent
from tests.drills.report import report
from tests.support.webhooks import intent_event, sign

pytestmark = pytest.mark.integration


def post_event(base: str, payload: str | bytes, signature: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    body = payload.encode() if isinstance(payload, str) else payload
    return requests.post(f"{base}/webhooks/stripe", data=body, headers=headers, timeout=60)


def history(api, intent_id: str) -> list[dict]:
    return api.get(f"/payment-intents/{intent_id}/history").json()


def test_five_concurrent_deliveries_of_one_event_are_applied_once(stack, api):
    created = api.post("/payment-intents", json={"customerId": customer("wh5"), "amount": 700, "currency": "usd"})
    assert created.status_code == 201, created.text
    intent = created.json()
    payload = intent_event(intent["stripePaymentIntentId"], "processing", int(time.time()), 700)
    signature = sign(payload, WEBHOOK_SECRET)
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: post_event(stack.api_url, payload, signature), range(5)))
    event_id = json.loads(payload)["id"]
    rows = stack.sql("SELECT COUNT(*) FROM webhook_event WHERE id = %s", (event_id,))[0][0]
    snapshots = history(api, intent["id"])
    report(
        "8a",
        "one signed event delivered 5 times concurrently over REST",
        requests_sent=5,
        answered_200=sum(a.status_code == 200 for a in answers),
        applied=sum(a.status_code == 200 and not a.json()["duplicate"] for a in answers),
        flagged_duplicate=sum(a.status_code == 200 and a.json()["duplicate"] for a in answers),
        webhook_rows=rows,
        history_rows=len(snapshots),
    )
    assert [a.status_code for a in answers] == [200] * 5
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True, True]
    assert rows == 1
    assert [s["status"] for s in snapshots] == ["requires_payment_method", "processing"]
    assert snapshots[-1]["cause"] == event_id


def test_events_delivered_out_of_order_never_move_a_status_back(stack, api, stripe_api):
    paid = paid_intent(api, stripe_api, "whorder", amount=4000)
    pending = api.post("/payment-intents", json={"customerId": customer("whorder"), "amount": 900, "currency": "usd"})
    pending = pending.json()
    now = int(time.time()) + 60  # events come after the intents were created (an event cannot predate its object)
    # A paid intent: an older "processing" arriving after it is stale.
    newer = intent_event(paid["stripePaymentIntentId"], "succeeded", now, 4000)
    older = intent_event(paid["stripePaymentIntentId"], "processing", now - 30, 4000)
    # An unconfirmed intent told "succeeded" first, then the earlier "processing".
    late_first = intent_event(pending["stripePaymentIntentId"], "succeeded", now, 900)
    early_last = intent_event(pending["stripePaymentIntentId"], "processing", now - 10, 900)
    answers = [
        post_event(stack.api_url, payload, sign(payload, WEBHOOK_SECRET))
        for payload in (newer, older, late_first, early_last)
    ]
    statuses = dict(
        stack.sql(
            "SELECT id, status FROM webhook_event WHERE object_id IN (%s, %s)",
            (paid["stripePaymentIntentId"], pending["stripePaymentIntentId"]),
        )
    )
    paid_now = api.get(f"/payment-intents/{paid['id']}").json()
    pending_now = api.get(f"/payment-intents/{pending['id']}").json()
    paid_history, pending_history = history(api, paid["id"]), history(api, pending["id"])
    report(
        "8b",
        "4 events delivered newest first (two intents)",
        requests_sent=4,
        answered_200=sum(a.status_code == 200 for a in answers),
        recorded_stale=sum(s == "stale" for s in statuses.values()),
        final_statuses=f"{paid_now['status']},{pending_now['status']}",
        history_rows=len(paid_history) + len(pending_history),
    )
    assert [a.status_code for a in answers] == [200] * 4
    assert paid_now["status"] == "succeeded" and len(paid_history) == 1
    assert pending_now["status"] == "succeeded"
    assert [h["status"] for h in pending_history] == ["requires_payment_method", "succeeded"]
    assert statuses[json.loads(older)["id"]] == "stale" and statuses[json.loads(early_last)["id"]] == "stale"


def test_stale_tampered_and_unsigned_webhooks_are_refused_400_and_store_nothing(stack, api):
    created = api.post("/payment-intents", json={"customerId": customer("whsig"), "amount": 1200, "currency": "usd"})
    intent = created.json()
    now = int(time.time())
    payload = intent_event(intent["stripePaymentIntentId"], "succeeded", now, 1200)
    good = sign(payload, WEBHOOK_SECRET)
    digest = good.split("v1=")[1]
    cases = {
        "stale signature (301 s old)": (payload, sign(payload, WEBHOOK_SECRET, timestamp=now - 301)),
        "amount tampered after signing": (payload.replace('"amount": 1200', '"amount": 1'), good),
        "status tampered after signing": (payload.replace('"status": "succeeded"', '"status": "canceled"'), good),
        "signed with another secret": (payload, sign(payload, "whsec_not_ours")),
        "signature of another payload": (payload, sign(payload + " ", WEBHOOK_SECRET)),
        "timestamp changed, digest kept": (payload, f"t={now - 5},v1={digest}"),
        "digest flipped": (payload, f"t={now},v1={digest[:-1]}{'0' if digest[-1] != '0' else '1'}"),
        "v0 scheme only": (payload, f"t={now},v0={digest}"),
        "garbage header": (payload, "garbage"),
        "empty header": (payload, ""),
        "no header": (payload, None),
        "not UTF-8 body": (b"\xff\xfe" + payload.encode(), good),
    }
    answers = {label: post_event(stack.api_url, body, header) for label, (body, header) in cases.items()}
    event_id = json.loads(payload)["id"]
    stored = stack.sql("SELECT COUNT(*) FROM webhook_event WHERE id = %s", (event_id,))[0][0]
    unchanged = api.get(f"/payment-intents/{intent['id']}").json()["status"]
    # Positive control: the untouched event with its signature is taken.
    accepted = post_event(stack.api_url, payload, good)
    report(
        "8c",
        f"{len(cases)} stale, tampered, foreign or missing signatures over REST",
        requests_sent=len(cases) + 1,
        refused_400=sum(
            a.status_code == 400 and a.json()["error"]["code"] == "invalid_signature" for a in answers.values()
        ),
        stored_before_control=stored,
        control_accepted=accepted.status_code,
    )
    wrong = {label: (a.status_code, a.text[:120]) for label, a in answers.items() if a.status_code != 400}
    assert wrong == {}
    assert all(a.json()["error"]["code"] == "invalid_signature" for a in answers.values())
    assert stored == 0 and unchanged == "requires_payment_method"
    assert accepted.status_code == 200 and accepted.json()["duplicate"] is False
