"""Races between a worker, Stripe's webhooks, retries and the janitor: each ends with one answer and one write."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest

import stripe_client
from domain import idempotency, janitor
from errors import OperationError, TransientError
from models import ALL_MODELS, IdempotencyRecord, PaymentIntent, Refund, WebhookEvent, utcnow
from tests.conftest import WEBHOOK_SECRET, make_card
from tests.domain.helpers import call, context
from tests.support.stripe_objects import customers_of, intents_of_customers
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def signed(event_type: str, obj: dict) -> dict:
    payload = json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "created": int(time.time()), "data": {"object": obj}}
    )
    return {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)}


def vaulted(stripe_api, customer_id: str, number: str = "4242424242424242") -> dict:
    return call(
        "create-payment-method",
        {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": True},
    )


def test_a_refund_event_that_outruns_the_commit_is_our_refund_not_a_second_one(domain_db, stripe_api, monkeypatch):
    customer_id = f"race-{uuid.uuid4().hex[:8]}"
    vaulted(stripe_api, customer_id)
    intent = call(
        "create-payment-intent", {"customerId": customer_id, "amount": 1000, "currency": "usd", "confirm": True}
    )
    real_create = stripe_client.create_refund

    def stripe_then_webhook(params, *, idempotency_key):
        created = real_create(params, idempotency_key=idempotency_key)
        call(
            "process-stripe-webhook", signed("refund.created", {**created, "payment_intent": params["payment_intent"]})
        )
        return created

    monkeypatch.setattr(stripe_client, "create_refund", stripe_then_webhook)
    refund = call("create-refund", {"paymentIntentId": intent["id"], "amount": 400})
    refunds = list(Refund.select().where(Refund.payment_intent_id == intent["id"]))
    assert [(r.id, r.amount, r.status) for r in refunds] == [(refund["id"], 400, "succeeded")]
    assert PaymentIntent.get_by_id(intent["id"]).amount_refunded == 400
    monkeypatch.undo()
    assert call("create-refund", {"paymentIntentId": intent["id"], "amount": 600})["amount"] == 600


def test_a_retry_sends_stripe_exactly_what_the_first_attempt_sent(domain_db, stripe_api, monkeypatch):
    customer_id = f"race-{uuid.uuid4().hex[:8]}"
    first_card = vaulted(stripe_api, customer_id)
    sent: list[dict] = []
    real_create = stripe_client.create_payment_intent

    def time_out_once(params, *, idempotency_key):
        sent.append({"params": params, "key": idempotency_key})
        if len(sent) == 1:
            raise TransientError("Stripe timed out", code="stripe_error")
        return real_create(params, idempotency_key=idempotency_key)

    monkeypatch.setattr(stripe_client, "create_payment_intent", time_out_once)
    payload = {"customerId": customer_id, "amount": 700, "currency": "usd", "confirm": True}
    ctx = context(final_attempt=True)
    with pytest.raises(TransientError):
        call("create-payment-intent", payload, ctx)
    second_card = vaulted(stripe_api, customer_id, "5555555555554444")  # the default changes between attempts
    assert second_card["isDefault"] and second_card["id"] != first_card["id"]
    retried = call("create-payment-intent", payload, context(key=ctx.scoped_key))
    assert sent[0] == sent[1]
    assert retried["paymentMethodId"] == first_card["id"]


def test_a_stored_outcome_is_never_given_back_and_only_its_holder_completes(domain_db):
    key = str(uuid.uuid4())
    held = idempotency.claim("create-refund", key, {"a": 1}, "task-a", "refund", 3600, "t")
    assert not idempotency.complete(
        idempotency.Claim.of(IdempotencyRecord.get_by_id(held.record_id), "intruder"), {"response": {}}
    )
    assert idempotency.complete(held, {"response": {"id": held.resource_id}})
    assert not idempotency.release(held)
    assert IdempotencyRecord.get_by_id(held.record_id).state == "completed"


def test_an_early_event_left_unmatched_is_applied_by_the_janitor(domain_db, stripe_api):
    intent = call(
        "create-payment-intent", {"customerId": f"race-{uuid.uuid4().hex[:8]}", "amount": 300, "currency": "usd"}
    )
    event_id = f"evt_{uuid.uuid4().hex}"
    # The event committed after the create had looked for early events: it waits, unmatched.
    WebhookEvent.create(
        id=event_id,
        type="payment_intent.canceled",
        event_created=int(time.time()),
        object_id=intent["stripePaymentIntentId"],
        status="unmatched",
        received_at=utcnow() - dt.timedelta(minutes=5),
        payload=json.dumps(
            {
                "id": event_id,
                "type": "payment_intent.canceled",
                "data": {"object": {"id": intent["stripePaymentIntentId"], "status": "canceled"}},
            }
        ),
    )
    counts = janitor.run(grace=dt.timedelta(minutes=1))
    assert counts["event: applied"] >= 1
    assert WebhookEvent.get_by_id(event_id).status == "processed"
    assert PaymentIntent.get_by_id(intent["id"]).status == "canceled"


def test_a_refused_create_writes_nothing_here_or_at_stripe(domain_db, stripe_api):
    # The worker of the suite applies other tests' late webhooks meanwhile (events, history, webhook rows): what
    # is counted is every row of every table that this create could have written, not the tables' sizes.
    def ours(intents_before: set[str]) -> dict[str, int]:
        at_stripe_ids = {c["id"] for c in customers_of(stripe_api, customer_id)} | {
            i["id"] for i in intents_of_customers(stripe_api, [customer_id])
        }
        counts = {}
        for model in ALL_MODELS:
            fields = model._meta.fields
            if "platform_customer_id" in fields:
                where = model.platform_customer_id == customer_id
            elif "customer_id" in fields:
                where = model.customer_id == customer_id
            elif "payment_intent_id" in fields:  # a row of an intent that did not exist before the create
                where = model.payment_intent_id.not_in(intents_before) if intents_before else True
            elif "key_hash" in fields:
                where = model.key_hash == idempotency.key_hash(key)
            elif "object_id" in fields:
                where = model.object_id.in_(at_stripe_ids) if at_stripe_ids else False
            else:
                continue  # currencies and the publishers' leases hold nothing of a payment
            counts[model._meta.table_name] = model.select().where(where).count()
        return counts

    def at_stripe() -> tuple[int, int]:
        return len(customers_of(stripe_api, customer_id)), len(intents_of_customers(stripe_api, [customer_id]))

    customer_id = f"race-{uuid.uuid4().hex[:8]}"
    key = f"test:{uuid.uuid4()}"
    intents_before = {i.id for i in PaymentIntent.select(PaymentIntent.id)}
    nothing = ours(intents_before)
    assert set(nothing) >= {"customer", "payment_intent", "ztracking_payment_intent", "refund", "payment_method"}
    assert set(nothing) >= {"webhook_event", "idempotency_record", "payment_attempt", "payment_event"}
    assert not any(nothing.values())
    with pytest.raises(OperationError) as refused:
        call(
            "create-payment-intent",
            {"customerId": customer_id, "amount": 300, "currency": "usd", "paymentMethodId": "vypm_unknown"},
            context(key),
        )
    assert refused.value.code == "not_found"
    # The one row written is the key's stored refusal (its replay answers the same, as Stripe's does): no customer,
    # intent, history, attempt or event.
    assert ours(intents_before) == {**nothing, "idempotency_record": 1}
    stored = IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(key))
    assert stored.outcome["error"]["code"] == "not_found"
    assert at_stripe() == (0, 0)
    # Positive control: the same create without the unknown card writes here and at Stripe, and the checks see it.
    call("create-payment-intent", {"customerId": customer_id, "amount": 300, "currency": "usd"})
    grown = {table for table, count in ours(intents_before).items() if count}
    assert {"customer", "payment_intent", "ztracking_payment_intent", "payment_event"} <= grown
    assert at_stripe() == (1, 1)


def test_settings_never_show_their_secrets():
    import dataclasses

    from settings import get_settings

    secret = dataclasses.replace(
        get_settings(),
        tidb_password="db-secret-x",
        api_keys=("api-secret-x",),
        stripe_secret_key="sk_test_secret_x",
        stripe_webhook_secret="whsec_secret_x",
    )
    text = repr(secret) + str(secret)
    for value in ("db-secret-x", "api-secret-x", "sk_test_secret_x", "whsec_secret_x"):
        assert value not in text


def test_a_vault_retry_sends_stripe_the_default_the_first_attempt_chose(domain_db, stripe_api, monkeypatch):
    """Between the attempts the same card is vaulted again: the retry still sends the first attempt's default, under
    the same key (another value under that key would be Stripe's idempotency_error, answered as a failure)."""
    customer_id = f"race-{uuid.uuid4().hex[:8]}"
    sent: list[tuple] = []
    real_set_default = stripe_client.set_default_payment_method

    def time_out_once(customer, method, *, idempotency_key):
        sent.append((customer, method, idempotency_key))
        if len(sent) == 1:
            raise TransientError("Stripe timed out", code="stripe_error")
        return real_set_default(customer, method, idempotency_key=idempotency_key)

    monkeypatch.setattr(stripe_client, "set_default_payment_method", time_out_once)
    payload = {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True}
    ctx = context(final_attempt=False)
    with pytest.raises(TransientError):
        call("create-payment-method", payload, ctx)
    monkeypatch.setattr(stripe_client, "set_default_payment_method", real_set_default)
    vaulted(stripe_api, customer_id)  # the same card, another pm_…, vaulted meanwhile under another key
    monkeypatch.setattr(stripe_client, "set_default_payment_method", time_out_once)
    call("create-payment-method", payload, context(key=ctx.scoped_key, owner=ctx.owner))
    assert len(sent) == 2 and sent[0] == sent[1]
