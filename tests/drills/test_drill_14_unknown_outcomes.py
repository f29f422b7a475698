"""Drill 14 (issue 11, points 2 to 4): money safety under Stripe's real contract.

Stripe saves a 5xx under its idempotency key and replays it for 24 h, so "retry the same key and hope" never
resolves one: the object is looked up. What cannot be told is said (`outcome_unknown`), and the janitor only ever
looks at Stripe, never starts money movement. Against the drills' faithful Stripe: localstripe behind the proxy
that keeps Stripe's idempotency (stand_ins/stripe_idempotency.py) and plays the faults.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import stripe

from domain import idempotency, janitor
from domain.schemas import CreatePaymentIntentInput
from errors import OperationError, TransientError
from models import IdempotencyRecord, PaymentIntent, Refund, ZtrackingPaymentIntent, utcnow
from tests.domain.helpers import call, context
from tests.drills.conftest import service_database_of_its_own
from tests.drills.helpers import customer, vault, vaulted
from tests.drills.report import report
from tests.support.stripe_objects import intents_of_customers, refunds_of
from tests.support.stripe_proxy import ACT_THEN_500, FAIL_WHILE_EXECUTING, TIMEOUT_AFTER_SENT, Fault, StripeProxy

pytestmark = pytest.mark.integration

SAVED_500 = Fault(FAIL_WHILE_EXECUTING)


# A database of this drill's own: the janitor works on every claim it finds, and here it finds only ours.
service_database = service_database_of_its_own("drill14")


def create_posts(proxy: StripeProxy, customer_id: str) -> list:
    return proxy.requests_for(
        lambda s: (
            s.method == "POST"
            and s.path == "/v1/payment_intents"
            and s.form.get("metadata[vy_customer_id]") == [customer_id]
        )
    )


def lookups(proxy: StripeProxy, path: str) -> list:
    return proxy.requests_for(lambda s: s.method == "GET" and s.path.startswith(path + "?"))


def on_create_for(customer_id: str):
    return lambda method, path, form: (
        method == "POST" and path == "/v1/payment_intents" and form.get("metadata[vy_customer_id]") == [customer_id]
    )


def on_refund_of(stripe_intent_id: str):
    return lambda method, path, form: (
        method == "POST" and path == "/v1/refunds" and form.get("payment_intent") == [stripe_intent_id]
    )


def paid(stripe_api: stripe.StripeClient, prefix: str, amount: int = 5000) -> dict:
    return call(
        "create-payment-intent",
        {"customerId": vaulted(stripe_api, prefix), "amount": amount, "currency": "usd", "confirm": True},
    )


def record_of(key: str) -> IdempotencyRecord:
    return IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(key))


# -- point 2: a 5xx is an unknown outcome, resolved by a look-up


def test_a_500_stripe_saved_after_acting_is_resolved_by_looking_the_intent_up_not_by_replaying_its_key(
    service, stripe_api
):
    customer_id = vaulted(stripe_api, "saved500")
    service.add_rule(on_create_for(customer_id), [Fault(ACT_THEN_500)])
    intent = call(
        "create-payment-intent", {"customerId": customer_id, "amount": 2100, "currency": "usd", "confirm": True}
    )
    at_stripe = intents_of_customers(stripe_api, [customer_id])
    posts = create_posts(service, customer_id)
    report(
        "14",
        "Stripe charged, then answered 500 (saved under the key)",
        answered=intent["status"],
        stripe_posts=len(posts),
        lookups=len(lookups(service, "/v1/payment_intents")),
        intents_at_stripe=len(at_stripe),
    )
    assert intent["status"] == "succeeded" and intent["stripePaymentIntentId"] == at_stripe[0]["id"]
    assert len(at_stripe) == 1 and len(posts) == 1  # found by its metadata; the key was never sent again


def test_a_500_stripe_did_not_act_on_is_sent_again_under_a_new_derived_key_with_the_same_bytes(service, stripe_api):
    customer_id = vaulted(stripe_api, "notacted")
    service.add_rule(on_create_for(customer_id), [Fault.error(500, "api_error")])
    ctx = context(final_attempt=False)
    payload = {"customerId": customer_id, "amount": 2200, "currency": "usd", "confirm": True}
    with pytest.raises(TransientError) as first:
        call("create-payment-intent", payload, ctx)
    assert first.value.code == "stripe_error"  # nothing acted, known: a plain retry
    intent = call("create-payment-intent", payload, ctx)  # the task's retry
    posts = create_posts(service, customer_id)
    report(
        "14",
        "500 with Stripe-Should-Retry: true, then the retry",
        stripe_posts=len(posts),
        keys=len({p.idempotency_key for p in posts}),
        intents_at_stripe=len(intents_of_customers(stripe_api, [customer_id])),
    )
    assert intent["status"] == "succeeded"
    assert [p.idempotency_key for p in posts] == [posts[0].idempotency_key, posts[0].idempotency_key + "-s2"]
    assert posts[0].body == posts[1].body
    assert len(intents_of_customers(stripe_api, [customer_id])) == 1


def test_a_saved_500_with_nothing_found_stays_outcome_unknown_never_a_new_key_until_the_janitor_looks(
    service, stripe_api
):
    customer_id = vaulted(stripe_api, "unknown")
    service.add_rule(on_create_for(customer_id), [SAVED_500])
    ctx = context(final_attempt=False)
    payload = {"customerId": customer_id, "amount": 2300, "currency": "usd", "confirm": True}
    codes = []
    for attempt in range(3):
        if attempt == 2:
            ctx = context(key=ctx.scoped_key, owner=ctx.owner, final_attempt=True)
        with pytest.raises(TransientError) as raised:
            call("create-payment-intent", payload, ctx)
        codes.append(raised.value.code)
    posts = create_posts(service, customer_id)
    assert codes == ["outcome_unknown"] * 3
    assert len(posts) == 1  # Stripe-Should-Retry: false honoured: never sent again, under any key
    assert len(lookups(service, "/v1/payment_intents")) >= 3
    assert record_of(ctx.scoped_key).stripe_unknown == "server_error"
    counts = janitor.run(grace=dt.timedelta(0))
    with pytest.raises(OperationError) as settled:
        call("create-payment-intent", payload, context(key=ctx.scoped_key))
    report(
        "14",
        "500 with Stripe-Should-Retry: false, nothing made at Stripe",
        answers=",".join(codes),
        stripe_posts=len(posts),
        janitor=str(counts),
        final=settled.value.code,
    )
    assert settled.value.code == "stripe_error" and settled.value.details["foundAtStripe"] is False
    assert intents_of_customers(stripe_api, [customer_id]) == []


def test_an_idempotency_error_on_a_refund_is_looked_up_and_never_releases_the_held_amount(service, stripe_api):
    intent = paid(stripe_api, "idemerr")
    service.add_rule(on_refund_of(intent["stripePaymentIntentId"]), [Fault.error(400, "idempotency_error")] * 10)
    with pytest.raises(TransientError) as raised:
        call("create-refund", {"paymentIntentId": intent["id"], "amount": 1500}, context(final_attempt=True))
    refund = Refund.get(Refund.payment_intent_id == intent["id"])
    held = PaymentIntent.get_by_id(intent["id"]).amount_refunded
    report(
        "14",
        "refund answered 400 idempotency_error",
        answered=raised.value.code,
        refund_status=refund.status,
        amount_held=held,
        refunds_at_stripe=len(refunds_of(stripe_api, intent["stripePaymentIntentId"])),
    )
    assert raised.value.code == "outcome_unknown"
    assert refund.status == "pending" and held == 1500  # still held while unknown
    assert lookups(service, "/v1/refunds")


def test_every_retry_sends_byte_identical_parameters_refund_metadata_order_included(service, stripe_api):
    intent = paid(stripe_api, "bytes")
    service.add_rule(on_refund_of(intent["stripePaymentIntentId"]), [Fault(TIMEOUT_AFTER_SENT, hold_s=1.5)])
    ctx = context(final_attempt=False)
    payload = {"paymentIntentId": intent["id"], "amount": 900, "metadata": {"zeta": "1", "alpha": "2", "mid": "3"}}
    with pytest.raises(TransientError):
        call("create-refund", payload, ctx)
    refund = call("create-refund", payload, ctx)  # the task's retry, after the row was read back from the database
    posts = service.requests_for(
        lambda s: s.method == "POST" and s.path == "/v1/refunds" and intent["stripePaymentIntentId"].encode() in s.body
    )
    report("14", "refund retried after no answer", posts=len(posts), same_bytes=posts[0].body == posts[-1].body)
    assert refund["status"] == "succeeded"
    assert len(posts) == 2 and posts[0].body == posts[1].body and posts[0].idempotency_key == posts[1].idempotency_key
    assert [r["amount"] for r in refunds_of(stripe_api, intent["stripePaymentIntentId"])] == [900]


# -- point 3: the caller hears "unknown" when it is unknown


def test_an_unknown_outcome_reaches_rest_callers_as_503_outcome_unknown_with_the_key_and_retry_after(
    stack, api, stripe_api, proxy
):
    customer_id = customer("unknown-rest")
    vault(api, stripe_api, customer_id)
    # Every attempt is sent and charged, and every answer is lost: after the last retry nobody knows.
    proxy.add_rule(on_create_for(customer_id), [Fault(TIMEOUT_AFTER_SENT, hold_s=0.2)] * 4)
    key = f"unknown-{uuid.uuid4()}"
    body = {"customerId": customer_id, "amount": 1700, "currency": "usd", "confirm": True}
    try:
        answer = api.post("/payment-intents", json=body, headers={"Idempotency-Key": key})
    finally:
        proxy.clear()
    retry = api.post("/payment-intents", json=body, headers={"Idempotency-Key": key})
    at_stripe = intents_of_customers(stripe_api, [customer_id])
    report(
        "14",
        "REST create whose every Stripe answer was lost",
        answered=answer.status_code,
        code=answer.json()["error"]["code"],
        retry_after=answer.headers.get("Retry-After"),
        retry=retry.status_code,
        intents_at_stripe=len(at_stripe),
    )
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "outcome_unknown" and error["details"]["idempotencyKey"] == key
    assert answer.headers["Retry-After"] and answer.headers["Idempotency-Key"] == key
    assert (
        retry.status_code == 201 and len(at_stripe) == 1 and retry.json()["stripePaymentIntentId"] == at_stripe[0]["id"]
    )


def kafka_reply(setup, key: str, nth: int, timeout: float = 90) -> dict:
    """The `nth` reply (1-based) on create-payment-intent-response under `key`."""
    topic = "create-payment-intent-response"
    setup.collector.wait(lambda: len(setup.collector.received(key.encode(), topic)) >= nth, timeout, f"reply {nth}")
    return setup.collector.received(key.encode(), topic)[nth - 1].json()


def test_an_unknown_outcome_reaches_kafka_callers_as_outcome_unknown_and_a_resend_gets_the_payment(
    stack, api, stripe_api, proxy, drill_kafka
):
    customer_id = customer("unknown-kafka")
    vault(api, stripe_api, customer_id)
    proxy.add_rule(on_create_for(customer_id), [Fault(TIMEOUT_AFTER_SENT, hold_s=0.2)] * 4)
    key = f"PaymentsGateway-{int(dt.datetime.now().timestamp() * 1000)}-{uuid.uuid4().hex[:8]}"
    request = {"customerId": customer_id, "amount": 1800, "currency": "usd", "confirm": True}
    gateway = drill_kafka.gateway
    try:
        gateway.send("create-payment-intent", request, key=key, trace_id=key)
        gateway.flush()
        first = kafka_reply(drill_kafka, key, 1)
    finally:
        proxy.clear()
    gateway.send("create-payment-intent", request, key=key, trace_id=key)  # the gateway's retry, same key
    gateway.flush()
    second = kafka_reply(drill_kafka, key, 2)
    at_stripe = intents_of_customers(stripe_api, [customer_id])
    report(
        "14",
        "Kafka create whose every Stripe answer was lost, then resent under its key",
        first=first.get("error", {}).get("code"),
        second="response" if "response" in second else second.get("error", {}).get("code"),
        intents_at_stripe=len(at_stripe),
    )
    assert first["error"]["code"] == "outcome_unknown" and first["error"]["status"] == 503, first
    assert first["kafkaResponseKey"] == key
    assert len(at_stripe) == 1 and second["response"]["stripePaymentIntentId"] == at_stripe[0]["id"]


# -- point 4: the janitor resolves, it never starts money movement


def abandoned_claim(customer_id: str, amount: int) -> tuple[str, dict]:
    """What a worker that died before calling Stripe leaves: a claim nobody holds. Returns (key, payload)."""
    payload = {"customerId": customer_id, "amount": amount, "currency": "usd", "confirm": True}
    canonical = CreatePaymentIntentInput.model_validate(payload).canonical()
    ctx = context(owner="worker-that-died")
    claim = idempotency.claim(
        "create-payment-intent", ctx.scoped_key, canonical, ctx.owner, "payment_intent", 86400, "trace"
    )
    age(claim.record_id, dt.timedelta(minutes=30))
    return ctx.scoped_key, payload


def age(record_id: int, by: dt.timedelta) -> None:
    """The claim was last touched `by` ago, and nobody's lease on it runs any more."""
    old = utcnow() - by
    IdempotencyRecord.update(updated_at=old, locked_until=old, execution_until=old).where(
        IdempotencyRecord.id == record_id
    ).execute()


def timed_out_create(proxy: StripeProxy, stripe_api: stripe.StripeClient, prefix: str) -> tuple[str, dict, str]:
    """A create Stripe made whose answer never came, given back after the last retry: (key, payload, customer)."""
    customer_id = vaulted(stripe_api, prefix)
    proxy.add_rule(on_create_for(customer_id), [Fault(TIMEOUT_AFTER_SENT, hold_s=0.2)])
    payload = {"customerId": customer_id, "amount": 2600, "currency": "usd", "confirm": True}
    ctx = context(final_attempt=True)
    with pytest.raises(TransientError):
        call("create-payment-intent", payload, ctx)
    record = record_of(ctx.scoped_key)
    assert record.state == "retryable"
    age(record.id, dt.timedelta(minutes=30))
    return ctx.scoped_key, payload, customer_id


def test_the_janitor_closes_a_claim_that_never_called_stripe_and_never_executes_it(service, stripe_api):
    customer_id = vaulted(stripe_api, "never")
    key, payload = abandoned_claim(customer_id, 1900)
    counts = janitor.run()
    with pytest.raises(OperationError) as replay:
        call("create-payment-intent", payload, context(key=key))  # the caller's retry with its key, later
    report(
        "14",
        "janitor on a claim whose worker died before calling Stripe",
        janitor=str(counts),
        stripe_posts=len(create_posts(service, customer_id)),
        answer=replay.value.code,
    )
    assert counts.get("claim: not processed", 0) >= 1
    assert replay.value.code == "internal_error" and replay.value.details == {"stripeCalled": False}
    assert create_posts(service, customer_id) == []  # never executed minutes later
    assert PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count() == 0


def test_the_janitor_resolves_a_started_claim_by_looking_it_up_and_never_sends_it_again(service, stripe_api):
    key, payload, customer_id = timed_out_create(service, stripe_api, "started")
    counts = janitor.run()
    stored = PaymentIntent.get(PaymentIntent.customer_id == customer_id)
    causes = [
        z.cause for z in ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == stored.id)
    ]
    retry = call("create-payment-intent", payload, context(key=key))
    report(
        "14",
        "janitor on a create Stripe made whose answer was lost",
        janitor=str(counts),
        stripe_posts=len(create_posts(service, customer_id)),
        causes=",".join(causes),
    )
    assert counts.get("claim: fetched", 0) >= 1 and causes == ["janitor:fetched:create-payment-intent"]
    assert len(create_posts(service, customer_id)) == 1  # looked up, never sent again
    assert retry["id"] == stored.id and retry["clientSecret"] and stored.status == "succeeded"


def test_purging_with_the_clock_25_hours_ahead_deletes_only_resolved_keys(service, stripe_api):
    ctx = context()
    call(
        "create-payment-intent",
        {"customerId": vaulted(stripe_api, "purge-done"), "amount": 500, "currency": "usd"},
        ctx,
    )
    started_key, _, started_customer = timed_out_create(service, stripe_api, "purge-started")
    never_key, _ = abandoned_claim(vaulted(stripe_api, "purge-never"), 700)
    paid_intent = paid(stripe_api, "purge-refund")
    service.add_rule(on_refund_of(paid_intent["stripePaymentIntentId"]), [Fault(TIMEOUT_AFTER_SENT, hold_s=0.2)])
    refund_ctx = context(final_attempt=True)
    with pytest.raises(TransientError):
        call("create-refund", {"paymentIntentId": paid_intent["id"], "amount": 1000}, refund_ctx)
    held = Refund.get(Refund.payment_intent_id == paid_intent["id"])
    assert held.status == "pending" and held.stripe_refund_id is None
    later = utcnow() + dt.timedelta(hours=25)
    keys = {
        "completed": ctx.scoped_key,
        "started": started_key,
        "never": never_key,
        "held refund": refund_ctx.scoped_key,
    }

    purged = idempotency.purge_expired(later)
    left = {
        name
        for name, key in keys.items()
        if IdempotencyRecord.get_or_none(IdempotencyRecord.key_hash == idempotency.key_hash(key))
    }
    assert purged >= 1 and left == {"started", "never", "held refund"}, left

    counts = janitor.run(now=later)  # the janitor a day later: resolves first, then purges what it resolved
    held = Refund.get_by_id(held.id)
    report(
        "14",
        "purge and janitor with the clock 25 h ahead",
        purged_unresolved=3 - len(left & {"started", "never", "held refund"}),
        janitor=str(counts),
        refund=held.status,
    )
    assert held.status == "succeeded" and held.stripe_refund_id  # found at Stripe, never released or lost
    assert PaymentIntent.select().where(PaymentIntent.customer_id == started_customer).count() == 1


def test_a_late_retry_of_a_key_left_unresolved_past_24_hours_looks_up_and_never_pays_twice(service, stripe_api):
    key, payload, customer_id = timed_out_create(service, stripe_api, "late")
    record = record_of(key)
    day_ago = utcnow() - dt.timedelta(hours=25)
    IdempotencyRecord.update(created_at=day_ago, expires_at=day_ago + dt.timedelta(hours=24)).where(
        IdempotencyRecord.id == record.id
    ).execute()
    retry = call("create-payment-intent", payload, context(key=key))
    at_stripe = intents_of_customers(stripe_api, [customer_id])
    report("14", "caller retries 25 h later a key whose outcome was never settled", intents_at_stripe=len(at_stripe))
    assert retry["id"] == record.resource_id  # the same request: its resource id was kept
    assert len(at_stripe) == 1 and len(create_posts(service, customer_id)) == 1


def pending_refund(intent: dict, stripe_refund_id: str, amount: int, updated_at: dt.datetime) -> Refund:
    """A USD refund row of `intent` still pending at Stripe, last looked at `updated_at`: the janitor's to settle."""
    return Refund.create(
        id=f"vyre_{uuid.uuid4().hex[:12]}",
        payment_intent_id=intent["id"],
        stripe_refund_id=stripe_refund_id,
        amount=amount,
        currency="usd",
        status="pending",
        updated_at=updated_at,
    )


def test_one_failing_item_never_stops_a_janitor_pass_and_is_counted(service, stripe_api):
    from observability.metrics import JANITOR_ITEMS

    first, second = paid(stripe_api, "isolated-a"), paid(stripe_api, "isolated-b")
    real = stripe_api.v1.refunds.create(params={"payment_intent": second["stripePaymentIntentId"], "amount": 400})
    old = utcnow() - dt.timedelta(hours=1)
    broken = pending_refund(first, f"re_gone_{uuid.uuid4().hex[:8]}", 300, old - dt.timedelta(minutes=5))
    fine = pending_refund(second, real.id, 400, old)
    failed_before = JANITOR_ITEMS.labels("refund", "failed")._value.get()
    counts = janitor.run()
    report("14", "janitor pass with one refund Stripe no longer knows", janitor=str(counts))
    assert Refund.get_by_id(fine.id).status == "succeeded"  # the pass went on past the broken one
    assert Refund.get_by_id(broken.id).status == "pending"
    assert JANITOR_ITEMS.labels("refund", "failed")._value.get() == failed_before + 1


def test_pending_refunds_are_asked_about_again_with_backoff_not_every_pass(service, stripe_api):
    intent = paid(stripe_api, "backoff")
    real = stripe_api.v1.refunds.create(params={"payment_intent": intent["stripePaymentIntentId"], "amount": 500})
    still_pending = {**real.to_dict(), "status": "pending"}
    service.add_rule(
        lambda method, path, form: method == "GET" and path.startswith(f"/v1/refunds/{real.id}"),
        [Fault("status", 200, still_pending)] * 10,
    )
    refund = pending_refund(intent, real.id, 500, utcnow() - dt.timedelta(hours=1))

    def asked() -> int:
        return len(service.requests_for(lambda s: s.method == "GET" and s.path.startswith(f"/v1/refunds/{real.id}")))

    start = utcnow()
    seen = []
    for offset_s in (0, 30, 61, 90, 185):
        janitor.run(now=start + dt.timedelta(seconds=offset_s))
        seen.append(asked())
    report("14", "a refund Stripe keeps pending, janitor passes at 0, 30, 61, 90, 185 s", asked=seen)
    assert seen == [1, 1, 2, 2, 3]  # after 1 minute, then 2 more
    assert Refund.get_by_id(refund.id).checks == 3


def test_a_backlog_that_keeps_failing_cannot_starve_newer_work(service, stripe_api, monkeypatch):
    monkeypatch.setattr(janitor, "PER_PASS", 1)
    failing_key, _ = abandoned_claim(vaulted(stripe_api, "starve-a"), 800)
    failing = record_of(failing_key)
    # Started, but its stored request cannot be read back: resolving it fails, every time.
    IdempotencyRecord.update(
        stripe_started_at=utcnow(), request={"broken": True}, updated_at=utcnow() - dt.timedelta(hours=2)
    ).where(IdempotencyRecord.id == failing.id).execute()
    newer_key, _ = abandoned_claim(vaulted(stripe_api, "starve-b"), 900)
    first = janitor.run()
    second = janitor.run()
    report("14", "janitor, one item per pass, the oldest always failing", first=str(first), second=str(second))
    assert first.get("claim: failed") == 1
    assert second.get("claim: not processed") == 1 and record_of(newer_key).state == "completed"
