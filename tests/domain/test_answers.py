"""The platform's field names added beside ours (domain/answers.py): never replacing ours, right per status."""

from __future__ import annotations

import pytest

from domain.answers import CONFIRM_SUCCEEDED, amount_unit, widen
from domain.schemas import INTENT_STATUSES

INTENT = {
    "id": "vypi_1",
    "amount": 5000,
    "currency": "usd",
    "status": "requires_capture",
    "stripePaymentIntentId": "pi_1",
    "lastPaymentError": None,
    "attempts": [{"attemptId": "vypa_1"}, {"attemptId": "vypa_2"}],
}


def test_an_answer_keeps_every_field_of_ours_and_ours_win_a_shared_name():
    answer = {**INTENT, "amountCents": "ours"}
    widened = widen("get-payment-intent", answer)
    assert {k: widened[k] for k in answer} == answer
    assert widened["paymentIntentId"] == "vypi_1" and widened["externalId"] == "pi_1"


@pytest.mark.parametrize(("currency", "unit"), [("usd", "cents"), ("jpy", "minor_units"), ("kwd", "minor_units")])
def test_the_amount_unit_is_cents_only_where_the_minor_unit_is_a_hundredth(currency, unit):
    assert amount_unit(currency) == unit
    assert widen("create-payment-intent", {**INTENT, "currency": currency})["amountUnit"] == unit


def test_a_create_answers_the_platforms_created_dto_with_no_coupon():
    widened = widen("create-payment-intent", INTENT)
    assert widened["success"] is True and widened["appliedCoupons"] == []
    assert widened["totalAmount"] == widened["originalAmount"] == 5000


@pytest.mark.parametrize("status", INTENT_STATUSES)
def test_a_confirm_succeeds_only_when_paid_or_waiting_for_its_capture_or_the_browser(status):
    error = (
        {"code": "card_declined", "message": "Your card was declined."} if status == "requires_payment_method" else None
    )
    widened = widen("confirm-payment-intent", {**INTENT, "status": status, "lastPaymentError": error})
    assert widened["success"] is (status in CONFIRM_SUCCEEDED)
    assert widened["requiresAction"] is (status == "requires_action")
    assert widened["errorCode"] == (error or {}).get("code")


def test_a_capture_names_its_latest_attempt_and_no_planned_retry():
    widened = widen("capture-payment-intent", INTENT)
    assert widened["attemptId"] == "vypa_2" and widened["nextRetryAt"] is None


def test_each_record_of_a_page_is_widened_as_its_own_answer():
    page = {"data": [{"id": "vyre_1", "amount": 10, "stripeRefundId": "re_1"}], "hasMore": False, "nextCursor": None}
    widened = widen("list-refunds", page)
    assert widened["data"][0] == widen("get-refund", page["data"][0])
    assert widened["data"][0]["refundId"] == "vyre_1" and widened["hasMore"] is False


def test_other_answers_are_left_as_they_are():
    deleted = {"id": "vypm_1", "deleted": True}
    assert widen("delete-payment-method", deleted) is deleted
    assert widen("get-ztracking-payment-intent", []) == []
