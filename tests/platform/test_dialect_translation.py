"""How doors/platform.py reads the platform's confirm, capture, refund and payment-method requests into ours, and that
a request in our dialect keeps its idempotency fingerprint (a key claimed before these fields existed still matches)."""

from __future__ import annotations

import pytest

from domain import idempotency
from domain.schemas import (
    CapturePaymentIntentInput,
    ConfirmPaymentIntentInput,
    CreatePaymentMethodInput,
    CreateRefundInput,
    parse_input,
)
from doors.platform import translate
from errors import OperationError
from settings import get_settings

PLATFORM_KEY = "OrderService-1733457000000-0.90210387"


def read(operation: str, payload: dict, message_key: str | None = None) -> dict:
    return translate(operation, payload, get_settings(), message_key=message_key)


def test_a_stripe_pm_is_read_as_stripe_payment_method_id_and_ours_stays_ours():
    theirs = read("confirm-payment-intent", {"paymentIntentId": "vypi_1", "paymentMethodId": "pm_1Qabc"})
    assert theirs == {"paymentIntentId": "vypi_1", "stripePaymentMethodId": "pm_1Qabc"}
    ours = {"paymentIntentId": "vypi_1", "paymentMethodId": "vypm_1"}
    assert read("confirm-payment-intent", ours) == ours


def test_a_pm_given_in_both_fields_is_refused_never_one_picked():
    both = read(
        "confirm-payment-intent",
        {"paymentIntentId": "vypi_1", "paymentMethodId": "pm_1Qabc", "stripePaymentMethodId": "pm_2Qdef"},
    )
    with pytest.raises(OperationError) as refused:
        parse_input(ConfirmPaymentIntentInput, both)
    assert refused.value.code == "validation_error"


def test_only_the_platforms_own_capture_answers_a_captured_intent():
    capture = {"paymentIntentId": "vypi_1"}
    assert read("capture-payment-intent", capture, PLATFORM_KEY) == {**capture, "ifCaptured": "answer"}
    assert read("capture-payment-intent", capture, "PaymentsGateway-0f3a") == capture
    assert read("capture-payment-intent", capture) == capture  # REST, Socket.IO: no message key
    part = {"paymentIntentId": "vypi_1", "amountToCapture": 100}
    assert read("capture-payment-intent", part, PLATFORM_KEY) == part  # a partial capture is never a repeat


@pytest.mark.parametrize(
    ("reason", "ours"),
    [
        ("REQUESTED_BY_CUSTOMER", "requested_by_customer"),
        ("FRAUD", "fraudulent"),
        ("OTHER", None),
        ("duplicate", "duplicate"),
    ],
)
def test_refund_reasons_are_stripes_and_amount_cents_is_the_amount(reason, ours):
    refund = read("create-refund", {"paymentIntentId": "vypi_1", "amountCents": 500, "reason": reason})
    parsed = parse_input(CreateRefundInput, refund)
    assert (parsed.amount, parsed.reason) == (500, ours)


def test_the_gateways_payment_method_is_ours_with_its_type_lower_cased_and_details_ignored():
    method = read(
        "create-payment-method",
        {"personId": "p-1", "externalId": "pm_1Qabc", "type": "APPLE_PAY", "isDefault": True, "details": {"a": 1}},
    )
    parsed = parse_input(CreatePaymentMethodInput, method)
    assert (parsed.customer_id, parsed.stripe_payment_method_id, parsed.set_as_default, parsed.type) == (
        "p-1",
        "pm_1Qabc",
        True,
        "apple_pay",
    )
    assert read("list-payment-methods", {"personId": "p-1"}) == {"customerId": "p-1"}


@pytest.mark.parametrize(
    ("schema", "payload", "before"),
    [
        (
            ConfirmPaymentIntentInput,
            {"paymentIntentId": "vypi_1"},
            {"paymentIntentId": "vypi_1", "paymentMethodId": None},
        ),
        (
            CapturePaymentIntentInput,
            {"paymentIntentId": "vypi_1"},
            {"paymentIntentId": "vypi_1", "amountToCapture": None},
        ),
        (
            CreatePaymentMethodInput,
            {"customerId": "c", "stripePaymentMethodId": "pm_1"},
            {"customerId": "c", "stripePaymentMethodId": "pm_1", "setAsDefault": False},
        ),
    ],
    ids=["confirm", "capture", "create-payment-method"],
)
def test_a_request_in_our_dialect_keeps_its_fingerprint(schema, payload, before):
    canonical = parse_input(schema, payload).canonical()
    assert idempotency.fingerprint("op", canonical) == idempotency.fingerprint("op", before)
