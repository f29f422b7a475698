"""Drill 15 (issue 11, points 5 and 6): webhooks as Stripe sends them today, and no partial writes on bad input.

Events are signed as Stripe signs them and go through the service's own code; the drills' faithful Stripe answers
the look-ups they need (a charge's refunds, whose intent a refund is). The door-level drills run a stack of their
own: a forged flood must cost no task, so its queue is watched with no worker to drain it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe

import stripe_client
from domain import janitor
from errors import OperationError
from models import Customer, IdempotencyRecord, PaymentIntent, PaymentMethod, Refund, WebhookEvent, utcnow
from tests.conftest import RUN, WEBHOOK_SECRET
from tests.domain.helpers import call, context
from tests.drills.conftest import DRILL_LOG_DIR, drill_config, local_broker, make_card
from tests.drills.helpers import customer, vaulted
from tests.drills.report import report
from tests.drills.stack import Stack
from tests.support import services
from tests.support.stripe_proxy import Fault
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def paid(stripe_api: stripe.StripeClient, prefix: str, amount: int = 5000, currency: str = "usd") -> dict:
    return call(
        "create-payment-intent",
        {"customerId": vaulted(stripe_api, prefix), "amount": amount, "currency": currency, "confirm": True},
    )


def deliver(event_type: str, obj: dict, created: int | None = None) -> str:
    """Stripe's POST of one event, signed with the endpoint's secret; returns the stored status."""
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": created if created is not None else int(time.time()),
            "api_version": stripe.api_version,
            "data": {"object": obj},
        }
    )
    call("process-stripe-webhook", {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)})
    return WebhookEvent.get_by_id(event_id).status


# -- point 5: webhooks as Stripe sends them today


def test_charge_refunded_without_a_refunds_list_is_applied_from_the_charge_s_refunds(service, stripe_api):
    intent = paid(stripe_api, "chargerefunded")
    stripe_intent = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    # A refund made in the Dashboard: no metadata of ours; the event that tells of it carries only the charge.
    made = stripe_api.v1.refunds.create(params={"payment_intent": intent["stripePaymentIntentId"], "amount": 700})
    charge = stripe_api.v1.charges.retrieve(stripe_intent.latest_charge).to_dict()
    assert "refunds" not in charge  # as Stripe answers since API version 2022-11-15
    status = deliver("charge.refunded", charge)
    adopted = Refund.get(Refund.stripe_refund_id == made.id)
    report(
        "15",
        "charge.refunded without a refunds list (a Dashboard refund)",
        event=status,
        adopted=adopted.amount,
        refunded=PaymentIntent.get_by_id(intent["id"]).amount_refunded,
    )
    assert status == "processed" and adopted.amount == 700 and adopted.status == "succeeded"
    assert PaymentIntent.get_by_id(intent["id"]).amount_refunded == 700


def test_refund_events_move_a_refund_and_a_failed_one_gives_its_amount_back(service, stripe_api):
    intent = paid(stripe_api, "refundevents")
    refund = call("create-refund", {"paymentIntentId": intent["id"], "amount": 1200})
    at_stripe = stripe_api.v1.refunds.retrieve(refund["stripeRefundId"]).to_dict()
    later = int(time.time()) + 5
    statuses = [deliver("refund.updated", {**at_stripe, "status": "succeeded"}, later)]
    statuses.append(deliver("refund.failed", {**at_stripe, "status": "failed", "failure_reason": "lost"}, later + 1))
    statuses.append(deliver("charge.refund.updated", {**at_stripe, "status": "succeeded"}, later + 2))
    stored = Refund.get_by_id(refund["id"])
    report("15", "refund.updated, refund.failed, then a late charge.refund.updated", events=",".join(statuses))
    assert statuses == ["processed", "processed", "stale"]  # failed is final: nothing moves it back
    assert stored.status == "failed" and stored.failure_reason == "lost"
    assert PaymentIntent.get_by_id(intent["id"]).amount_refunded == 0


def test_an_event_of_the_same_second_never_moves_an_intent_back(service, stripe_api):
    customer_id = vaulted(stripe_api, "samesecond")
    method = call("list-payment-methods", {"customerId": customer_id})["data"][0]
    intent = call(
        "create-payment-intent",
        {"customerId": customer_id, "amount": 1500, "currency": "usd", "paymentMethodId": method["id"]},
    )
    assert intent["status"] == "requires_confirmation"
    created = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).created
    snapshot = {"id": intent["stripePaymentIntentId"], "status": "requires_payment_method", "metadata": {}}
    status = deliver("payment_intent.created", snapshot, created)  # Stripe's first event, of the same second
    report("15", "payment_intent.created of the create's second, after the create's answer", event=status)
    assert status == "stale"
    assert PaymentIntent.get_by_id(intent["id"]).status == "requires_confirmation"


def test_an_older_refund_answer_never_moves_back_a_refund_an_event_moved_first(service, stripe_api, monkeypatch):
    """The refund's event outruns the create's answer: the answer, older news, must not undo what the event said."""
    intent = paid(stripe_api, "olderanswer")
    real_create = stripe_client.create_refund
    moved: list[str] = []

    def event_first_then_the_answer(params: dict, *, idempotency_key: str) -> dict:
        created = real_create(params, idempotency_key=idempotency_key)
        moved.append(deliver("refund.updated", {**created, "status": "requires_action"}, int(time.time()) + 5))
        return {**created, "status": "pending"}  # what Stripe answered when it took the request

    monkeypatch.setattr(stripe_client, "create_refund", event_first_then_the_answer)
    refund = call("create-refund", {"paymentIntentId": intent["id"], "amount": 800})
    report(
        "15", "refund.updated (requires_action) applied before the create's answer (pending)", status=refund["status"]
    )
    assert moved == ["processed"]
    assert refund["status"] == "requires_action" and Refund.get_by_id(refund["id"]).status == "requires_action"


def test_events_about_objects_that_are_not_ours_are_ignored_not_left_unmatched(service, stripe_api):
    foreign_customer = stripe_api.v1.customers.create()
    foreign = stripe_api.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "customer": foreign_customer.id,
            "payment_method": make_card(stripe_api),
            "confirm": True,
        }
    )
    refund = stripe_api.v1.refunds.create(params={"payment_intent": foreign.id, "amount": 300})
    statuses = [
        deliver("payment_intent.succeeded", foreign.to_dict()),
        deliver("refund.created", refund.to_dict()),
    ]
    report("15", "events of another integration on a shared Stripe account", events=",".join(statuses))
    assert statuses == ["ignored", "ignored"]


def test_unmatched_events_are_retried_oldest_first_and_given_up_after_three_days(service, stripe_api):
    intent = paid(stripe_api, "unmatched")
    stale_id, fresh_id = f"evt_{uuid.uuid4().hex}", f"evt_{uuid.uuid4().hex}"
    for event_id, age, object_id, status in (
        (stale_id, dt.timedelta(days=4), f"pi_never_{uuid.uuid4().hex[:8]}", "canceled"),
        (fresh_id, dt.timedelta(minutes=5), intent["stripePaymentIntentId"], "succeeded"),
    ):
        payload = {
            "id": event_id,
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {"object": {"id": object_id, "status": status, "metadata": {"vy_payment_intent_id": "x"}}},
        }
        WebhookEvent.create(
            id=event_id,
            type="payment_intent.succeeded",
            event_created=payload["created"],
            object_id=object_id,
            status="unmatched",
            received_at=utcnow() - age,
            payload=json.dumps(payload),
        )
    counts = janitor.run()
    report("15", "janitor on an unmatched event 4 days old and one 5 minutes old", janitor=str(counts))
    assert WebhookEvent.get_by_id(stale_id).status == "expired"
    assert WebhookEvent.get_by_id(fresh_id).status == "processed"


@pytest.fixture(scope="module")
def door_without_workers(drill_database: str, sentry) -> Iterator[Stack]:
    """Only the REST door, on a vhost of its own: anything it queues stays there for the drill to count."""
    vhost = services.create_rabbit_vhost(f"vyp_drill15_{RUN}")
    config = drill_config(
        "drill15-door",
        DRILL_LOG_DIR,
        sentry,
        db_name=drill_database,
        broker_url=local_broker(vhost),
        stripe_api_base="http://127.0.0.1:9",  # the door never calls Stripe
        stripe_key="sk_test_drill15",
        webhook_secret=WEBHOOK_SECRET,  # the suite's (tests/conftest.py), which this module signs with
        api_keys=("drill15-key",),
        rest_timeout_ms=3000,
    )
    stack = Stack(config)
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()
        services.delete_rabbit_vhost(vhost)


def queued(stack: Stack, queue: str) -> int:
    """Messages waiting in a queue of the stack's broker; a queue nothing declared is an error, never 0."""
    app = stack.celery()
    with app.connection_for_read() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


def test_a_forged_webhook_flood_is_refused_by_the_door_without_queuing_a_task(door_without_workers):
    url = door_without_workers.api_url + "/webhooks/stripe"
    # Positive control: one valid signed event is queued (no worker takes it), and the count sees it.
    genuine = json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded", "created": 1, "data": {"object": {}}}
    )
    accepted = requests.post(url, data=genuine, headers={"Stripe-Signature": sign(genuine, WEBHOOK_SECRET)}, timeout=30)
    assert accepted.status_code != 400, accepted.text  # no worker answers it: the door's wait ends in a timeout
    assert queued(door_without_workers, "webhooks") == 1
    payload = json.dumps({"id": "evt_forged", "type": "payment_intent.succeeded", "created": 1, "data": {"object": {}}})
    forged = [
        sign(payload, "whsec_not_the_endpoint_s"),
        sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600),
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda i: requests.post(
                    url,
                    data=payload,
                    headers={"Stripe-Signature": forged[i % 2], "Content-Type": "application/json"},
                    timeout=30,
                ),
                range(60),
            )
        )
    took = time.monotonic() - started
    report(
        "15",
        "60 forged webhooks (wrong secret, or signed an hour ago) at a door with no worker",
        refused=sum(a.status_code == 400 for a in answers),
        seconds=round(took, 1),
        queued=queued(door_without_workers, "webhooks"),
    )
    assert [a.status_code for a in answers] == [400] * 60
    assert {a.json()["error"]["code"] for a in answers} == {"invalid_signature"}
    assert queued(door_without_workers, "webhooks") == 1  # the genuine one alone


# -- point 6: no partial writes on bad input


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("kwd", 1005), ("bhd", 2501), ("jod", 999), ("omr", 1001), ("tnd", 12345), ("isk", 150)],
)
def test_amounts_stripe_would_refuse_are_refused_before_any_write(service, currency, amount):
    customer_id = customer(f"step-{currency}")
    with pytest.raises(OperationError) as refused:
        call("create-payment-intent", {"customerId": customer_id, "amount": amount, "currency": currency})
    customers_made = service.requests_for(lambda s: s.method == "POST" and s.path == "/v1/customers")
    assert refused.value.code == "validation_error"
    assert Customer.get_or_none(Customer.platform_customer_id == customer_id) is None
    assert not [s for s in customers_made if customer_id.encode() in s.body]


def test_an_amount_in_step_in_a_three_decimal_currency_is_charged(service, stripe_api):
    intent = paid(stripe_api, "kwd-ok", amount=5000, currency="kwd")
    assert intent["status"] == "succeeded" and intent["currency"] == "kwd"
    with pytest.raises(OperationError) as refused:
        call("create-refund", {"paymentIntentId": intent["id"], "amount": 1005})
    assert refused.value.code == "validation_error"
    assert Refund.select().where(Refund.payment_intent_id == intent["id"]).count() == 0
    assert PaymentIntent.get_by_id(intent["id"]).amount_refunded == 0
    assert call("create-refund", {"paymentIntentId": intent["id"], "amount": 1000})["status"] == "succeeded"


def test_a_detach_stripe_refused_is_not_a_local_delete(service, stripe_api):
    customer_id = vaulted(stripe_api, "detach")
    method = call("list-payment-methods", {"customerId": customer_id})["data"][0]
    detach = f"/v1/payment_methods/{method['stripePaymentMethodId']}/detach"
    service.add_rule(
        lambda verb, path, form: verb == "POST" and path == detach,
        [Fault.error(400, "invalid_request_error", code="payment_method_unexpected_state")],
    )
    with pytest.raises(OperationError) as refused:
        call("delete-payment-method", {"paymentMethodId": method["id"]})
    still = PaymentMethod.get_by_id(method["id"])
    report(
        "15", "Stripe refused the detach of a vaulted card", answered=refused.value.code, deleted=bool(still.deleted_at)
    )
    assert refused.value.code == "validation_error" and still.deleted_at is None
    assert call("delete-payment-method", {"paymentMethodId": method["id"]}, context()) == {
        "id": method["id"],
        "deleted": True,
    }


def test_waiting_for_a_sibling_over_kafka_spends_no_failure_retries(stack, api, stripe_api, proxy, mariadb):
    """A Kafka request whose key another execution holds waits (many retries of the task), then meets two Stripe
    failures: it still has every failure retry left, and pays."""
    from domain import idempotency
    from domain.schemas import CreatePaymentIntentInput
    from tests.drills.helpers import vault

    customer_id = customer("kafkawait")
    vault(api, stripe_api, customer_id)
    payload = {"customerId": customer_id, "amount": 1300, "currency": "usd", "confirm": True}
    scoped = f"kafka:create-payment-intent:wait-{uuid.uuid4().hex}"
    fingerprint = idempotency.fingerprint(
        "create-payment-intent", CreatePaymentIntentInput.model_validate(payload).canonical()
    )
    holds_until = utcnow() + dt.timedelta(seconds=6)  # another execution holds the key for 6 s, then dies
    first_delivery = IdempotencyRecord.insert(
        key_hash=idempotency.key_hash(scoped),
        operation="create-payment-intent",
        fingerprint=fingerprint,
        request=CreatePaymentIntentInput.model_validate(payload).canonical(),
        state="in_flight",
        owner="the-first-delivery",
        execution_token="tok",
        execution_until=holds_until,
        resource_id=f"vypi_{uuid.uuid4().hex[:20]}",
        trace_id="trace",
        locked_until=holds_until,
        expires_at=utcnow() + dt.timedelta(days=1),
    )
    stack.sql(*first_delivery.sql())  # into the stack's database, with the model's defaults
    proxy.add_rule(
        lambda method, path, form: (
            method == "POST" and path == "/v1/payment_intents" and form.get("metadata[vy_customer_id]") == [customer_id]
        ),
        [Fault.error(500, "api_error")] * 2,
    )
    try:
        result = stack.send(
            "create-payment-intent", payload, {"idempotencyKey": scoped, "door": "kafka", "waitInFlight": True}
        )
        envelope = result.get(timeout=120)
    finally:
        proxy.clear()
    report("15", "Kafka request waiting 6 s on its key, then two Stripe 500s", answer="response" in envelope)
    assert envelope.get("response", {}).get("status") == "succeeded", envelope
