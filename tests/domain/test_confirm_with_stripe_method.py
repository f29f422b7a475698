"""A confirm with the browser's own `pm_…` (the platform's web app, Stripe.js) and Stripe's confirm options, on both
databases: the method is vaulted for the intent's customer and attached to its Stripe Customer once, whatever is
repeated; another customer's card is never charged; the receipt's address is kept only where it must be."""

from __future__ import annotations

import uuid

import pytest

from domain import idempotency
from doors.platform import translate
from errors import OperationError
from models import IdempotencyRecord, PaymentAttempt, PaymentIntent, PaymentMethod
from settings import get_settings
from tests.conftest import make_card
from tests.domain.helpers import call, context

pytestmark = pytest.mark.integration

SHIPPING = {
    "name": "Ada Lovelace",
    "address": {"line1": "12 Harbour Road", "city": "Portland", "state": "OR", "postal_code": "97201", "country": "US"},
}


def open_intent(prefix: str = "dom-pm", capture_method: str = "automatic") -> dict:
    """An intent with no payment method yet: the web app's checkout, before Stripe.js has the card."""
    customer_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    create = {"customerId": customer_id, "amount": 1500, "currency": "usd", "captureMethod": capture_method}
    return call("create-payment-intent", create)


def platform_confirm(payload: dict, ctx=None) -> dict:
    """The platform's confirm, read into ours as every door reads it."""
    return call("confirm-payment-intent", translate("confirm-payment-intent", payload, get_settings()), ctx)


def test_a_browsers_pm_is_vaulted_non_default_attached_and_pays(domain_db, stripe_api):
    intent = open_intent()
    pm = make_card(stripe_api)
    confirmed = platform_confirm({"paymentIntentId": intent["id"], "paymentMethodId": pm})
    assert confirmed["status"] == "succeeded"
    method = PaymentMethod.get(PaymentMethod.stripe_payment_method_id == pm)
    assert (method.customer_id, method.is_default, method.card_last4) == (intent["customerId"], False, "4242")
    # The attempt and the intent name it by our id; Stripe charged it, attached to the intent's customer.
    assert confirmed["paymentMethodId"] == method.id and confirmed["attempts"][-1]["paymentMethodId"] == method.id
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.payment_method == pm
    assert stripe_api.v1.payment_methods.retrieve(pm).customer == at_stripe.customer


def test_a_pm_attached_before_a_crash_is_not_attached_again_and_is_vaulted_once(domain_db, stripe_api):
    intent = open_intent()
    pm = make_card(stripe_api)
    stripe_customer = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).customer
    # A first attempt attached it, then died before its row: the retry finds it attached to this very customer.
    stripe_api.v1.payment_methods.attach(pm, params={"customer": stripe_customer})
    key = f"confirm-{uuid.uuid4()}"
    first = platform_confirm({"paymentIntentId": intent["id"], "paymentMethodId": pm}, context(key))
    again = platform_confirm({"paymentIntentId": intent["id"], "paymentMethodId": pm}, context(key))
    assert first == again and first["status"] == "succeeded"
    assert PaymentMethod.select().where(PaymentMethod.stripe_payment_method_id == pm).count() == 1


def test_a_pm_of_another_stripe_customer_is_not_found_and_nothing_is_charged(domain_db, stripe_api):
    intent = open_intent()
    pm = make_card(stripe_api)
    someone = stripe_api.v1.customers.create(params={"email": "someone@example.com"})
    stripe_api.v1.payment_methods.attach(pm, params={"customer": someone.id})
    with pytest.raises(OperationError) as refused:
        platform_confirm({"paymentIntentId": intent["id"], "paymentMethodId": pm})
    assert refused.value.code == "not_found"
    assert stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).status == "requires_payment_method"
    assert not PaymentMethod.select().where(PaymentMethod.stripe_payment_method_id == pm).exists()
    assert not PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == intent["id"]).exists()


def test_a_pm_vaulted_for_another_customer_of_ours_is_not_found(domain_db, stripe_api):
    pm = make_card(stripe_api)
    call("create-payment-method", {"customerId": f"other-{uuid.uuid4().hex[:8]}", "stripePaymentMethodId": pm})
    intent = open_intent()
    with pytest.raises(OperationError) as refused:
        platform_confirm({"paymentIntentId": intent["id"], "paymentMethodId": pm})
    assert refused.value.code == "not_found"


def test_a_pm_unknown_to_stripe_is_not_found(domain_db, stripe_api):
    intent = open_intent()
    with pytest.raises(OperationError) as refused:
        platform_confirm({"paymentIntentId": intent["id"], "paymentMethodId": "pm_doesnotexist123"})
    assert refused.value.code == "not_found"


def test_confirm_options_reach_stripe_and_the_email_is_stored_only_hashed_with_the_key(domain_db, stripe_api):
    intent = open_intent()
    address = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    key = f"confirm-{uuid.uuid4()}"
    confirm = {
        "paymentIntentId": intent["id"],
        "paymentMethodId": make_card(stripe_api),
        "receiptEmail": address,
        "returnUrl": "https://app.example.com/payment-success",
        "setupFutureUsage": "off_session",
        "shipping": SHIPPING,
    }
    platform_confirm(confirm, context(key))
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.receipt_email == address and at_stripe.setup_future_usage == "off_session"
    assert at_stripe.shipping.name == "Ada Lovelace" and at_stripe.shipping.address.postal_code == "97201"
    assert PaymentIntent.get_by_id(intent["id"]).receipt_email == address  # the status answers it
    record = IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(key))
    stored = f"{record.request} {record.stripe_params}"
    assert address not in stored and "Harbour" not in stored and "Lovelace" not in stored
    assert "hmacSha256" in stored and "payment-success" in stored
    # The same key and body replays; another address under it is another request.
    assert platform_confirm(confirm, context(key))["status"] == "succeeded"
    with pytest.raises(OperationError) as other:
        platform_confirm({**confirm, "receiptEmail": "bob@example.com"}, context(key))
    assert other.value.code == "idempotency_key_reused"  # told apart by the hash alone


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("returnUrl", "http://app.example.com/back"),
        ("returnUrl", "javascript:alert(1)"),
        ("receiptEmail", "not-an-email"),
        ("setupFutureUsage", "sometimes"),
        ("shipping", {"name": "Ada"}),
        ("shipping", {"name": "Ada", "address": {"line1": "x", "city": "y", "postalCode": "1", "country": "US"}}),
    ],
    ids=["http-return-url", "script-url", "bad-email", "bad-usage", "no-address", "camel-postal-code"],
)
def test_bad_confirm_options_are_a_validation_error_naming_the_field(domain_db, field, value):
    payload = {"paymentIntentId": "vypi_x", "paymentMethodId": "pm_1abc", field: value}
    with pytest.raises(OperationError) as refused:
        platform_confirm(payload)
    assert refused.value.code == "validation_error" and field in str(refused.value.details)


def test_local_return_urls_are_accepted_over_http(domain_db):
    from domain.schemas import ConfirmPaymentIntentInput

    for url in ("http://localhost:3000/done", "http://127.0.0.1/done", "https://shop.example/done"):
        ConfirmPaymentIntentInput.model_validate({"paymentIntentId": "vypi_x", "returnUrl": url})


def test_our_own_and_a_stripe_method_together_are_refused(domain_db):
    with pytest.raises(OperationError) as refused:
        call(
            "confirm-payment-intent",
            {"paymentIntentId": "vypi_x", "paymentMethodId": "vypm_x", "stripePaymentMethodId": "pm_1abc"},
        )
    assert refused.value.code == "validation_error"
