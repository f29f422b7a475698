"""The web app's checkout create (`items` + `customerDetails`) and the PRD's `amountCents`, on REST and Kafka: priced
from the cart, paid by the person named by e-mail (one Stripe Customer per address), the e-mail kept only where Stripe
and the receipt need it."""

from __future__ import annotations

import uuid

import pytest

from domain.personal_data import email_customer_id
from stand_ins.demo import checkout_body
from tests.api.conftest import Client, running_api
from tests.api.test_rest_api import assert_error
from tests.conftest import make_card
from tests.tasks.test_secrets_never_written import dump_database

pytestmark = pytest.mark.integration

CREATED_FIELDS = {"success", "paymentIntentId", "clientSecret", "totalAmount", "originalAmount", "amountUnit"}


def email() -> str:
    return f"Ada.{uuid.uuid4().hex[:10]}@Example.com"


def checkout(address: str) -> dict:
    """The body the web app's StripePaymentForm sends (create-payment-intent-payload.dto.ts), as the demo sends it."""
    return checkout_body(address)


def test_a_checkout_is_priced_from_its_cart_and_answers_what_the_web_app_reads(client, stripe_api):
    address = email()
    response = client.post("/payment-intents", json=checkout(address))
    assert response.status_code == 201, response.text
    intent = response.json()
    assert intent["amount"] == 2 * 1250 + 499 and intent["currency"] == "usd"
    # As the original service: the confirm authorises, the order service captures when the order ships.
    assert intent["captureMethod"] == "manual"
    assert CREATED_FIELDS <= intent.keys()
    assert intent["success"] is True and intent["paymentIntentId"] == intent["id"]
    assert intent["totalAmount"] == intent["originalAmount"] == 2999 and intent["amountUnit"] == "cents"
    assert intent["appliedCoupons"] == [] and intent["clientSecret"].startswith(intent["stripePaymentIntentId"])
    assert intent["customerId"] == email_customer_id(address)  # the platform has no customer id here
    assert [(item["quantity"], item["priceCents"]) for item in intent["items"]] == [(2, 1250), (1, 499)]

    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.receipt_email == address and at_stripe.metadata["localId"] == intent["id"]
    customer = stripe_api.v1.customers.retrieve(at_stripe.customer)
    assert customer.email == address.lower() and customer.name == "Ada Lovelace"
    assert customer.address.line1 == "12 Harbour Road" and customer.address.postal_code == "97201"

    # The cart is kept with the intent's history; the status says where the receipt goes.
    history = client.get(f"/payment-intents/{intent['id']}/history").json()
    assert history[0]["items"] == intent["items"]
    status = client.get(f"/payment-intents/{intent['id']}/status").json()
    assert status["customerEmail"] == address


def test_one_person_is_one_customer_whatever_the_case_of_their_email(client, stripe_api):
    address = email()
    first = client.post("/payment-intents", json=checkout(address)).json()
    second = client.post("/payment-intents", json=checkout(address.upper())).json()
    assert first["customerId"] == second["customerId"]
    stripe_customers = {
        stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).customer for intent in (first, second)
    }
    assert len(stripe_customers) == 1


def test_a_stripe_customer_the_platform_made_for_the_email_is_used_not_duplicated(client, stripe_api):
    address = email().lower()
    earlier = stripe_api.v1.customers.create(params={"email": address})  # the original service's, no vy_ metadata
    created = client.post("/payment-intents", json=checkout(address)).json()
    assert stripe_api.v1.payment_intents.retrieve(created["stripePaymentIntentId"]).customer == earlier.id


def test_a_stripe_customer_of_another_customer_of_ours_is_never_taken_over(client, stripe_api):
    address = email().lower()
    theirs = stripe_api.v1.customers.create(params={"email": address, "metadata": {"vy_customer_id": "someone-else"}})
    created = client.post("/payment-intents", json=checkout(address)).json()
    assert stripe_api.v1.payment_intents.retrieve(created["stripePaymentIntentId"]).customer != theirs.id


@pytest.mark.parametrize(
    ("items", "why"),
    [
        ([], "items"),
        (
            [
                {"id": "a", "quantity": 1, "priceCents": 500, "currency": "usd"},
                {"id": "b", "quantity": 1, "priceCents": 500, "currency": "eur"},
            ],
            "one currency",
        ),
        ([{"id": "a", "quantity": 0, "priceCents": 500, "currency": "usd"}], "items.0.quantity"),
        ([{"id": "a", "quantity": 1, "priceCents": -5, "currency": "usd"}], "items.0.priceCents"),
    ],
    ids=["empty", "two-currencies", "zero-quantity", "negative-price"],
)
def test_a_cart_that_cannot_be_priced_is_a_validation_error_and_creates_nothing(client, stripe_api, items, why):
    address = email()
    body = checkout(address)
    body["items"] = items
    error = assert_error(client.post("/payment-intents", json=body), 400, "validation_error")["error"]
    assert why in str(error["details"])
    assert not stripe_api.v1.customers.list(params={"email": address.lower()}).data  # nothing reached Stripe


def test_an_amount_that_is_not_the_carts_total_is_refused(client):
    body = {**checkout(email()), "amount": 100, "currency": "usd"}
    error = assert_error(client.post("/payment-intents", json=body), 400, "validation_error")["error"]
    assert "total" in str(error["details"])


def test_a_checkout_that_names_its_capture_method_keeps_it(client):
    intent = client.post("/payment-intents", json={**checkout(email()), "captureMethod": "automatic"}).json()
    assert intent["captureMethod"] == "automatic"


def test_the_prds_amount_cents_and_order_id_create_an_intent(client, stripe_api):
    customer_id = f"prd-{uuid.uuid4().hex[:10]}"
    client.post(
        "/payment-methods",
        json={"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True},
    )
    order_id = str(uuid.uuid4())
    body = {"customerId": customer_id, "orderId": order_id, "amountCents": 2500, "currency": "USD", "metadata": {}}
    response = client.post("/payment-intents", json=body)
    assert response.status_code == 201, response.text
    intent = response.json()
    assert intent["amount"] == intent["amountCents"] == 2500 and intent["orderId"] == order_id
    assert_error(client.post("/payment-intents", json={**body, "amount": 2500}), 400, "validation_error")


def test_the_body_idempotency_key_replays_the_first_checkout(client):
    body = {**checkout(email()), "idempotencyKey": f"checkout-{uuid.uuid4()}"}
    first = client.post("/payment-intents", json=body)
    again = client.post("/payment-intents", json=body)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/payment-intents", json=body, headers={"Idempotency-Key": "another-key-1234"})
    assert_error(other, 400, "validation_error")


def test_the_body_idempotency_key_replays_over_kafka_under_new_message_keys(gateway, relay):
    body = {**checkout(email()), "idempotencyKey": f"checkout-{uuid.uuid4()}"}
    first = gateway.request("create-payment-intent", body)
    again = gateway.request("create-payment-intent", body)  # the gateway's retry: a new key of its own
    assert first["response"]["id"] == again["response"]["id"]
    assert first["response"]["paymentIntentId"] == first["response"]["id"]


def test_the_email_is_kept_only_on_the_intent_for_its_receipt(client, mariadb, worker):
    address = email()
    intent = client.post("/payment-intents", json=checkout(address)).json()
    tables = dump_database(mariadb)
    assert intent["id"] in tables  # the scan reads what the service wrote
    receipt_rows = [line for line in tables.splitlines() if address in line]
    assert len(receipt_rows) == 1 and receipt_rows[0].startswith("payment_intent: ")
    assert address not in worker.read_text() and address.lower() not in worker.read_text()


def test_rest_can_refuse_carts_priced_by_the_caller(worker):
    with running_api("api-no-items.log", REST_ITEM_PRICED_CREATES="false") as base:
        api = Client(base)
        error = assert_error(api.post("/payment-intents", json=checkout(email())), 400, "validation_error")
        assert "REST_ITEM_PRICED_CREATES" in error["error"]["message"]


def test_the_operator_page_shows_the_cart_an_intent_was_priced_from(client):
    intent = client.post("/payment-intents", json=checkout(email())).json()
    page = client.get(f"/ops/intents/{intent['id']}")
    assert page.status_code == 200
    cart = page.text[page.text.index('id="cart"') :]
    for item in intent["items"]:
        assert item["id"] in cart
    assert "12.50 USD" in cart and "25.00 USD" in cart and "4.99 USD" in cart  # a price and its line, as money
