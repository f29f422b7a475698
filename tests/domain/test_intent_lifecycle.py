"""Confirm, capture, cancel and list on both databases (TiDB's protocol and the zero-setup SQLite)."""

from __future__ import annotations

import pytest

from errors import OperationError
from models import PaymentAttempt, ZtrackingPaymentIntent
from tests.domain.helpers import call, customer_with_card

pytestmark = pytest.mark.integration


def authorised(stripe_api, amount: int = 1000) -> dict:
    create = {
        "customerId": customer_with_card(stripe_api, "dom-life"),
        "amount": amount,
        "currency": "usd",
        "captureMethod": "manual",
        "confirm": True,
    }
    return call("create-payment-intent", {**create, "orderId": "order-7"})


def test_a_partial_capture_is_one_attempt_one_snapshot_and_releases_the_rest(domain_db, stripe_api):
    intent = authorised(stripe_api)
    captured = call("capture-payment-intent", {"paymentIntentId": intent["id"], "amountToCapture": 400})
    assert (captured["status"], captured["amountReceived"], captured["amountCapturable"]) == ("succeeded", 400, 0)
    attempts = PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == intent["id"])
    assert [(a.attempt_number, a.operation, a.status) for a in attempts.order_by(PaymentAttempt.attempt_number)] == [
        (1, "confirm", "succeeded"),
        (2, "capture", "succeeded"),
    ]
    versions = ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == intent["id"])
    assert [v.status for v in versions.order_by(ZtrackingPaymentIntent.ztracking_version)] == [
        "requires_capture",
        "succeeded",
    ]
    with pytest.raises(OperationError) as refused:
        call("cancel-payment-intent", {"paymentIntentId": intent["id"]})
    assert refused.value.code == "invalid_state" and refused.value.details["refundable"] == 400


def test_a_cancel_releases_an_authorisation_and_the_list_finds_it_by_order_and_status(domain_db, stripe_api):
    intent = authorised(stripe_api, 700)
    canceled = call("cancel-payment-intent", {"paymentIntentId": intent["id"], "cancellationReason": "duplicate"})
    assert (canceled["status"], canceled["cancellationReason"], canceled["amountCapturable"]) == (
        "canceled",
        "duplicate",
        0,
    )
    page = call(
        "list-payment-intents", {"customerId": intent["customerId"], "orderId": "order-7", "status": "canceled"}
    )
    assert [p["id"] for p in page["data"]] == [intent["id"]] and page["hasMore"] is False
    with pytest.raises(OperationError) as late:
        call("capture-payment-intent", {"paymentIntentId": intent["id"]})
    assert late.value.code == "invalid_state"
