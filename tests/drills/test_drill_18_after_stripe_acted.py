"""Drill 18 (issue 24, point 7): after Stripe acted, no definitive "nothing happened".

An authorisation's deadline is read from its charge after the create or confirm that made it, and a call that may
have acted is resolved by reading the intent. A refusal of such a read (401, 403, 404) says nothing about the act
before it: it must never become the key's stored answer (a `stripe_error` the caller reads as "send it again with a
new key", which authorises or captures a second time). It is an unknown outcome: the retry under the same key gets
Stripe's replay or looks again, and past the retries the janitor looks it up.
"""

from __future__ import annotations

import datetime as dt

import pytest

from domain import idempotency, janitor
from errors import TransientError
from models import IdempotencyRecord, PaymentIntent, utcnow
from tests.domain.helpers import call, context
from tests.drills.conftest import service_database_of_its_own
from tests.drills.helpers import vaulted
from tests.drills.report import report
from tests.support.stripe_objects import intents_of_customers
from tests.support.stripe_proxy import ACT_THEN_500, TIMEOUT_AFTER_SENT, Fault, StripeProxy

pytestmark = pytest.mark.integration

ACTED_500 = Fault(ACT_THEN_500)
LOST = Fault(TIMEOUT_AFTER_SENT, hold_s=0.2)  # Stripe acted, the answer never came
REFUSED_READS = [
    pytest.param(Fault.error(401, "invalid_request_error"), id="401"),
    pytest.param(Fault.error(403, "invalid_request_error"), id="403"),
    pytest.param(Fault.error(404, "invalid_request_error", code="resource_missing"), id="404"),
]


service_database = service_database_of_its_own("drill18")


def on_charge_read(method: str, path: str, form: dict) -> bool:
    return method == "GET" and path.startswith("/v1/charges/")


def posts_to(proxy: StripeProxy, path: str) -> list:
    return proxy.requests_for(lambda s: s.method == "POST" and s.path == path)


def authorising(customer_id: str) -> dict:
    return {"customerId": customer_id, "amount": 4100, "currency": "usd", "confirm": True, "captureMethod": "manual"}


@pytest.mark.parametrize("refusal", REFUSED_READS)
def test_a_refused_charge_read_after_an_authorising_create_is_retried_under_its_key_and_authorises_once(
    service: StripeProxy, stripe_api, refusal
):
    customer_id = vaulted(stripe_api, "deadline-create")
    service.add_rule(on_charge_read, [refusal])
    ctx = context(final_attempt=False)
    with pytest.raises(TransientError) as first:
        call("create-payment-intent", authorising(customer_id), ctx)
    intent = call("create-payment-intent", authorising(customer_id), ctx)  # the task's retry, same key
    at_stripe = intents_of_customers(stripe_api, [customer_id])
    creates = [p for p in posts_to(service, "/v1/payment_intents") if p.form.get("metadata[vy_customer_id]")]
    creates = [p for p in creates if p.form["metadata[vy_customer_id]"] == [customer_id]]
    report(
        "18",
        f"the charge read after an authorising create answered {refusal.status}",
        first=first.value.code,
        authorisations_at_stripe=len(at_stripe),
        create_posts=len(creates),
    )
    assert first.value.code == "stripe_error"  # a retry, never a stored answer
    assert intent["status"] == "requires_capture" and intent["captureBefore"]
    assert len(at_stripe) == 1 and intent["stripePaymentIntentId"] == at_stripe[0]["id"]
    assert len({p.idempotency_key for p in creates}) == 1  # the same key: Stripe replayed, it never acted twice


def test_a_refused_charge_read_after_a_confirm_is_never_the_keys_answer_and_the_janitor_finds_the_authorisation(
    service: StripeProxy, stripe_api
):
    customer_id = vaulted(stripe_api, "deadline-confirm")
    created = call(
        "create-payment-intent",
        {"customerId": customer_id, "amount": 2700, "currency": "usd", "captureMethod": "manual"},
    )
    service.add_rule(on_charge_read, [Fault.error(401, "invalid_request_error")])
    ctx = context(final_attempt=True)
    with pytest.raises(TransientError):
        call("confirm-payment-intent", {"paymentIntentId": created["id"]}, ctx)
    record = IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(ctx.scoped_key))
    assert record.state == "retryable" and record.outcome is None  # given back, nothing stored as its answer
    old = utcnow() - dt.timedelta(minutes=30)
    IdempotencyRecord.update(updated_at=old, locked_until=old, execution_until=old).where(
        IdempotencyRecord.id == record.id
    ).execute()
    counts = janitor.run()
    answer = call("confirm-payment-intent", {"paymentIntentId": created["id"]}, context(key=ctx.scoped_key))
    confirms = posts_to(service, f"/v1/payment_intents/{created['stripePaymentIntentId']}/confirm")
    report("18", "the charge read after a confirm answered 401, then the janitor", janitor=str(counts))
    assert counts.get("claim: fetched") == 1
    assert answer["status"] == "requires_capture" and answer["captureBefore"]
    assert PaymentIntent.get_by_id(created["id"]).status == "requires_capture"
    assert len(confirms) == 1  # looked up, never sent again


@pytest.mark.parametrize("refusal", REFUSED_READS)
def test_a_refused_look_up_after_a_capture_that_may_have_acted_stays_unknown_and_the_retry_finds_the_capture(
    service: StripeProxy, stripe_api, refusal
):
    intent = call("create-payment-intent", authorising(vaulted(stripe_api, "lookup-refused")))
    stripe_path = f"/v1/payment_intents/{intent['stripePaymentIntentId']}"
    service.add_rule(lambda method, path, form: method == "POST" and path == f"{stripe_path}/capture", [ACTED_500])
    service.add_rule(lambda method, path, form: method == "GET" and path.startswith(stripe_path), [refusal])
    ctx = context(final_attempt=False)
    with pytest.raises(TransientError) as first:
        call("capture-payment-intent", {"paymentIntentId": intent["id"]}, ctx)
    captured = call("capture-payment-intent", {"paymentIntentId": intent["id"]}, ctx)  # the task's retry
    captures = posts_to(service, f"{stripe_path}/capture")
    report(
        "18",
        f"capture acted then 500, its look-up answered {refusal.status}",
        first=first.value.code,
        answered=captured["status"],
        capture_posts=len(captures),
    )
    assert first.value.code == "outcome_unknown"  # never the refusal as the key's answer
    assert (captured["status"], captured["amountReceived"]) == ("succeeded", 4100)
    assert len(captures) == 1  # found by the retry's look-up, never sent again


def test_a_resend_refused_for_credentials_after_a_lost_answer_is_unknown_never_a_stored_stripe_error(
    service: StripeProxy, stripe_api
):
    intent = call("create-payment-intent", authorising(vaulted(stripe_api, "resend-refused")))
    stripe_path = f"/v1/payment_intents/{intent['stripePaymentIntentId']}"
    on_capture = f"{stripe_path}/capture"
    refused = Fault.error(401, "invalid_request_error")
    # Captured, the answer lost; then the key is refused (rotated) for the resend and the look-up alike.
    service.add_rule(lambda method, path, form: method == "POST" and path == on_capture, [LOST, refused])
    service.add_rule(lambda method, path, form: method == "GET" and path.startswith(stripe_path), [refused])
    ctx = context(final_attempt=False)
    codes = []
    for _ in range(2):
        with pytest.raises(TransientError) as raised:
            call("capture-payment-intent", {"paymentIntentId": intent["id"]}, ctx)
        codes.append(raised.value.code)
    captured = call("capture-payment-intent", {"paymentIntentId": intent["id"]}, ctx)  # credentials back
    captures = posts_to(service, on_capture)
    report("18", "capture's answer lost, then its resend refused 401", answers=",".join(codes), posts=len(captures))
    assert codes == ["stripe_error", "outcome_unknown"]  # no answer, then unknown: never a stored refusal
    assert (captured["status"], captured["amountReceived"]) == ("succeeded", 4100)
    assert len({p.idempotency_key for p in captures}) == 1  # one key: Stripe replayed the one capture
