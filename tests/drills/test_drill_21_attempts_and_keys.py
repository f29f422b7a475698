"""Drill 18 (issue 24, points 5 and 6): races between two confirms of one payment, and between Stripe's answers
(or a sync's read) and a webhook that told something newer first.

Each race is played in this process, through the service's own code and the drills' faithful Stripe: the second
party runs inside the first one's Stripe call, exactly where the race puts it, so every run meets it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe

import stripe_client
from domain import payment_events
from errors import OperationError
from models import PaymentAttempt, PaymentEvent, PaymentIntent, WebhookEvent, ZtrackingPaymentIntent
from tests.conftest import WEBHOOK_SECRET, make_card
from tests.domain.helpers import call, context
from tests.drills.helpers import customer, vaulted
from tests.drills.report import report
from tests.support.webhooks import signed_event

pytestmark = pytest.mark.integration

DECLINED = "4000000000000341"  # vaulted fine, declined when charged


def deliver(event_type: str, obj: dict[str, Any]) -> str:
    """Stripe's webhook about `obj`, a few seconds newer than anything the intent holds; returns its stored status."""
    answer = call("process-stripe-webhook", signed_event(event_type, obj, WEBHOOK_SECRET, int(time.time()) + 5))
    return WebhookEvent.get_by_id(answer["eventId"]).status


def attempts_of(intent_id: str) -> list[tuple[int, str, str | None]]:
    rows = PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == intent_id)
    return [(a.attempt_number, a.status, a.error_code) for a in rows.order_by(PaymentAttempt.attempt_number)]


def statuses_of(intent_id: str) -> list[str]:
    rows = ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == intent_id)
    return [r.status for r in rows.order_by(ZtrackingPaymentIntent.ztracking_version)]


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


# -- point 6: status never moves backwards through sync or a late answer


def answered_with(
    monkeypatch: pytest.MonkeyPatch, replaced: str, instead: Callable[..., dict], operation: str, intent: dict
) -> tuple[dict, PaymentIntent]:
    """`operation` on the intent while stripe_client.<replaced> is `instead`: its answer, and the row after."""
    monkeypatch.setattr(stripe_client, replaced, instead)
    answer = call(operation, {"paymentIntentId": intent["id"]})
    monkeypatch.undo()
    return answer, PaymentIntent.get_by_id(intent["id"])


def report_race(injected: str, told: list[str], row: PaymentIntent, **counts: int | str) -> None:
    """Drill 18's line for a webhook that raced a read or an answer: how the webhook went, what the row holds."""
    report("18", injected, webhook=told[0], stored=row.status, **counts)


def test_a_sync_read_older_than_a_payment_failed_webhook_never_moves_the_status_back(service, stripe_api, monkeypatch):
    customer_id = declining(stripe_api, "oldsync")
    method = call("list-payment-methods", {"customerId": customer_id})["data"][0]
    create = {"customerId": customer_id, "amount": 1700, "currency": "usd", "paymentMethodId": method["id"]}
    intent = call("create-payment-intent", create)
    assert intent["status"] == "requires_confirmation"
    with pytest.raises(stripe.CardError):  # the browser confirmed with Stripe.js: declined
        stripe_api.v1.payment_intents.confirm(
            intent["stripePaymentIntentId"], params={"payment_method": method["stripePaymentMethodId"]}
        )
    real_retrieve = stripe_client.retrieve_payment_intent
    told: list[str] = []

    def read_before_the_failure_told_after(stripe_id: str) -> dict:
        read = real_retrieve(stripe_id)
        if told:
            return read
        told.append(deliver("payment_intent.payment_failed", read))  # lands while the sync waits on Stripe
        return {**read, "status": "processing", "last_payment_error": None}  # what Stripe said a moment earlier

    synced, row = answered_with(
        monkeypatch, "retrieve_payment_intent", read_before_the_failure_told_after, "payment-status-update", intent
    )
    report_race(
        "a sync's read of processing, with payment_failed applied before the sync's write",
        told,
        row,
        sync_answer=synced["status"],
        history=">".join(statuses_of(intent["id"])),
    )
    assert told == ["processed"]
    assert synced["status"] == row.status == "requires_payment_method" and synced["errorCode"] == "card_declined"
    assert "processing" not in statuses_of(intent["id"])
    # Positive control of the consequence: the failed payment can be given up (a processing one could not).
    assert call("cancel-payment-intent", {"paymentIntentId": intent["id"]})["status"] == "canceled"


def test_a_late_confirm_answer_never_moves_back_a_failure_a_webhook_told_first(service, stripe_api, monkeypatch):
    intent = unconfirmed(stripe_api, "lateanswer", declined=True)
    real_confirm = stripe_client.confirm_payment_intent
    told: list[str] = []

    def failure_told_before_the_answer(stripe_id: str, params: dict, *, idempotency_key: str) -> dict:
        with pytest.raises(OperationError):
            real_confirm(stripe_id, params, idempotency_key=idempotency_key)  # Stripe declines the card
        failed = stripe_api.v1.payment_intents.retrieve(stripe_id).to_dict()
        told.append(deliver("payment_intent.payment_failed", failed))
        return {**failed, "status": "processing", "last_payment_error": None}  # the answer, older news

    answered, row = answered_with(
        monkeypatch, "confirm_payment_intent", failure_told_before_the_answer, "confirm-payment-intent", intent
    )
    failures = PaymentEvent.select().where(
        PaymentEvent.payment_intent_id == intent["id"], PaymentEvent.type == payment_events.FAILED_PAYMENT
    )
    report_race(
        "confirm answered processing after its payment_failed webhook was applied",
        told,
        row,
        answer=answered["status"],
        attempts=",".join(status for _, status, _ in attempts_of(intent["id"])),
        failed_payment_events=failures.count(),
    )
    assert told == ["processed"]
    assert answered["status"] == row.status == "requires_payment_method"
    assert row.last_payment_error and row.last_payment_error["code"] == "card_declined"
    assert [status for _, status, _ in attempts_of(intent["id"])] == ["failed"]
    assert "processing" not in statuses_of(intent["id"])
    assert failures.count() == 1  # told once: by the webhook that settled the attempt, not again by the answer
