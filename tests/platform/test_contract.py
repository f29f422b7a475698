"""The contract (issue 23 §6): every request the platform sends, replayed as it sends it, answers what it reads.

One test per request DTO of tests/platform/README.md, named after its fixture. Each loads `fixtures/<dto>.json` and
replaces only the ids (the platform's UUIDs become records made earlier in the test) and amounts: the rest of the
shape reaches the service byte for byte. Kafka as the gateway (and the order service) sends it: the topic, a key
`<ServiceName>-<epoch ms>-<random>` after the fixture's, the value `{…dto, traceId}`. Socket.IO as the web app emits
it: a browser's socket (`?userId=` and its token), the event named after the topic, the DTO without `traceId`. Each
asserts the fields of the table's last column, and that `response` is truthy (the gateway resolves on nothing else).

The records a test needs beforehand are made in our own dialect, so that each test stands or falls with its own
DTO only.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.personal_data import email_customer_id
from tests.conftest import WEBHOOK_SECRET, make_card
from tests.support.kafka import Gateway
from tests.support.lifecycle import DECLINED, captures_fail_unacted
from tests.support.sockets import SocketClient
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The checkout's cart in the fixture: two at 1250 USD cents.
CART_TOTAL = 2500


def fixture(dto: str) -> dict[str, Any]:
    """`fixtures/<dto>.json`, e.g. fixture("capture-payment-intent.dto")."""
    return json.loads((FIXTURES / f"{dto}.json").read_text())


def value_of(dto: str, **replaced: Any) -> dict[str, Any]:
    """The fixture's value with only the named fields replaced (each must be one the platform sends)."""
    value = copy.deepcopy(fixture(dto)["value"])
    for name, new in replaced.items():
        assert name in value, f"{dto} sends no {name}"
        value[name] = new
    return value


def platform_key(dto: str) -> str:
    """A key as the platform's sender of this DTO makes one: its fixture's service name, epoch ms, a random."""
    service = fixture(dto).get("key", "FinancePaymentsKafkaService-0-0").split("-")[0]
    return f"{service}-{int(time.time() * 1000)}-{random.random()}"


def send(gateway: Gateway, dto: str, value: dict[str, Any]) -> str:
    """Produce the request on the DTO's topic under a platform key; the key."""
    key = platform_key(dto)
    gateway.send(fixture(dto)["topic"], value, key=key)
    gateway.flush()
    return key


def replayed(gateway: Gateway, dto: str, value: dict[str, Any]) -> dict[str, Any]:
    """Send as the platform does and wait for the reply, which names the platform's key and trace id."""
    key = send(gateway, dto, value)
    reply = gateway.reply(fixture(dto)["topic"], key, timeout=90)
    assert reply["kafkaResponseKey"] == key and reply["traceId"] == value["traceId"], reply
    return reply


def answer_to(gateway: Gateway, dto: str, **replaced: Any) -> Any:
    """The answer to the fixture `dto` (its ids and amounts `replaced`), replayed as the platform sends it."""
    return answered(replayed(gateway, dto, value_of(dto, **replaced)))


def answered(envelope: dict[str, Any]) -> Any:
    """The response, truthy: what the gateway resolves on."""
    assert envelope.get("kafkaResponseStatus") is True and envelope.get("response"), envelope
    return envelope["response"]


def refused(envelope: dict[str, Any], *codes: str) -> dict[str, Any]:
    """An error the gateway rejects on (never a truthy response)."""
    assert envelope.get("kafkaResponseStatus") is False and not envelope.get("response"), envelope
    assert envelope["error"]["code"] in codes, envelope
    return envelope["error"]


# -- records made beforehand, in our own dialect


def ours(gateway: Gateway, operation: str, payload: dict[str, Any]) -> Any:
    return answered(gateway.request(operation, payload, timeout=90))


def vault(gateway: Gateway, stripe_api, customer_id: str, number: str = "4242424242424242") -> dict[str, Any]:
    body = {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": True}
    return ours(gateway, "create-payment-method", body)


def checkout(gateway: Gateway) -> dict[str, Any]:
    """The web app's create (the fixture, a new cart line id): an intent awaiting its card."""
    value = value_of("create-payment-intent-payload.dto")
    value["items"][0]["id"] = str(uuid.uuid4())
    return answered(replayed(gateway, "create-payment-intent-payload.dto", value))


def authorised(gateway: Gateway, stripe_api) -> dict[str, Any]:
    """A checkout confirmed with a card of its customer: authorised, waiting for the order service's capture."""
    created = checkout(gateway)
    method = vault(gateway, stripe_api, created["customerId"])
    confirmed = ours(
        gateway, "confirm-payment-intent", {"paymentIntentId": created["id"], "paymentMethodId": method["id"]}
    )
    assert confirmed["status"] == "requires_capture", confirmed
    return confirmed


def captured(gateway: Gateway, stripe_api) -> dict[str, Any]:
    intent = authorised(gateway, stripe_api)
    paid = ours(gateway, "capture-payment-intent", {"paymentIntentId": intent["id"]})
    assert paid["status"] == "succeeded", paid
    return paid


def declined(gateway: Gateway, stripe_api) -> tuple[str, str]:
    """A checkout whose confirm was declined: (intent id, the failed attempt's id)."""
    created = checkout(gateway)
    method = vault(gateway, stripe_api, created["customerId"], DECLINED)
    body = {"paymentIntentId": created["id"], "paymentMethodId": method["id"]}
    error = refused(gateway.request("confirm-payment-intent", body, timeout=90), "card_declined")
    return created["id"], error["details"]["attemptId"]


# -- the web app's socket


@pytest.fixture()
def web_app(socket_stack) -> Iterator[SocketClient]:
    """A browser's socket as the web app opens it: the person's `?userId=`, its token (the gateway authenticates
    nothing; our door does)."""
    person = str(uuid.uuid4())
    url = f"{socket_stack.sockets[0]}?{urllib.parse.urlencode({'userId': person})}"
    client = SocketClient(url, token=socket_stack.token(person)).connect()
    yield client
    client.close()


def emitted(client: SocketClient, dto: str, value: dict[str, Any]) -> dict[str, Any]:
    """Emit the DTO as the web app does (no traceId: the gateway adds it); the acknowledgement's envelope, also heard
    as `<topic>-result`."""
    topic = fixture(dto)["topic"]
    body = {k: v for k, v in value.items() if k != "traceId"}
    envelope = client.call(topic, body)
    if "response" in envelope:
        result = client.wait_for(f"{topic}-result", lambda answer: answer == envelope["response"], 10)
        assert result[0] == envelope["response"]
    return envelope


def web_checkout(client: SocketClient) -> dict[str, Any]:
    value = value_of("create-payment-intent-payload.dto")
    value["items"][0]["id"] = str(uuid.uuid4())
    return answered(emitted(client, "create-payment-intent-payload.dto", value))


# -- one test per request DTO


@pytest.mark.parametrize("door", ["kafka", "socketio"])
def test_create_payment_intent_payload_dto(door, request, gateway, relay, stripe_api):
    value = value_of("create-payment-intent-payload.dto")
    value["items"][0]["id"] = str(uuid.uuid4())
    if door == "kafka":
        created = answered(replayed(gateway, "create-payment-intent-payload.dto", value))
        assert created["customerId"] == email_customer_id("ada@example.com")
    else:
        created = answered(emitted(request.getfixturevalue("web_app"), "create-payment-intent-payload.dto", value))
    # What the web app and the gateway's socket read.
    assert created["paymentIntentId"] == created["id"] and created["clientSecret"].startswith("pi_")
    assert created["success"] is True and created["appliedCoupons"] == []
    assert created["totalAmount"] == created["originalAmount"] == CART_TOTAL and created["amountUnit"] == "cents"
    # As the original service: authorised at the confirm, captured by the order service when the order ships.
    assert created["captureMethod"] == "manual" and created["status"] == "requires_payment_method"
    at_stripe = stripe_api.v1.payment_intents.retrieve(created["stripePaymentIntentId"])
    assert at_stripe.metadata["localId"] == created["id"] and at_stripe.receipt_email == "ada@example.com"


@pytest.mark.parametrize("door", ["kafka", "socketio"])
def test_confirm_payment_intent_dto(door, request, gateway, relay, stripe_api):
    """Stripe.js's `pm_…` (not vaulted with us) pays the intent of the customer it is attached to."""
    web = request.getfixturevalue("web_app") if door == "socketio" else None
    created = web_checkout(web) if web else checkout(gateway)
    pm = make_card(stripe_api)
    value = value_of("confirm-payment-intent.dto", paymentIntentId=created["id"], paymentMethodId=pm)
    envelope = (
        emitted(web, "confirm-payment-intent.dto", value)
        if web
        else replayed(gateway, "confirm-payment-intent.dto", value)
    )
    confirmed = answered(envelope)
    assert confirmed["success"] is True  # what the web app reads
    assert confirmed["paymentIntentId"] == created["id"] and confirmed["status"] == "requires_capture"
    assert confirmed["requiresAction"] is False
    at_stripe = stripe_api.v1.payment_intents.retrieve(created["stripePaymentIntentId"])
    assert at_stripe.payment_method == pm and at_stripe.receipt_email == value["receiptEmail"]


def test_capture_payment_intent_dto(gateway, relay, stripe_api):
    intent = authorised(gateway, stripe_api)
    paid = answer_to(gateway, "capture-payment-intent.dto", paymentIntentId=intent["id"])
    # The gateway reads a truthy response; the original answered the attempt: attemptId, nextRetryAt.
    assert paid["attemptId"] and "nextRetryAt" in paid and paid["nextRetryAt"] is None
    assert paid["status"] == "succeeded" and paid["amountReceived"] == CART_TOTAL


def test_capture_payment_intent_dto_fired_twice_by_the_order_service_without_waiting_captures_once(
    gateway, relay, stripe_api
):
    """The order service emits capture when an order becomes READY_TO_SHIP and reads no reply; an order set to it
    twice sends it twice, each under a key of its own."""
    intent = authorised(gateway, stripe_api)
    value = value_of("capture-payment-intent.dto", paymentIntentId=intent["id"])
    keys = [send(gateway, "capture-payment-intent.dto", value) for _ in range(2)]
    # Only to know that both were handled: the order service itself never reads these.
    replies = [gateway.reply("capture-payment-intent", key, timeout=90) for key in keys]
    assert sum(reply.get("kafkaResponseStatus") is True for reply in replies) >= 1, replies
    for reply in replies:
        if reply.get("kafkaResponseStatus") is not True:
            refused(reply, "invalid_state")  # captured already, or the other capture was at Stripe
    after = ours(gateway, "get-payment-intent", {"paymentIntentId": intent["id"]})
    captures = [a for a in after["attempts"] if a["operation"] == "capture"]
    assert [a["status"] for a in captures] == ["succeeded"]
    assert after["status"] == "succeeded" and after["amountReceived"] == CART_TOTAL
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.status == "succeeded" and at_stripe.amount_received == CART_TOTAL


def test_create_refund_dto(gateway, relay, stripe_api):
    paid = captured(gateway, stripe_api)
    value = value_of("create-refund.dto", paymentIntentId=paid["id"])
    refund = answered(replayed(gateway, "create-refund.dto", value))
    assert refund["refundId"] == refund["id"] and refund["amountCents"] == value["amountCents"] == 500
    assert refund["paymentIntentId"] == paid["id"] and refund["externalId"].startswith("re_")
    at_stripe = stripe_api.v1.refunds.retrieve(refund["externalId"])
    assert at_stripe.amount == 500 and at_stripe.reason == "requested_by_customer"


def test_get_payment_refund_dto(gateway, relay, stripe_api):
    paid = captured(gateway, stripe_api)
    made = ours(gateway, "create-refund", {"paymentIntentId": paid["id"], "amount": 500})
    refund = answered(
        replayed(gateway, "get-payment-refund.dto", value_of("get-payment-refund.dto", refundId=made["id"]))
    )
    assert refund["refundId"] == made["id"] and refund["amountCents"] == 500 and refund["paymentIntentId"] == paid["id"]


def assert_paid_status(status: dict[str, Any], paid: dict[str, Any]) -> None:
    """A PaymentStatus answer about `paid`, captured with the fixtures' customer e-mail."""
    assert (status["paymentIntentId"], status["customerEmail"], status["status"]) == (
        paid["id"],
        "ada@example.com",
        "succeeded",
    )


def test_get_payment_intent_status_dto(gateway, relay, stripe_api):
    paid = captured(gateway, stripe_api)
    status = answer_to(gateway, "get-payment-intent-status.dto", paymentIntentId=paid["id"])
    assert_paid_status(status, paid)  # typed PaymentStatusUpdateDto by the gateway


def test_get_payment_intent_dto(gateway, relay, stripe_api):
    paid = captured(gateway, stripe_api)
    intent = answer_to(gateway, "get-payment-intent.dto", paymentIntentId=paid["id"])
    assert intent["paymentIntentId"] == paid["id"] and intent["externalId"] == paid["stripePaymentIntentId"]
    assert intent["amountCents"] == CART_TOTAL and intent["status"] == "succeeded"


def test_get_ztracking_payment_intent_dto(gateway, relay, stripe_api):
    paid = captured(gateway, stripe_api)
    history = answer_to(gateway, "get-ztracking-payment-intent.dto", paymentIntentId=paid["id"])
    assert isinstance(history, list) and {row["paymentIntentId"] for row in history} == {paid["id"]}
    assert history[0]["status"] == "requires_payment_method" and history[-1]["status"] == "succeeded"
    assert all(row["ztrackingVersion"] and row["versionDate"] for row in history)


def test_create_payment_method_dto(gateway, relay, stripe_api):
    person, pm = str(uuid.uuid4()), make_card(stripe_api)
    method = answer_to(gateway, "create-payment-method.dto", personId=person, externalId=pm)
    assert method["paymentMethodId"] == method["id"] and method["personId"] == person
    assert method["externalId"] == pm and method["isDefault"] is True
    listed = ours(gateway, "list-payment-methods", {"customerId": person})
    assert [m["id"] for m in listed["data"]] == [method["id"]]


def test_get_payment_methods_dto(gateway, relay, stripe_api):
    person = str(uuid.uuid4())
    method = vault(gateway, stripe_api, person)
    listed = answered(
        replayed(gateway, "get-payment-methods.dto", value_of("get-payment-methods.dto", personId=person))
    )
    assert [(m["paymentMethodId"], m["personId"]) for m in listed["data"]] == [(method["id"], person)]


def test_delete_payment_method_dto(gateway, relay, stripe_api):
    method = vault(gateway, stripe_api, str(uuid.uuid4()))
    deleted = answer_to(gateway, "delete-payment-method.dto", paymentMethodId=method["id"])
    assert deleted == {"id": method["id"], "deleted": True}


def test_retry_payment_attempt_dto_of_a_failed_capture_captures(gateway, relay, stripe_api, localstripe_url):
    from domain import janitor
    from models import unit_of_work

    intent = authorised(gateway, stripe_api)
    with captures_fail_unacted(localstripe_url, intent):
        refused(gateway.request("capture-payment-intent", {"paymentIntentId": intent["id"]}, 90), "stripe_error")
    with unit_of_work():
        janitor.run(grace=dt.timedelta(0))  # Stripe said it did not act: the attempt is settled failed
    failed = ours(gateway, "get-payment-intent", {"paymentIntentId": intent["id"]})["attempts"][-1]
    assert (failed["operation"], failed["status"]) == ("capture", "failed")
    retried = answer_to(gateway, "retry-payment-attempt.dto", attemptId=failed["attemptId"])
    # The gateway reads a truthy response: the original answered attemptId, nextRetryAt.
    assert retried["attemptId"] and retried["attemptId"] != failed["attemptId"] and retried["nextRetryAt"] is None
    assert ours(gateway, "get-payment-intent", {"paymentIntentId": intent["id"]})["status"] == "succeeded"


def test_retry_payment_attempt_dto_of_a_declined_card_is_refused_until_another_card_is_given(
    gateway, relay, stripe_api
):
    """The original re-ran a declined attempt with the same card (and answered its attempt whatever happened); a
    declined card is declined again, so ours says what to do instead (README: What is not supported)."""
    intent_id, attempt_id = declined(gateway, stripe_api)
    value = value_of("retry-payment-attempt.dto", attemptId=attempt_id)
    error = refused(replayed(gateway, "retry-payment-attempt.dto", value), "invalid_state")
    assert "declined" in error["message"]
    attempts = ours(gateway, "get-payment-intent", {"paymentIntentId": intent_id})["attempts"]
    assert [a["status"] for a in attempts] == ["failed"]  # nothing was sent to Stripe again


def test_payment_status_update_payload_dto(gateway, relay, stripe_api):
    """The gateway's Stripe webhook handler, on a succeeded intent: `paymentIntentId` is its metadata.localId."""
    paid = captured(gateway, stripe_api)
    update = answer_to(gateway, "payment-status-update-payload.dto", paymentIntentId=paid["id"])
    assert_paid_status(update, paid)  # the whole response goes to the intent's room as payment-status-update-result


def test_payment_status_update_payload_dto_of_an_intent_with_no_local_id_is_an_error(gateway, relay):
    """An intent at Stripe that is none of ours (no metadata.localId): the gateway sends '' and gets an error, as
    the original answered (not found); nothing is pushed."""
    value = value_of("payment-status-update-payload.dto", paymentIntentId="")
    refused(replayed(gateway, "payment-status-update-payload.dto", value), "validation_error", "not_found")


def test_payment_status_update_dto(gateway, relay, stripe_api):
    """The same handler on payment_intent.payment_failed: its `status` and `error` are not trusted; Stripe is read."""
    intent_id, _ = declined(gateway, stripe_api)
    update = answer_to(gateway, "payment-status-update.dto", paymentIntentId=intent_id)
    assert (update["paymentIntentId"], update["status"]) == (intent_id, "requires_payment_method")
    assert update["errorCode"] == "card_declined" and update["customerEmail"] == "ada@example.com"


def test_stripe_webhook_dto(gateway, relay):
    """`processStripeWebhook` (defined in the gateway, never called): the raw event and its Stripe-Signature."""
    original = value_of("stripe-webhook.dto")
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = original["payload"].replace("evt_1QexampleA1b2", event_id)
    processed = answer_to(gateway, "stripe-webhook.dto", payload=payload, signature=sign(payload, WEBHOOK_SECRET))
    assert processed == {"eventId": event_id, "type": "payment_intent.succeeded", "duplicate": False}


def test_create_payment_intent_dto(gateway, relay, stripe_api):
    """The PRD's create (§5.1; no sender in the platform's code) names no payer: the order is a customer of its own,
    so the request as sent creates the order's intent (and a `customerId`, when given, is the payer)."""
    order_id = str(uuid.uuid4())
    value = value_of("create-payment-intent.dto", orderId=order_id)
    value["traceId"] = f"prd-create-{uuid.uuid4()}"
    as_sent = answered(replayed(gateway, "create-payment-intent.dto", value))
    assert as_sent["customerId"] == f"order:{order_id}" and as_sent["amountCents"] == 2500
    assert as_sent["paymentIntentId"] == as_sent["id"] and as_sent["clientSecret"].startswith("pi_")  # PRD §5.1
    customer_id = str(uuid.uuid4())
    vault(gateway, stripe_api, customer_id)
    created = answered(replayed(gateway, "create-payment-intent.dto", {**value, "customerId": customer_id}))
    assert created["paymentIntentId"] == created["id"] and created["clientSecret"].startswith("pi_")  # PRD §5.1
    assert created["customerId"] == customer_id and created["id"] != as_sent["id"]
    assert (created["orderId"], created["amountCents"], created["metadata"]) == (
        order_id,
        2500,
        {"source": "my-backend"},
    )
