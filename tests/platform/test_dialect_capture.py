"""The platform's capture (capture-payment-intent.dto.ts): the order service fires one at every READY_TO_SHIP,
reads no answer, each under a new message key; the gateway's REST capture follows its confirm. A repeat of a capture
done answers the captured intent (truthy), never an error and never a second capture; our own callers' repeat is
still refused (`invalid_state`, refund it) unless they ask `ifCaptured: answer`."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_card
from tests.platform.dialect import KafkaDoor, RestDoor, ok, our_key, platform_key, refused, value
from tests.support.lifecycle import _authorised

pytestmark = pytest.mark.integration


def test_the_order_services_repeated_captures_capture_once_and_each_answers_the_intent(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    intent = _authorised(door, stripe_api, 1200)
    capture = value("capture-payment-intent.dto", paymentIntentId=intent["id"])
    first = ok(door.call("capture-payment-intent", capture, key=platform_key("OrderService")))
    assert (first["status"], first["amountReceived"]) == ("succeeded", 1200) and first["attemptId"]
    again = ok(door.call("capture-payment-intent", capture, key=platform_key("OrderService")))
    assert (again["status"], again["amountReceived"], again["attemptId"]) == ("succeeded", 1200, first["attemptId"])
    captures = [a for a in again["attempts"] if a["operation"] == "capture"]
    assert len(captures) == 1  # the repeat opened no attempt and sent nothing to Stripe
    assert stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).amount_received == 1200


def test_a_platform_capture_of_a_payment_captured_at_its_confirm_answers_it(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    customer_id = f"auto-capture-{uuid.uuid4().hex[:8]}"
    method = {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True}
    ok(door.call("create-payment-method", method))
    paid = ok(door.call("create-payment-intent", {"customerId": customer_id, "amount": 700, "currency": "usd"}))
    paid = ok(door.call("confirm-payment-intent", {"paymentIntentId": paid["id"]}))
    assert paid["status"] == "succeeded"  # the web app's checkout captures at once
    capture = value("capture-payment-intent.dto", paymentIntentId=paid["id"])
    answer = ok(door.call("capture-payment-intent", capture, key=platform_key("OrderService")))
    assert answer["status"] == "succeeded" and answer["amountReceived"] == 700


def test_our_own_callers_repeat_is_still_refused_over_kafka(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    intent = _authorised(door, stripe_api, 900)
    ok(door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, key=our_key()))
    again = refused(
        door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, key=our_key()), "invalid_state"
    )
    assert "refund" in again["message"]


def test_a_platform_capture_of_a_payment_not_authorised_is_still_invalid_state(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    customer_id = f"not-auth-{uuid.uuid4().hex[:8]}"
    open_intent = ok(door.call("create-payment-intent", {"customerId": customer_id, "amount": 700, "currency": "usd"}))
    capture = value("capture-payment-intent.dto", paymentIntentId=open_intent["id"])
    refused(door.call("capture-payment-intent", capture, key=platform_key("OrderService")), "invalid_state")


def test_if_captured_answer_is_ours_to_ask_over_rest_and_only_for_a_whole_capture(client, stripe_api):
    door = RestDoor(client)
    intent = _authorised(door, stripe_api, 800)
    ok(door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, key=our_key()))
    again = ok(door.call("capture-payment-intent", {"paymentIntentId": intent["id"], "ifCaptured": "answer"}))
    assert again["status"] == "succeeded" and again["amountReceived"] == 800
    part = {"paymentIntentId": intent["id"], "ifCaptured": "answer", "amountToCapture": 100}
    assert "ifCaptured" in str(refused(door.call("capture-payment-intent", part), "validation_error")["details"])
    odd = {"paymentIntentId": intent["id"], "ifCaptured": "sometimes"}
    refused(door.call("capture-payment-intent", odd), "validation_error")


def test_the_platforms_key_shape_is_told_apart_from_our_callers_keys():
    from doors.platform import sent_by_platform

    assert sent_by_platform("OrderService-1733457000000-0.90210387")
    assert sent_by_platform("FinancePaymentsKafkaService-1733457000000-0.48213377")
    assert sent_by_platform("OrderService-1733457000000-2.5e-7")
    for ours in (None, "", "cap-1", str(uuid.uuid4()), "PaymentsGateway-9f1c", "OrderService-173345-0.9"):
        assert not sent_by_platform(ours), ours
