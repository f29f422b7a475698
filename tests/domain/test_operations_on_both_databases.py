"""The domain functions, called directly, on MariaDB (TiDB's protocol) and on SQLite (zero-setup)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from domain.schemas import CreatePaymentIntentInput
from errors import OperationError
from models import IdempotencyRecord, PaymentIntent, Refund, WebhookEvent, ZtrackingPaymentIntent
from tests.conftest import WEBHOOK_SECRET, make_card
from tests.domain.helpers import call, context, customer_with_card, lapse
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def paid_intent(stripe_api, amount: int = 5000) -> dict:
    customer_id = customer_with_card(stripe_api, "dom")
    return call(
        "create-payment-intent", {"customerId": customer_id, "amount": amount, "currency": "usd", "confirm": True}
    )


def event(event_type: str, obj: dict, created: int | None = None) -> dict:
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": event_type,
            "created": created or int(time.time()),
            "data": {"object": obj},
        }
    )
    return {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)}


def test_create_confirm_refund_and_history(domain_db, stripe_api):
    intent = paid_intent(stripe_api, 5000)
    assert intent["status"] == "succeeded"
    refund = call("create-refund", {"paymentIntentId": intent["id"], "amount": 2000})
    assert (refund["status"], refund["amount"]) == ("succeeded", 2000)
    with pytest.raises(OperationError) as exceeded:
        call("create-refund", {"paymentIntentId": intent["id"], "amount": 3001})
    assert exceeded.value.code == "refund_exceeds_amount"
    assert exceeded.value.details["refundable"] == 3000
    history = call("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})
    assert [h["amountRefunded"] for h in history] == [0, 2000]
    assert ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == intent["id"]).count() == 2


def test_a_refund_refused_by_stripe_releases_its_amount(domain_db, stripe_api, monkeypatch):
    import stripe_client

    intent = paid_intent(stripe_api, 1000)

    def refuse(params, *, idempotency_key):
        raise OperationError("validation_error", "Charge already refunded.")

    monkeypatch.setattr(stripe_client, "create_refund", refuse)
    with pytest.raises(OperationError):
        call("create-refund", {"paymentIntentId": intent["id"]})
    failed = Refund.get(Refund.payment_intent_id == intent["id"])
    assert failed.status == "failed" and failed.failure_reason == "Charge already refunded."
    assert PaymentIntent.get_by_id(intent["id"]).amount_refunded == 0
    monkeypatch.undo()
    assert call("create-refund", {"paymentIntentId": intent["id"]})["amount"] == 1000


def test_replay_answers_the_stored_result_with_a_fresh_client_secret(domain_db, stripe_api):
    ctx = context()
    payload = {"customerId": f"dom-{uuid.uuid4().hex[:8]}", "amount": 600, "currency": "gbp"}
    first = call("create-payment-intent", payload, ctx)
    replay = call("create-payment-intent", payload, context(key=ctx.scoped_key))
    assert replay == first
    record = IdempotencyRecord.get(IdempotencyRecord.resource_id == first["id"])
    assert "clientSecret" not in json.dumps(record.outcome)


def test_a_redelivered_task_resumes_its_own_claim_instead_of_being_refused(domain_db, stripe_api):
    from domain import idempotency

    ctx = context(owner="task-1")
    payload = {"customerId": f"dom-{uuid.uuid4().hex[:8]}", "amount": 700, "currency": "usd"}
    # The first delivery claimed the key and died before Stripe answered.
    first = idempotency.claim(
        "create-payment-intent",
        ctx.scoped_key,
        CreatePaymentIntentInput.model_validate(payload).canonical(),
        "task-1",
        "payment_intent",
        3600,
        "trace",
    )
    with pytest.raises(OperationError) as other:
        call("create-payment-intent", payload, context(key=ctx.scoped_key, owner="another-task"))
    assert other.value.code == "idempotency_key_in_use"
    with pytest.raises(idempotency.ExecutionInProgress):
        call("create-payment-intent", payload, ctx)  # until its lease runs out, it may still be running
    lapse(first.record_id)
    resumed = call("create-payment-intent", payload, ctx)
    assert resumed["status"] == "requires_payment_method"
    assert PaymentIntent.select().where(PaymentIntent.customer_id == payload["customerId"]).count() == 1


def test_vault_the_same_card_twice_returns_the_first(domain_db, stripe_api):
    customer_id = f"dom-{uuid.uuid4().hex[:8]}"
    first = call("create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api)})
    second = call("create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api)})
    assert second["id"] == first["id"]
    listed = call("list-payment-methods", {"customerId": customer_id})
    assert [m["id"] for m in listed["data"]] == [first["id"]] and listed["hasMore"] is False
    assert call("delete-payment-method", {"paymentMethodId": first["id"]}) == {"id": first["id"], "deleted": True}
    assert call("list-payment-methods", {"customerId": customer_id})["data"] == []


def test_payment_methods_and_refunds_page_both_ways_with_next_cursors(domain_db, stripe_api):
    customer_id = f"dom-pages-{uuid.uuid4().hex[:8]}"
    methods = [
        call("create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, n)})
        for n in ("4242424242424242", "5555555555554444", "4000056655665556")
    ]
    newest = [m["id"] for m in reversed(methods)]
    first = call("list-payment-methods", {"customerId": customer_id, "limit": 2})
    assert ([m["id"] for m in first["data"]], first["hasMore"], first["nextCursor"]) == (newest[:2], True, newest[1])
    rest = call("list-payment-methods", {"customerId": customer_id, "limit": 2, "startingAfter": first["nextCursor"]})
    assert ([m["id"] for m in rest["data"]], rest["hasMore"], rest["nextCursor"]) == (newest[2:], False, None)
    back = call("list-payment-methods", {"customerId": customer_id, "limit": 1, "endingBefore": newest[2]})
    assert ([m["id"] for m in back["data"]], back["hasMore"], back["nextCursor"]) == ([newest[1]], True, newest[1])
    with pytest.raises(OperationError) as foreign:
        call("list-payment-methods", {"customerId": "someone-else", "endingBefore": newest[0]})
    assert foreign.value.code == "validation_error"

    intent = call(
        "create-payment-intent",
        {
            "customerId": customer_id,
            "amount": 3000,
            "currency": "usd",
            "paymentMethodId": methods[0]["id"],
            "confirm": True,
        },
    )
    refunds = [call("create-refund", {"paymentIntentId": intent["id"], "amount": 500 + i}) for i in range(3)]
    oldest = [r["id"] for r in refunds]
    everything = call("list-refunds", {"paymentIntentId": intent["id"]})
    assert ([r["id"] for r in everything["data"]], everything["nextCursor"]) == (oldest, None)
    page = call("list-refunds", {"paymentIntentId": intent["id"], "limit": 2})
    assert ([r["id"] for r in page["data"]], page["hasMore"], page["nextCursor"]) == (oldest[:2], True, oldest[1])
    after = call("list-refunds", {"paymentIntentId": intent["id"], "startingAfter": page["nextCursor"]})
    assert [r["id"] for r in after["data"]] == oldest[2:] and after["hasMore"] is False
    before = call("list-refunds", {"paymentIntentId": intent["id"], "endingBefore": oldest[2], "limit": 1})
    assert [r["id"] for r in before["data"]] == [oldest[1]] and before["nextCursor"] == oldest[1]


def test_webhook_applies_once_ignores_stale_and_never_moves_back(domain_db, stripe_api):
    intent = call("create-payment-intent", {"customerId": "dom-wh", "amount": 900, "currency": "usd"})
    stripe_id = intent["stripePaymentIntentId"]
    now = int(time.time())
    processing = event("payment_intent.processing", {"id": stripe_id, "status": "processing", "amount": 900}, now)
    assert call("process-stripe-webhook", processing)["duplicate"] is False
    assert call("process-stripe-webhook", processing)["duplicate"] is True
    succeeded = event(
        "payment_intent.succeeded",
        {"id": stripe_id, "status": "succeeded", "amount_received": 900, "client_secret": "pi_x_secret_y"},
        now + 1,
    )
    call("process-stripe-webhook", succeeded)
    late = event("payment_intent.requires_action", {"id": stripe_id, "status": "requires_action"}, now + 2)
    call("process-stripe-webhook", late)
    assert call("get-payment-intent", {"paymentIntentId": intent["id"]})["status"] == "succeeded"
    statuses = {e.type: e.status for e in WebhookEvent.select().where(WebhookEvent.object_id == stripe_id)}
    assert statuses == {
        "payment_intent.processing": "processed",
        "payment_intent.succeeded": "processed",
        "payment_intent.requires_action": "stale",
    }
    assert all("pi_x_secret_y" not in e.payload for e in WebhookEvent.select())
    causes = [h["cause"] for h in call("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})]
    assert causes == [
        "create-payment-intent",
        json.loads(processing["payload"])["id"],
        json.loads(succeeded["payload"])["id"],
    ]


def test_a_refund_failing_later_makes_its_amount_refundable_again(domain_db, stripe_api):
    intent = paid_intent(stripe_api, 2000)
    refund = call("create-refund", {"paymentIntentId": intent["id"], "amount": 500})
    failed = event(
        "refund.failed", {"id": refund["stripeRefundId"], "status": "failed", "failure_reason": "lost_or_stolen_card"}
    )
    call("process-stripe-webhook", failed)
    assert call("get-refund", {"refundId": refund["id"]})["status"] == "failed"
    assert call("get-payment-intent", {"paymentIntentId": intent["id"]})["amountRefunded"] == 0


def test_a_refund_made_in_the_dashboard_is_adopted_and_counted(domain_db, stripe_api):
    intent = paid_intent(stripe_api, 2000)
    outside = event(
        "refund.created",
        {
            "id": f"re_{uuid.uuid4().hex[:14]}",
            "status": "succeeded",
            "amount": 1500,
            "currency": "usd",
            "payment_intent": intent["stripePaymentIntentId"],
        },
    )
    call("process-stripe-webhook", outside)
    with pytest.raises(OperationError) as exceeded:
        call("create-refund", {"paymentIntentId": intent["id"], "amount": 501})
    assert exceeded.value.code == "refund_exceeds_amount"
    # The dashboard's 1500 is counted: exactly 500 is left, and it can be refunded.
    assert exceeded.value.details["refundable"] == 500
    assert call("get-payment-intent", {"paymentIntentId": intent["id"]})["amountRefunded"] == 1500
    assert call("create-refund", {"paymentIntentId": intent["id"], "amount": 500})["status"] == "succeeded"
    assert call("get-payment-intent", {"paymentIntentId": intent["id"]})["amountRefunded"] == 2000


def test_an_event_that_outruns_its_intent_is_applied_once_the_intent_is_stored(domain_db, stripe_api, monkeypatch):
    import stripe_client

    real_create = stripe_client.create_payment_intent
    early: dict = {}

    def create_then_deliver_event_first(params, *, idempotency_key):
        created = real_create(params, idempotency_key=idempotency_key)
        early["event"] = event(
            "payment_intent.canceled", {"id": created["id"], "status": "canceled", "metadata": created["metadata"]}
        )
        call("process-stripe-webhook", early["event"])
        return created

    monkeypatch.setattr(stripe_client, "create_payment_intent", create_then_deliver_event_first)
    intent = call("create-payment-intent", {"customerId": "dom-early", "amount": 100, "currency": "usd"})
    stored = WebhookEvent.get_by_id(json.loads(early["event"]["payload"])["id"])
    assert stored.status == "processed"
    assert call("get-payment-intent", {"paymentIntentId": intent["id"]})["status"] == "canceled"


def test_a_stripe_event_near_the_doors_1_mb_limit_is_stored_whole(domain_db, stripe_api):
    """TEXT held 64 KB on MariaDB: a larger event Stripe signed was an internal error (drill 10 found it)."""
    intent = call("create-payment-intent", {"customerId": "dom-big", "amount": 900, "currency": "usd"})
    bulky = {"id": intent["stripePaymentIntentId"], "status": "processing", "description": "x" * 900_000}
    big = event("payment_intent.processing", bulky)
    assert len(big["payload"]) > 64 * 1024
    assert call("process-stripe-webhook", big)["duplicate"] is False
    stored = WebhookEvent.get(WebhookEvent.object_id == intent["stripePaymentIntentId"])
    assert json.loads(stored.payload)["data"]["object"]["description"] == bulky["description"]  # nothing cut
