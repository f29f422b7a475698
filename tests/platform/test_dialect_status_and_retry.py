"""The gateway's webhook news (payment-status-update, both DTOs), its status read and its attempt retry, over Kafka
as it sends them: the status is always Stripe's, never the message's; an id that names nothing is a clear not_found,
one that is missing or empty a validation_error."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_card
from tests.platform.dialect import KafkaDoor, ok, refused, value
from tests.support.lifecycle import DECLINED

pytestmark = pytest.mark.integration


def paid(door, stripe_api, number: str = "4242424242424242") -> tuple[dict, dict | None]:
    customer_id = f"status-{uuid.uuid4().hex[:8]}"
    method = {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": True}
    ok(door.call("create-payment-method", method))
    create = {"customerId": customer_id, "amount": 1100, "currency": "usd", "confirm": True}
    answer = door.call("create-payment-intent", create)
    return (answer.body, None) if answer.ok else ({}, answer.body)


def test_a_status_update_by_our_id_or_stripes_answers_stripes_status_never_the_messages(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    intent, _ = paid(door, stripe_api)
    address = f"ada.{uuid.uuid4().hex[:6]}@example.com"
    # The failure DTO says failed; Stripe says succeeded: Stripe is believed.
    said_failed = value("payment-status-update.dto", paymentIntentId=intent["id"], customerEmail=address)
    answer = ok(door.call("payment-status-update", said_failed))
    assert (answer["paymentIntentId"], answer["status"]) == (intent["id"], "succeeded")
    by_stripe_id = value("payment-status-update-payload.dto", paymentIntentId=intent["stripePaymentIntentId"])
    assert ok(door.call("payment-status-update", by_stripe_id))["paymentIntentId"] == intent["id"]
    with_session = {**by_stripe_id, "sessionId": str(uuid.uuid4())}
    assert ok(door.call("payment-status-update", with_session))["status"] == "succeeded"


@pytest.mark.parametrize(
    ("payment_intent_id", "code"),
    [
        ("", "validation_error"),  # the gateway's own `metadata.localId ?? ''` for an intent not ours
        (None, "validation_error"),  # not sent at all (only a sessionId)
        ("3f2b8c1e-5a47-4d0b-9c6e-2f1a7d9e4b10", "not_found"),  # the original service's UUIDs name nothing here
        ("pi_3QneverMadeHere", "not_found"),
        ("vypi_01jcv4w6sd1n2x3y4z5a6b7c8d", "not_found"),
    ],
    ids=["empty", "absent", "uuid", "unknown-stripe-id", "unknown-ours"],
)
def test_a_status_update_naming_no_intent_of_ours_is_a_clear_error(gateway, relay, payment_intent_id, code):
    door = KafkaDoor(gateway)
    update = value("payment-status-update-payload.dto", paymentIntentId=payment_intent_id)
    if payment_intent_id is None:
        del update["paymentIntentId"]
        update["sessionId"] = str(uuid.uuid4())
    error = refused(door.call("payment-status-update", update), code)
    if code == "validation_error":
        assert "paymentIntentId" in str(error["details"])


def test_the_status_as_the_gateway_reads_it(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    intent, _ = paid(door, stripe_api)
    status = ok(
        door.call("get-payment-intent-status", value("get-payment-intent-status.dto", paymentIntentId=intent["id"]))
    )
    assert (status["paymentIntentId"], status["status"]) == (intent["id"], "succeeded")
    assert status.get("customerEmail") is None  # no receipt address was given: none is answered
    unknown = value("get-payment-intent-status.dto")  # the fixture's UUID
    refused(door.call("get-payment-intent-status", unknown), "not_found")


def test_a_retry_as_the_gateway_sends_it_answers_what_it_can_do(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    _, declined = paid(door, stripe_api, DECLINED)
    assert declined is not None and declined["code"] == "card_declined"
    attempt_id = declined["details"]["attemptId"]
    # A declined card is retried only with another card: said clearly, never a traceback.
    same_card = refused(
        door.call("retry-payment-attempt", value("retry-payment-attempt.dto", attemptId=attempt_id)), "invalid_state"
    )
    assert "declined" in same_card["message"]
    refused(door.call("retry-payment-attempt", value("retry-payment-attempt.dto")), "not_found")  # the fixture's UUID
