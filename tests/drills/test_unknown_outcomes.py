"""Drills 1, 7 and 8 (sweeper): a worker killed between Stripe and the commit, outcomes nobody knows, and
webhooks that never came — against a localstripe that keeps Stripe's idempotency and can hold its answers."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe

import settings
import stripe_client
from domain import idempotency, janitor
from domain.schemas import CreatePaymentIntentInput
from domain.webhooks import sweep_events
from errors import OperationError, TransientError
from models import IdempotencyRecord, PaymentIntent, Refund, WebhookEvent, ZtrackingPaymentIntent
from tests.conftest import LOG_DIR, STRIPE_KEY, make_card
from tests.domain.helpers import call, context
from tests.drills.report import report
from tests.support import services

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stripe_like() -> Iterator[str]:
    """localstripe honouring Idempotency-Key like Stripe, with delays on cue."""
    port = services.free_port()
    with open(LOG_DIR / "localstripe-drills.log", "ab") as log:
        proc = subprocess.Popen(
            [services.PYTHON, "-m", "stand_ins.localstripe_server", "--port", str(port), "--idempotency"],
            cwd=services.ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        services.wait_until(
            lambda: requests.get(f"{base}/v1/customers", auth=(STRIPE_KEY, ""), timeout=1).ok, 30, "localstripe"
        )
        yield base
    finally:
        services.stop(proc)


@pytest.fixture()
def at_stripe(stripe_like, monkeypatch, mariadb) -> Iterator[stripe.StripeClient]:
    """The service's Stripe client pointed at the drill's Stripe, with a 1 s timeout."""
    monkeypatch.setenv("STRIPE_API_BASE", stripe_like)
    monkeypatch.setenv("STRIPE_TIMEOUT_S", "1")
    settings.reload_settings()
    stripe_client.reset_client()
    requests.delete(f"{stripe_like}/_config/delay", timeout=5)
    import models

    models.database.initialize(mariadb)
    with models.unit_of_work():
        yield stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_like})
    requests.delete(f"{stripe_like}/_config/delay", timeout=5)
    monkeypatch.undo()
    settings.reload_settings()
    stripe_client.reset_client()


def hold(base: str, path_prefix: str, seconds: float, count: int = 1) -> None:
    """Stripe does the work, then holds its answer: the caller's timeout or death lands in between."""
    requests.post(
        f"{base}/_config/delay",
        json={"path_prefix": path_prefix, "method": "POST", "seconds": seconds, "count": count},
        timeout=5,
    ).raise_for_status()


def stripe_calls(base: str, route: str) -> int:
    return requests.get(f"{base}/_config/requests", timeout=5).json().get(route, 0)


def intents_at_stripe(client: stripe.StripeClient, customer_id: str) -> list:
    from domain.customers import find_customer

    customer = find_customer(customer_id)
    if customer is None:
        return []
    return list(client.v1.payment_intents.list(params={"customer": customer.stripe_customer_id, "limit": 100}).data)


@pytest.fixture()
def customer_id(at_stripe: stripe.StripeClient) -> str:
    """A new customer with a default card at the drill's Stripe."""
    customer_id = f"drill-{uuid.uuid4().hex[:10]}"
    call(
        "create-payment-method",
        {"customerId": customer_id, "stripePaymentMethodId": make_card(at_stripe), "setAsDefault": True},
    )
    return customer_id


def answer_lost(stripe_like: str, operation: str, payload: dict, ctx: Any) -> None:
    """Stripe does the work, then holds its answer 3 s, past the service's 1 s timeout: the call ends in a
    TransientError with the outcome unknown to the service."""
    path = {"create-payment-intent": "/v1/payment_intents", "create-refund": "/v1/refunds"}[operation]
    hold(stripe_like, path, seconds=3)
    with pytest.raises(TransientError):
        call(operation, payload, ctx)


def test_drill_7_a_timed_out_create_is_looked_up_by_the_janitor_into_one_intent(at_stripe, stripe_like, customer_id):
    payload = {"customerId": customer_id, "amount": 2500, "currency": "usd", "confirm": True}
    ctx = context(final_attempt=True)
    posts_before = stripe_calls(stripe_like, "POST /v1/payment_intents")
    answer_lost(stripe_like, "create-payment-intent", payload, ctx)  # Stripe charged; the worker never heard back
    assert PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count() == 0
    counts = janitor.run(grace=dt.timedelta(0))
    stored = PaymentIntent.get(PaymentIntent.customer_id == customer_id)
    assert stored.status == "succeeded" and stored.amount_received == 2500
    history = ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == stored.id)
    assert [h.cause for h in history] == ["janitor:fetched:create-payment-intent"]
    retry = call("create-payment-intent", payload, context(key=ctx.scoped_key))  # the caller's own retry
    assert retry["id"] == stored.id and retry["clientSecret"]
    assert len(intents_at_stripe(at_stripe, customer_id)) == 1
    assert stripe_calls(stripe_like, "POST /v1/payment_intents") == posts_before + 1  # looked up, never sent again
    report(
        "7 janitor looks up a timed-out create",
        "Stripe answer held 3 s past a 1 s timeout, worker gave up",
        janitor=str(counts),
        stripe_intents=1,
        rows=1,
        ztracking_rows=1,
        caller_retry="same intent",
    )


def test_drill_7_past_24_hours_the_janitor_fetches_the_intent_from_stripe(at_stripe, stripe_like, customer_id):
    ctx = context(final_attempt=True)
    payload = {"customerId": customer_id, "amount": 1800, "currency": "usd", "confirm": True}
    answer_lost(stripe_like, "create-payment-intent", payload, ctx)
    record = IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(ctx.scoped_key))
    IdempotencyRecord.update(created_at=record.created_at - dt.timedelta(hours=25)).where(
        IdempotencyRecord.id == record.id
    ).execute()
    counts = janitor.run(grace=dt.timedelta(0))
    stored = PaymentIntent.get(PaymentIntent.customer_id == customer_id)
    history = ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == stored.id)
    assert [h.cause for h in history] == ["janitor:fetched:create-payment-intent"]
    assert stored.stripe_payment_intent_id == intents_at_stripe(at_stripe, customer_id)[0].id
    assert stripe_calls(stripe_like, "POST /v1/payment_intents") >= 1
    report(
        "7 janitor fetches after 24 h",
        "Stripe's idempotency window passed for an unanswered create",
        janitor=str(counts),
        stripe_intents=len(intents_at_stripe(at_stripe, customer_id)),
        rows=PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count(),
    )


def test_drill_7_a_create_that_never_reached_stripe_is_closed_not_executed(at_stripe, customer_id):
    ctx = context(owner="worker-that-died")
    canonical = CreatePaymentIntentInput.model_validate(
        {"customerId": customer_id, "amount": 900, "currency": "usd"}
    ).canonical()
    claim = idempotency.claim(
        "create-payment-intent", ctx.scoped_key, canonical, ctx.owner, "payment_intent", 86400 * 2, "trace"
    )
    old = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=25)
    IdempotencyRecord.update(created_at=old, updated_at=old, locked_until=old).where(
        IdempotencyRecord.id == claim.record_id
    ).execute()
    janitor.run(grace=dt.timedelta(0))
    with pytest.raises(OperationError) as answered:
        call(
            "create-payment-intent",
            {"customerId": customer_id, "amount": 900, "currency": "usd"},
            context(key=ctx.scoped_key),
        )
    assert answered.value.code == "internal_error" and answered.value.details == {"stripeCalled": False}
    assert intents_at_stripe(at_stripe, customer_id) == []
    assert PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count() == 0
    report(
        "7 janitor on a create Stripe never saw",
        "worker died holding the claim, 25 h ago",
        stripe_intents=0,
        rows=0,
        answer="internal_error",
    )


def test_drill_7_a_timed_out_refund_is_looked_up_once_and_the_total_holds(at_stripe, stripe_like, customer_id):
    intent = call(
        "create-payment-intent", {"customerId": customer_id, "amount": 3000, "currency": "usd", "confirm": True}
    )
    answer_lost(
        stripe_like, "create-refund", {"paymentIntentId": intent["id"], "amount": 1200}, context(final_attempt=True)
    )
    pending = Refund.get(Refund.payment_intent_id == intent["id"])
    assert pending.status == "pending" and pending.stripe_refund_id is None
    assert PaymentIntent.get_by_id(intent["id"]).amount_refunded == 1200  # held while unknown
    janitor.run(grace=dt.timedelta(0))
    refund = Refund.get_by_id(pending.id)
    assert refund.status == "succeeded" and refund.stripe_refund_id
    at_stripe_refunds = at_stripe.v1.refunds.list(params={"payment_intent": intent["stripePaymentIntentId"]}).data
    assert [r.amount for r in at_stripe_refunds] == [1200]
    assert PaymentIntent.get_by_id(intent["id"]).amount_refunded == 1200
    report(
        "7 janitor looks up a timed-out refund",
        "Stripe's refund answer held past the timeout",
        stripe_refunds=len(at_stripe_refunds),
        refunded_at_stripe=sum(r.amount for r in at_stripe_refunds),
        refunded_in_db=PaymentIntent.get_by_id(intent["id"]).amount_refunded,
    )


def test_drill_8_events_no_webhook_delivered_are_recovered_by_the_sweeper(at_stripe, customer_id):
    method = call("list-payment-methods", {"customerId": customer_id})["data"][0]
    intent = call(
        "create-payment-intent",
        {"customerId": customer_id, "amount": 1500, "currency": "usd", "paymentMethodId": method["id"]},
    )
    assert intent["status"] == "requires_confirmation"
    at_stripe.v1.payment_intents.confirm(intent["stripePaymentIntentId"])  # by Stripe.js; no webhook reaches us
    recovered = sweep_events()
    assert recovered >= 1
    stored = PaymentIntent.get_by_id(intent["id"])
    assert stored.status == "succeeded"
    event = WebhookEvent.get(
        WebhookEvent.object_id == intent["stripePaymentIntentId"], WebhookEvent.type == "payment_intent.succeeded"
    )
    assert event.status == "processed"
    assert sweep_events() == 0  # a second pass finds nothing new
    report(
        "8 sweeper recovers missed events",
        "intent confirmed at Stripe with no webhook endpoint",
        recovered=recovered,
        second_pass=0,
        status=stored.status,
    )


def test_drill_1_worker_killed_between_stripe_and_commit_charges_once(stripe_like, mariadb, localstripe_url):
    """SIGKILL the worker while Stripe holds its answer; another worker gets the task again."""
    vhost = services.create_rabbit_vhost(f"vyp_drill1_{uuid.uuid4().hex[:8]}")
    env = {"CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}", "STRIPE_API_BASE": stripe_like}
    log = LOG_DIR / "drill1-workers.log"
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_like})
    customer_id = f"drill1-{uuid.uuid4().hex[:8]}"
    dispatcher = (
        "import json,sys; from tasks.operations import TASKS; "
        "r = TASKS[sys.argv[1]].apply_async(args=[json.loads(sys.argv[2]), {'idempotencyKey': sys.argv[3]}]); "
        "print(json.dumps(r.get(timeout=120)))"
    )

    def send(operation: str, payload: dict, key: str) -> subprocess.Popen:
        return subprocess.Popen(
            [services.PYTHON, "-c", dispatcher, operation, json.dumps(payload), key],
            cwd=services.ROOT,
            env={**services.os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    first = services.start_worker(
        env, log, "payments,payment-methods", f"drill1a-{uuid.uuid4().hex[:6]}", concurrency=4
    )
    second = None
    try:
        vault = send(
            "create-payment-method",
            {"customerId": customer_id, "setAsDefault": True, "stripePaymentMethodId": make_card(client)},
            f"pm-{uuid.uuid4()}",
        )
        assert "response" in json.loads(vault.communicate(timeout=120)[0])
        before = stripe_calls(stripe_like, "POST /v1/payment_intents")
        hold(stripe_like, "/v1/payment_intents", seconds=6)
        pending = send(
            "create-payment-intent",
            {"customerId": customer_id, "amount": 4100, "currency": "usd", "confirm": True},
            f"pi-{uuid.uuid4()}",
        )
        services.wait_until(
            lambda: stripe_calls(stripe_like, "POST /v1/payment_intents") > before, 60, "the Stripe call"
        )
        first.send_signal(signal.SIGKILL)  # Stripe has charged; nothing is committed
        first.wait(10)
        second = services.start_worker(
            env, log, "payments,payment-methods", f"drill1b-{uuid.uuid4().hex[:6]}", concurrency=4
        )
        envelope = json.loads(pending.communicate(timeout=120)[0])
    finally:
        for proc in (first, second):
            if proc is not None:
                services.stop(proc)
        services.delete_rabbit_vhost(vhost)
    assert envelope["response"]["status"] == "succeeded"
    import models

    models.database.initialize(mariadb)
    with models.unit_of_work():
        rows = PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count()
        intents = intents_at_stripe(client, customer_id)
    assert rows == 1 and len(intents) == 1
    assert intents[0].id == envelope["response"]["stripePaymentIntentId"]
    calls = stripe_calls(stripe_like, "POST /v1/payment_intents") - before
    assert calls == 2  # the first attempt, and the redelivery repeating the same idempotency key
    report(
        "1 worker SIGKILL between Stripe and commit",
        "Stripe answer held 6 s; worker SIGKILLed; new worker",
        stripe_calls=calls,
        stripe_intents=len(intents),
        rows=rows,
        replies=1,
    )
