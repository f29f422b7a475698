"""Drill 17 (issue 24, point 2): a capture never answers success when nothing was captured.

After a 5xx or an `idempotency_error` the capture looks the intent up. Only `succeeded` with money received is a
capture: an authorisation Stripe canceled meanwhile (it expired, or a cancel came first) answers `invalid_state`
saying which, in the capture, in a retry of the capture and in the janitor's resolution alike, and the attempt ends
failed. Against the drills' faithful Stripe (localstripe behind the proxy that keeps Stripe's idempotency).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import requests
import stripe

from domain import idempotency, janitor
from errors import OperationError, TransientError
from models import IdempotencyRecord, PaymentAttempt, PaymentIntent, utcnow
from tests.domain.helpers import call, context
from tests.drills.conftest import service_database_of_its_own
from tests.drills.helpers import vaulted
from tests.drills.report import report
from tests.support.stripe_proxy import FAIL_WHILE_EXECUTING, Fault, StripeProxy

pytestmark = pytest.mark.integration

# Stripe began executing the capture and failed: a 500 saved under the key, `Stripe-Should-Retry: false`.
SAVED_500 = Fault(FAIL_WHILE_EXECUTING)
IDEMPOTENCY_ERROR = Fault.error(400, "idempotency_error")


service_database = service_database_of_its_own("drill17")


def authorised(stripe_api: stripe.StripeClient, prefix: str, amount: int = 3000) -> dict:
    """An intent confirmed with manual capture: Stripe holds `amount` on the card."""
    intent = call(
        "create-payment-intent",
        {
            "customerId": vaulted(stripe_api, prefix),
            "amount": amount,
            "currency": "usd",
            "confirm": True,
            "captureMethod": "manual",
        },
    )
    assert intent["status"] == "requires_capture"
    return intent


def on_capture_of(intent: dict):
    path = f"/v1/payment_intents/{intent['stripePaymentIntentId']}/capture"
    return lambda method, p, form: method == "POST" and p == path


def expire_at_stripe(localstripe: str, intent: dict) -> None:
    """What time does at Stripe: the authorisation reaches its capture_before, Stripe cancels it (`automatic`)."""
    url = f"{localstripe}/_config/expire_authorization/{intent['stripePaymentIntentId']}"
    requests.post(url, timeout=10).raise_for_status()


def cancel_at_stripe(stripe_api: stripe.StripeClient, intent: dict) -> None:
    """A cancel that reached Stripe first (another process, the Dashboard) and not yet this service's row."""
    stripe_api.v1.payment_intents.cancel(
        intent["stripePaymentIntentId"], params={"cancellation_reason": "requested_by_customer"}
    )


def capture_attempts(intent: dict) -> list[PaymentAttempt]:
    return list(
        PaymentAttempt.select()
        .where(PaymentAttempt.payment_intent_id == intent["id"], PaymentAttempt.operation == "capture")
        .order_by(PaymentAttempt.attempt_number)
    )


def age(key: str) -> None:
    """The claim was given back long ago and nobody's lease runs any more: the janitor's to resolve."""
    old = utcnow() - dt.timedelta(minutes=30)
    IdempotencyRecord.update(updated_at=old, locked_until=old, execution_until=old).where(
        IdempotencyRecord.key_hash == idempotency.key_hash(key)
    ).execute()


@pytest.mark.parametrize("fault", [SAVED_500, IDEMPOTENCY_ERROR], ids=["saved-500", "idempotency-error"])
def test_a_capture_that_finds_the_authorisation_expired_answers_invalid_state_expired_never_success(
    service: StripeProxy, stripe_api, drill_localstripe, fault
):
    intent = authorised(stripe_api, "cap-expired")
    expire_at_stripe(drill_localstripe, intent)
    service.add_rule(on_capture_of(intent), [fault])
    ctx = context()
    with pytest.raises(OperationError) as raised:
        call("capture-payment-intent", {"paymentIntentId": intent["id"]}, ctx)
    with pytest.raises(OperationError) as replayed:
        call("capture-payment-intent", {"paymentIntentId": intent["id"]}, context(key=ctx.scoped_key))
    stored = PaymentIntent.get_by_id(intent["id"])
    attempts = capture_attempts(intent)
    report(
        "17",
        f"capture answered {fault.kind} {fault.status or ''} while Stripe had expired the authorisation",
        answered=raised.value.code,
        stored=stored.status,
        attempt=attempts[-1].status,
    )
    assert raised.value.code == "invalid_state" and raised.value.status == 409
    assert "expired" in raised.value.message and raised.value.details["status"] == "canceled"
    assert replayed.value.code == "invalid_state" and replayed.value.message == raised.value.message
    assert (stored.status, stored.amount_received, stored.cancellation_reason) == ("canceled", 0, "automatic")
    assert [(a.status, a.error_code) for a in attempts] == [("failed", "invalid_state")]


def test_a_capture_that_finds_a_cancel_came_first_says_canceled_not_expired(service, stripe_api):
    intent = authorised(stripe_api, "cap-canceled")
    cancel_at_stripe(stripe_api, intent)
    service.add_rule(on_capture_of(intent), [SAVED_500])
    with pytest.raises(OperationError) as raised:
        call("capture-payment-intent", {"paymentIntentId": intent["id"]}, context())
    stored = PaymentIntent.get_by_id(intent["id"])
    report("17", "capture answered a saved 500 after a cancel won at Stripe", message=raised.value.message)
    assert raised.value.code == "invalid_state" and "canceled" in raised.value.message
    assert "expired" not in raised.value.message
    assert raised.value.details["cancellationReason"] == "requested_by_customer"
    assert (stored.status, stored.amount_received) == ("canceled", 0)


def test_a_capture_that_finds_it_captured_after_a_saved_500_still_answers_the_capture(service, stripe_api):
    """Positive control of the two above: the same fault over a capture Stripe did make is a success."""
    intent = authorised(stripe_api, "cap-made")
    stripe_api.v1.payment_intents.capture(intent["stripePaymentIntentId"])  # made, its answer lost to the 500
    service.add_rule(on_capture_of(intent), [SAVED_500])
    captured = call("capture-payment-intent", {"paymentIntentId": intent["id"]}, context())
    assert (captured["status"], captured["amountReceived"]) == ("succeeded", 3000)


def test_the_janitor_resolves_an_unknown_capture_whose_authorisation_expired_as_an_error_not_a_success(
    service, stripe_api, drill_localstripe
):
    intent = authorised(stripe_api, "cap-janitor")
    service.add_rule(on_capture_of(intent), [SAVED_500])
    ctx = context(final_attempt=True)
    with pytest.raises(TransientError) as unknown:
        call("capture-payment-intent", {"paymentIntentId": intent["id"]}, ctx)
    assert unknown.value.code == "outcome_unknown"  # Stripe still shows the hold: nobody can tell yet
    expire_at_stripe(drill_localstripe, intent)
    age(ctx.scoped_key)
    counts = janitor.run()
    with pytest.raises(OperationError) as settled:
        call("capture-payment-intent", {"paymentIntentId": intent["id"]}, context(key=ctx.scoped_key))
    stored = PaymentIntent.get_by_id(intent["id"])
    report("17", "janitor on an unknown capture whose authorisation then expired", janitor=str(counts))
    assert counts.get("claim: fetched, not captured") == 1
    assert settled.value.code == "invalid_state" and "expired" in settled.value.message
    assert (stored.status, stored.amount_received) == ("canceled", 0)
    assert [a.status for a in capture_attempts(intent)] == ["failed"]


def test_a_retried_capture_that_finds_the_payment_canceled_answers_an_error_not_its_attempt(service, stripe_api):
    intent = authorised(stripe_api, "cap-retry")
    service.add_rule(on_capture_of(intent), [Fault.error(500, "api_error")])  # refused without acting
    ctx = context(final_attempt=True)
    with pytest.raises(TransientError):
        call("capture-payment-intent", {"paymentIntentId": intent["id"]}, ctx)
    age(ctx.scoped_key)
    janitor.run()  # Stripe still holds the authorisation: the capture was not done, its attempt failed
    failed = capture_attempts(intent)[-1]
    assert failed.status == "failed"
    cancel_at_stripe(stripe_api, intent)
    service.clear()  # a rule spent passes its requests through: the next fault needs a rule of its own
    service.add_rule(on_capture_of(intent), [SAVED_500])
    with pytest.raises(OperationError) as raised:
        call("retry-payment-attempt", {"attemptId": failed.id}, context(key=f"retry-{uuid.uuid4()}"))
    report("17", "retry of a failed capture answered a saved 500 after a cancel won", answered=raised.value.code)
    assert raised.value.code == "invalid_state" and "canceled" in raised.value.message
    retry = capture_attempts(intent)[-1]
    assert raised.value.details["attemptId"] == retry.id and retry.retry_of == failed.id
    assert retry.status == "failed"
