"""Drill 18 (issue 24, point 5): races between two confirms of one payment.

Each race is played in this process, through the service's own code and the drills' faithful Stripe: the second
party runs inside the first one's Stripe call, exactly where the race puts it, so every run meets it.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

import stripe_client
from domain.errors import OperationError
from models import PaymentAttempt
from tests.conftest import make_card
from tests.domain.helpers import call, context
from tests.drills.helpers import customer, vaulted
from tests.drills.report import report

pytestmark = pytest.mark.integration

DECLINED = "4000000000000341"  # vaulted fine, declined when charged


def attempts_of(intent_id: str) -> list[tuple[int, str, str | None]]:
    rows = PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == intent_id)
    return [(a.attempt_number, a.status, a.error_code) for a in rows.order_by(PaymentAttempt.attempt_number)]


def confirm_posts(proxy: Any, stripe_intent_id: str) -> int:
    return len(proxy.requests_for(lambda s: s.method == "POST" and s.path.endswith(f"{stripe_intent_id}/confirm")))


def declining(stripe_api: stripe.StripeClient, prefix: str) -> str:
    """A customer whose default card is declined when charged (its CVC is not one drill 11 looks for: no card
    number or CVC reaches the service anyway)."""
    customer_id = customer(prefix)
    card = make_card(stripe_api, DECLINED)
    call("create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": card, "setAsDefault": True})
    return customer_id


def unconfirmed(stripe_api: stripe.StripeClient, prefix: str, *, declined: bool = False) -> dict:
    """An intent of a customer with a default card (one that is declined, if asked), not confirmed yet."""
    customer_id = declining(stripe_api, prefix) if declined else vaulted(stripe_api, prefix)
    intent = call("create-payment-intent", {"customerId": customer_id, "amount": 1800, "currency": "usd"})
    assert intent["status"] == "requires_payment_method"
    return intent


# -- point 5: a refusal for concurrency is not the key's final answer


def test_a_confirm_refused_while_another_runs_is_not_stored_and_its_retry_answers_the_paid_intent(
    service, stripe_api, monkeypatch
):
    intent = unconfirmed(stripe_api, "inprogress")
    second = context()
    real_confirm = stripe_client.confirm_payment_intent
    refusals: list[OperationError] = []

    def second_confirm_arrives_meanwhile(stripe_id: str, params: dict, *, idempotency_key: str) -> dict:
        if not refusals:
            with pytest.raises(OperationError) as refused:
                call("confirm-payment-intent", {"paymentIntentId": intent["id"]}, second)
            refusals.append(refused.value)
        return real_confirm(stripe_id, params, idempotency_key=idempotency_key)

    monkeypatch.setattr(stripe_client, "confirm_payment_intent", second_confirm_arrives_meanwhile)
    first = call("confirm-payment-intent", {"paymentIntentId": intent["id"]})
    # The caller does what the refusal says: the same request, the same key, shortly after.
    retried = call("confirm-payment-intent", {"paymentIntentId": intent["id"]}, context(key=second.scoped_key))
    report(
        "18",
        "a second confirm (its own key) while the first is at Stripe, then retried with its key",
        first_answer=refusals[0].code,
        retry_answer=retried["status"],
        attempts=len(attempts_of(intent["id"])),
        stripe_confirms=confirm_posts(service, intent["stripePaymentIntentId"]),
    )
    assert (refusals[0].status, "in progress" in refusals[0].message) == (409, True)
    assert first["status"] == "succeeded"
    assert retried["status"] == "succeeded" and retried["id"] == intent["id"]
    assert attempts_of(intent["id"]) == [(1, "succeeded", None)]
    assert confirm_posts(service, intent["stripePaymentIntentId"]) == 1  # paid once


def test_a_confirm_that_lost_the_race_answers_the_settled_intent_not_a_refusal_recorded_as_a_failed_attempt(
    service, stripe_api, monkeypatch
):
    intent = unconfirmed(stripe_api, "lostrace")
    real_retrieve = stripe_client.retrieve_payment_intent
    winners: list[dict] = []

    def the_other_confirm_finishes_meanwhile(stripe_id: str) -> dict:
        read = real_retrieve(stripe_id)
        if not winners:  # the second confirm's read before its lock: the first runs to its end meanwhile
            winners.append({})
            winners[0] = call("confirm-payment-intent", {"paymentIntentId": intent["id"]})
        return read

    monkeypatch.setattr(stripe_client, "retrieve_payment_intent", the_other_confirm_finishes_meanwhile)
    late = call("confirm-payment-intent", {"paymentIntentId": intent["id"]})
    report(
        "18",
        "a confirm that passed its first check before another confirm settled the intent",
        winner=winners[0]["status"],
        late_answer=late["status"],
        attempts=len(attempts_of(intent["id"])),
        stripe_confirms=confirm_posts(service, intent["stripePaymentIntentId"]),
    )
    assert winners[0]["status"] == "succeeded"
    assert late["status"] == "succeeded"
    assert attempts_of(intent["id"]) == [(1, "succeeded", None)]  # no failed attempt for a request never sent
    assert confirm_posts(service, intent["stripePaymentIntentId"]) == 1
