"""The gateway's `payment-status-update-result` body, from a push: which changes it reports, and how."""

from __future__ import annotations

import pytest

from socket_door.pushes import status_push, status_result
from socket_door.server import handshake_user


def change(status: str, error_code: str | None = None, message: str | None = None) -> dict:
    return {
        "customerId": "c-1",
        "paymentIntentId": "vypi_01jf0000000000000000000000",
        "orderId": "o-1",
        "subscriptionId": None,
        "status": status,
        "previousStatus": "requires_confirmation",
        "errorCode": error_code,
        "errorMessage": message,
        "version": 3,
        "occurredAt": "2026-12-06T07:00:00Z",
    }


@pytest.mark.parametrize("status", ["processing", "succeeded"])
def test_the_statuses_the_gateways_webhook_handler_reports_are_results_without_an_error(status):
    push = status_push(change(status))
    assert status_result(push) == {**push, "error": None}


def test_a_failed_attempt_is_a_failed_result_carrying_stripes_message_as_error():
    push = status_push(change("requires_payment_method", "card_declined", "Your card was declined."))
    result = status_result(push)
    assert result is not None
    assert (result["status"], result["error"], result["errorCode"]) == (
        "failed",
        "Your card was declined.",
        "card_declined",
    )


@pytest.mark.parametrize(
    "status", ["requires_payment_method", "requires_confirmation", "requires_action", "requires_capture", "canceled"]
)
def test_changes_the_gateways_webhook_handler_does_not_report_are_no_result(status):
    assert status_result(status_push(change(status))) is None


@pytest.mark.parametrize(
    ("query", "user"),
    [
        ("EIO=4&transport=websocket&userId=customer-42", "customer-42"),
        ("userId=a%20b", "a b"),
        ("EIO=4&transport=websocket", None),
        ("userId=", None),  # empty: ignored, as the gateway does
        ("userId=a&userId=b", None),  # repeated: an array to the gateway, which ignores it
    ],
)
def test_the_handshake_user_id_is_the_query_s_one_non_empty_userId(query, user):
    assert handshake_user({"QUERY_STRING": query}) == user
