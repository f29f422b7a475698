"""The gateway's create-refund (amountCents, the platform's upper-case reasons) and its payment-method requests
(personId, externalId, type, isDefault) on REST and Kafka, beside our own dialect, which keeps working."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_card
from tests.platform.dialect import KafkaDoor, RestDoor, ok, refused, value

pytestmark = pytest.mark.integration


def paid(door, stripe_api, amount: int = 2000) -> dict:
    customer_id = f"refund-{uuid.uuid4().hex[:8]}"
    method = {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True}
    ok(door.call("create-payment-method", method))
    create = {"customerId": customer_id, "amount": amount, "currency": "usd", "confirm": True}
    intent = ok(door.call("create-payment-intent", create))
    assert intent["status"] == "succeeded"
    return intent


@pytest.mark.parametrize(
    ("theirs", "stripes"),
    [("REQUESTED_BY_CUSTOMER", "requested_by_customer"), ("FRAUD", "fraudulent"), ("OTHER", None)],
)
def test_the_gateways_refund_reasons_are_stripes_and_amount_cents_is_the_amount(client, stripe_api, theirs, stripes):
    door = RestDoor(client)
    intent = paid(door, stripe_api)
    refund = ok(door.call("create-refund", value("create-refund.dto", paymentIntentId=intent["id"], reason=theirs)))
    assert (refund["amount"], refund["amountCents"], refund["reason"]) == (500, 500, stripes)
    assert refund["refundId"] == refund["id"] and refund["externalId"] == refund["stripeRefundId"]
    assert stripe_api.v1.refunds.retrieve(refund["stripeRefundId"]).reason == stripes


def test_the_gateways_refund_over_kafka_and_our_own_lower_case_reasons(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    intent = paid(door, stripe_api)
    theirs = ok(door.call("create-refund", value("create-refund.dto", paymentIntentId=intent["id"])))
    assert theirs["amountCents"] == 500 and theirs["reason"] == "requested_by_customer"
    ours = ok(door.call("create-refund", {"paymentIntentId": intent["id"], "amount": 300, "reason": "duplicate"}))
    assert (ours["amount"], ours["reason"]) == (300, "duplicate")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"reason": "BORED"}, "reason"),
        ({"amountCents": "500"}, "amount"),
        ({"amountCents": 0}, "amount"),
        ({"amount": 500}, "amount"),  # both dialects' amounts: refused, never one of them picked
        ({"metadata": {"orderId": 7}}, "metadata"),  # Stripe's metadata values are strings
    ],
    ids=["unknown-reason", "string-amount", "zero-amount", "both-amounts", "non-string-metadata"],
)
def test_bad_gateway_refunds_are_a_validation_error_naming_the_field(client, gateway, relay, fields, named):
    for door in (RestDoor(client), KafkaDoor(gateway)):
        body = value("create-refund.dto", paymentIntentId="vypi_unknown", **fields)
        error = refused(door.call("create-refund", body), "validation_error")
        assert named in str(error["details"]), (door.name, error)


def test_the_gateways_payment_method_is_vaulted_listed_and_deleted_by_person(client, stripe_api):
    door = RestDoor(client)
    person = str(uuid.uuid4())
    pm = make_card(stripe_api)
    create = value("create-payment-method.dto", personId=person, externalId=pm, details={"nickname": "work card"})
    method = ok(door.call("create-payment-method", create))
    assert (method["personId"], method["externalId"], method["isDefault"]) == (person, pm, True)
    assert method["paymentMethodId"] == method["id"] and method["card"]["last4"] == "4242"
    listed = ok(door.call("list-payment-methods", value("get-payment-methods.dto", personId=person)))
    assert [m["paymentMethodId"] for m in listed["data"]] == [method["id"]]
    deleted = ok(door.call("delete-payment-method", value("delete-payment-method.dto", paymentMethodId=method["id"])))
    assert deleted == {"id": method["id"], "deleted": True}
    assert stripe_api.v1.payment_methods.retrieve(pm).customer is None


def test_the_gateways_payment_method_over_kafka_with_type_other_and_not_default(gateway, relay, stripe_api):
    door = KafkaDoor(gateway)
    person = str(uuid.uuid4())
    create = value(
        "create-payment-method.dto", personId=person, externalId=make_card(stripe_api), type="OTHER", isDefault=False
    )
    method = ok(door.call("create-payment-method", create))
    assert method["personId"] == person and method["isDefault"] is False
    listed = ok(door.call("list-payment-methods", {"personId": person}))
    assert [m["id"] for m in listed["data"]] == [method["id"]]


@pytest.mark.parametrize(
    ("kind", "why"),
    [("APPLE_PAY", "apple_pay"), ("GOOGLE_PAY", "google_pay"), ("ACH", "cards only"), ("WIRE", "type")],
)
def test_a_type_stripe_contradicts_or_we_cannot_charge_is_a_validation_error_and_nothing_is_attached(
    client, stripe_api, kind, why
):
    door = RestDoor(client)
    pm = make_card(stripe_api)  # a plain card: no wallet
    create = value("create-payment-method.dto", personId=str(uuid.uuid4()), externalId=pm, type=kind)
    error = refused(door.call("create-payment-method", create), "validation_error")
    assert why in str(error["details"]) and "type" in str(error["details"])
    assert stripe_api.v1.payment_methods.retrieve(pm).customer is None  # refused before anything was written


def test_a_gateway_payment_method_without_a_person_is_a_validation_error(client, gateway, relay, stripe_api):
    for door in (RestDoor(client), KafkaDoor(gateway)):
        create = value("create-payment-method.dto", externalId=make_card(stripe_api))
        del create["personId"]
        error = refused(door.call("create-payment-method", create), "validation_error")
        assert "customerId" in str(error["details"]), (door.name, error)
