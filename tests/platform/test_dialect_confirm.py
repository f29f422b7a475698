"""The web app's confirm (confirm-payment-intent.dto.ts) on REST and Kafka: its `paymentMethodId` is the `pm_…`
Stripe.js made, vaulted for the intent's customer and paid with; receiptEmail, returnUrl, setupFutureUsage and
shipping reach Stripe; the e-mail is kept only on the intent; bad input is a validation_error."""

from __future__ import annotations

import uuid

import pytest

from models import PaymentMethod
from tests.conftest import make_card
from tests.platform.dialect import KafkaDoor, RestDoor, ok, refused, value
from tests.platform.test_checkout_create import checkout
from tests.tasks.test_secrets_never_written import dump_database

pytestmark = pytest.mark.integration

SHIPPING = {
    "name": "Ada Lovelace",
    "address": {"line1": "12 Harbour Road", "city": "Portland", "postal_code": "97201", "country": "US"},
    "phone": "+15035550100",
}


def email() -> str:
    return f"ada.{uuid.uuid4().hex[:10]}@example.com"


def web_app_checkout(door) -> dict:
    """The web app's create: the intent Stripe.js then confirms with its own pm_…."""
    intent = ok(door.call("create-payment-intent", checkout(email())))
    assert intent["status"] == "requires_payment_method"
    return intent


@pytest.mark.parametrize("door_name", ["rest", "kafka"])
def test_the_web_apps_confirm_pays_with_its_pm_and_answers_success(door_name, request, stripe_api):
    door = RestDoor(request.getfixturevalue("client")) if door_name == "rest" else None
    if door is None:
        request.getfixturevalue("relay")
        door = KafkaDoor(request.getfixturevalue("gateway"))
    intent = web_app_checkout(door)
    pm = make_card(stripe_api)
    address = email()
    confirm = value(
        "confirm-payment-intent.dto", paymentIntentId=intent["id"], paymentMethodId=pm, receiptEmail=address
    )
    confirmed = ok(door.call("confirm-payment-intent", confirm))
    assert confirmed["success"] is True and confirmed["status"] == "requires_capture"  # the checkout only authorises
    assert confirmed["requiresAction"] is False and confirmed["paymentIntentId"] == intent["id"]
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.payment_method == pm and at_stripe.receipt_email == address
    # Vaulted (not the default) for the checkout's customer: the attempt names it by our id.
    listed = ok(door.call("list-payment-methods", {"personId": intent["customerId"]}))
    assert [(m["externalId"], m["isDefault"]) for m in listed["data"]] == [(pm, False)]
    assert confirmed["attempts"][-1]["paymentMethodId"] == listed["data"][0]["id"]
    # The receipt's address is what the status answers now.
    assert ok(door.call("get-payment-intent-status", {"paymentIntentId": intent["id"]}))["customerEmail"] == address


def test_return_url_setup_future_usage_and_shipping_reach_stripe(client, stripe_api):
    door = RestDoor(client)
    intent = web_app_checkout(door)
    confirm = {
        "paymentIntentId": intent["id"],
        "paymentMethodId": make_card(stripe_api),
        "returnUrl": "https://app.example.com/payment-success",
        "setupFutureUsage": "on_session",
        "shipping": SHIPPING,
    }
    assert ok(door.call("confirm-payment-intent", confirm))["success"] is True
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.setup_future_usage == "on_session"
    assert (at_stripe.shipping.name, at_stripe.shipping.address.city) == ("Ada Lovelace", "Portland")


def test_a_3d_secure_card_answers_requires_action_with_the_client_secret(client, stripe_api):
    door = RestDoor(client)
    intent = web_app_checkout(door)
    confirm = {
        "paymentIntentId": intent["id"],
        "paymentMethodId": make_card(stripe_api, "4000002500003155"),
        "returnUrl": "http://localhost:3000/payment-success",
    }
    confirmed = ok(door.call("confirm-payment-intent", confirm))
    assert (confirmed["status"], confirmed["requiresAction"], confirmed["success"]) == ("requires_action", True, True)
    assert confirmed["clientSecret"].startswith(intent["stripePaymentIntentId"])


def test_another_customers_card_is_not_found_over_kafka_and_never_charged(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    intent = web_app_checkout(door)
    pm = make_card(stripe_api)
    someone = stripe_api.v1.customers.create(params={"email": "someone-else@example.com"})
    stripe_api.v1.payment_methods.attach(pm, params={"customer": someone.id})
    confirm = value("confirm-payment-intent.dto", paymentIntentId=intent["id"], paymentMethodId=pm)
    refused(door.call("confirm-payment-intent", confirm), "not_found")
    assert stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).status == "requires_payment_method"


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("returnUrl", "http://app.example.com/payment-success"),
        ("receiptEmail", "ada-at-example.com"),
        ("setupFutureUsage", "always"),
        ("shipping", {"name": "Ada", "address": {"line1": "12 Harbour Road"}}),
    ],
    ids=["http-return-url", "bad-email", "bad-setup-future-usage", "incomplete-shipping"],
)
def test_bad_platform_confirms_are_a_validation_error_naming_the_field(client, gateway, relay, field, bad):
    for door in (RestDoor(client), KafkaDoor(gateway)):
        confirm = value("confirm-payment-intent.dto", paymentIntentId="vypi_unknown", **{field: bad})
        error = refused(door.call("confirm-payment-intent", confirm), "validation_error")
        assert field in str(error["details"]), (door.name, error)


def test_the_receipt_email_of_a_confirm_is_kept_only_on_the_intent(client, stripe_api, mariadb, worker):
    door = RestDoor(client)
    customer_id = f"confirm-mail-{uuid.uuid4().hex[:8]}"
    intent = ok(door.call("create-payment-intent", {"customerId": customer_id, "amount": 800, "currency": "usd"}))
    address = email()
    confirm = {"paymentIntentId": intent["id"], "paymentMethodId": make_card(stripe_api), "receiptEmail": address}
    assert ok(door.call("confirm-payment-intent", confirm, key=f"confirm-{uuid.uuid4()}"))["success"] is True
    rows = [line for line in dump_database(mariadb).splitlines() if address in line]
    assert len(rows) == 1 and rows[0].startswith("payment_intent: ")  # not the stored request, events, history
    assert address not in worker.read_text()
    assert PaymentMethod.select().where(PaymentMethod.customer_id == customer_id).count() == 1
