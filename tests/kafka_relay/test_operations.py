"""All nine operations through the Kafka door: a gateway-like client, the relay, a real worker, Tansu."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from domain.answers import CREATED_ONLY
from tests.conftest import WEBHOOK_SECRET, make_card
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def customer() -> str:
    return f"kcust-{uuid.uuid4().hex[:12]}"


def vault(gateway, stripe_api, customer_id: str, number: str = "4242424242424242") -> dict:
    pm = make_card(stripe_api, number)
    reply = gateway.request(
        "create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": pm, "setAsDefault": True}
    )
    return reply["response"]


def test_a_request_is_answered_under_its_key_with_the_gateway_envelope_in_compact_json(gateway, relay):
    trace_id = f"trace-{uuid.uuid4()}"
    key = gateway.send("get-payment-intent", {"paymentIntentId": "vypi_missing"}, trace_id=trace_id)
    gateway.flush()
    received = gateway.collector.wait_for_key(key.encode(), "get-payment-intent-response", 60)
    assert received.key == key.encode()
    body = received.json()
    assert list(body) == ["kafkaResponseKey", "traceId", "error", "kafkaResponseStatus"]
    assert body["kafkaResponseStatus"] is False
    assert (body["kafkaResponseKey"], body["traceId"]) == (key, trace_id)
    assert set(body["error"]) == {"code", "message", "status", "details"}
    # Byte-compatible with JSON.stringify: no spaces after separators.
    assert received.value == json.dumps(body, separators=(",", ":")).encode()


def test_a_request_without_trace_id_gets_one_made_and_answered_with_it(gateway, relay):
    key = gateway.send("get-refund", {"refundId": "vyre_missing"})
    gateway.flush()
    body = gateway.reply("get-refund", key)
    assert body["kafkaResponseKey"] == key
    assert uuid.UUID(body["traceId"])
    assert body["error"]["code"] == "not_found"


def test_payment_methods_are_vaulted_listed_and_deleted_with_their_errors(gateway, relay, stripe_api):
    customer_id = customer()
    first = vault(gateway, stripe_api, customer_id)
    assert first["card"]["last4"] == "4242" and first["isDefault"]
    other = vault(gateway, stripe_api, customer_id, "5555555555554444")
    missing = gateway.request(
        "create-payment-method", {"customerId": customer_id, "stripePaymentMethodId": "pm_doesnotexist"}
    )
    assert missing["error"]["code"] == "not_found"

    page = gateway.request("list-payment-methods", {"customerId": customer_id, "limit": 1})["response"]
    assert [m["id"] for m in page["data"]] == [other["id"]] and page["hasMore"]
    bad_cursor = gateway.request("list-payment-methods", {"customerId": customer_id, "startingAfter": "vypm_x"})
    assert bad_cursor["error"]["code"] == "validation_error"

    deleted = gateway.request("delete-payment-method", {"paymentMethodId": other["id"]})
    assert deleted["response"] == {"id": other["id"], "deleted": True}
    again = gateway.request("delete-payment-method", {"paymentMethodId": other["id"]})
    assert again["error"]["code"] == "not_found"


def test_an_intent_is_paid_read_tracked_and_refunded_with_their_errors(gateway, relay, stripe_api):
    customer_id = customer()
    vault(gateway, stripe_api, customer_id)
    trace_id = f"trace-{uuid.uuid4()}"
    key = gateway.send(
        "create-payment-intent",
        {"customerId": customer_id, "amount": 5000, "currency": "usd", "confirm": True},
        trace_id=trace_id,
    )
    gateway.flush()
    intent = gateway.reply("create-payment-intent", key)["response"]
    assert intent["status"] == "succeeded" and intent["clientSecret"]
    # The traceId went with the request into Celery and down to Stripe.
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.metadata["vy_trace_id"] == trace_id

    got = gateway.request("get-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    # The read is the create's answer without what only a create answers: its client secret and the platform's
    # PaymentIntentCreatedDto fields (domain/answers.py).
    assert got == {k: v for k, v in intent.items() if k not in {"clientSecret", *CREATED_ONLY}}
    missing = gateway.request("get-payment-intent", {"paymentIntentId": "vypi_missing"})
    assert (missing["error"]["code"], missing["error"]["status"]) == ("not_found", 404)

    refund = gateway.request("create-refund", {"paymentIntentId": intent["id"], "amount": 1200})["response"]
    assert (refund["status"], refund["amount"]) == ("succeeded", 1200)
    too_much = gateway.request("create-refund", {"paymentIntentId": intent["id"], "amount": 5000})
    assert too_much["error"]["code"] == "refund_exceeds_amount"
    assert gateway.request("create-refund", {"paymentIntentId": "vypi_missing"})["error"]["code"] == "not_found"

    assert gateway.request("get-refund", {"refundId": refund["id"]})["response"] == refund
    assert gateway.request("get-refund", {"refundId": "vyre_missing"})["error"]["code"] == "not_found"

    history = gateway.request("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert [h["cause"] for h in history] == ["create-payment-intent", f"create-refund:{refund['id']}"]
    unknown = gateway.request("get-ztracking-payment-intent", {"paymentIntentId": "vypi_missing"})
    assert unknown["error"]["code"] == "not_found"


def test_a_declined_card_answers_card_declined(gateway, relay, stripe_api):
    customer_id = customer()
    vault(gateway, stripe_api, customer_id, "4000000000000341")
    reply = gateway.request(
        "create-payment-intent", {"customerId": customer_id, "amount": 900, "currency": "usd", "confirm": True}
    )
    assert (reply["error"]["code"], reply["error"]["status"]) == ("card_declined", 402)


def stripe_event(stripe_intent_id: str) -> str:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "payment_intent.processing",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": stripe_intent_id,
                    "object": "payment_intent",
                    "status": "processing",
                    "amount": 700,
                    "amount_received": 0,
                    "amount_capturable": 0,
                }
            },
        }
    )


def test_a_webhook_is_applied_once_and_a_bad_signature_is_refused(gateway, relay):
    created = gateway.request("create-payment-intent", {"customerId": customer(), "amount": 700, "currency": "usd"})
    payload = stripe_event(created["response"]["stripePaymentIntentId"])
    request = {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)}
    first = gateway.request("process-stripe-webhook", request)["response"]
    assert first["duplicate"] is False and first["eventId"] == json.loads(payload)["id"]
    assert gateway.request("process-stripe-webhook", request)["response"]["duplicate"] is True
    forged = gateway.request("process-stripe-webhook", {"payload": payload, "signature": sign(payload, "whsec_x")})
    assert forged["error"]["code"] == "invalid_signature"
    got = gateway.request("get-payment-intent", {"paymentIntentId": created["response"]["id"]})["response"]
    assert got["status"] == "processing"
