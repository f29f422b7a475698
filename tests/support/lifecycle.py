"""A payment's whole life, written once and run through each door (tests/api and tests/kafka_relay).

Each scenario takes a door (tests/support/doors.py), the test's own Stripe client (it plays Stripe.js and the
Dashboard) and localstripe's base URL (to expire an authorisation as time would); its name says what it shows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
import stripe

from tests.conftest import make_card
from tests.support.doors import Answer

CARD = "4242424242424242"
DECLINED = "4000000000000341"
THREE_D_SECURE = "4000002500003155"


@contextmanager
def captures_fail_unacted(stripe_url: str, intent: dict[str, Any]) -> Iterator[None]:
    """While inside: localstripe answers every capture of `intent` with a 500 it did not act on."""
    fault = {
        "kind": "500_without_acting",
        "method": "POST",
        "path_prefix": f"/v1/payment_intents/{intent['stripePaymentIntentId']}/capture",
    }
    requests.post(f"{stripe_url}/_config/faults", json=fault, timeout=10).raise_for_status()
    try:
        yield
    finally:
        requests.delete(f"{stripe_url}/_config/faults", timeout=10)


def _customer() -> str:
    return f"life-{uuid.uuid4().hex[:12]}"


def _ok(answer: Answer) -> dict[str, Any]:
    assert answer.ok, (answer.status, answer.body)
    return answer.body


def _refused(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert (answer.ok, answer.status, answer.code) == (False, status, code), answer.body
    return answer.body


def _vault(door: Any, stripe_api: stripe.StripeClient, customer_id: str, number: str = CARD) -> dict[str, Any]:
    method = {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": True}
    return _ok(door.call("create-payment-method", method, key=f"pm-{uuid.uuid4()}"))


def _authorised(door: Any, stripe_api: stripe.StripeClient, amount: int = 1000, **extra: Any) -> dict[str, Any]:
    customer_id = _customer()
    _vault(door, stripe_api, customer_id)
    create = {"customerId": customer_id, "amount": amount, "currency": "usd", "captureMethod": "manual", **extra}
    intent = _ok(door.call("create-payment-intent", {**create, "confirm": True}, key=f"pi-{uuid.uuid4()}"))
    assert intent["status"] == "requires_capture" and intent["amountCapturable"] == amount
    return intent


def _causes(door: Any, intent_id: str) -> list[str]:
    return [
        h["cause"].split(":")[0] for h in _ok(door.call("get-ztracking-payment-intent", {"paymentIntentId": intent_id}))
    ]


def _sync_or_event(cause: str) -> bool:
    """A change Stripe reported: read by a sync, or told by Stripe's webhook (the test's localstripe sends them)."""
    return cause == "sync" or cause.startswith("evt_")


def a_manual_capture_in_full_captures_the_authorisation_and_answers_capture_before(door, stripe_api, stripe_url):
    intent = _authorised(door, stripe_api, 1000)
    deadline = dt.datetime.fromisoformat(intent["captureBefore"].replace("Z", "+00:00"))
    assert dt.timedelta(days=6) < deadline - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)
    assert [(a["operation"], a["status"]) for a in intent["attempts"]] == [("confirm", "succeeded")]
    captured = _ok(door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, key=f"cap-{uuid.uuid4()}"))
    assert (captured["status"], captured["amountReceived"], captured["amountCapturable"]) == ("succeeded", 1000, 0)
    assert captured["captureBefore"] == intent["captureBefore"]
    assert [(a["operation"], a["status"], a["amount"]) for a in captured["attempts"]][-1] == (
        "capture",
        "succeeded",
        1000,
    )
    again = door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, key=f"cap-{uuid.uuid4()}")
    assert "refund" in _refused(again, 409, "invalid_state")["message"]
    assert _causes(door, intent["id"]) == ["create-payment-intent", "capture-payment-intent"]


def a_partial_capture_releases_the_rest_and_refunds_at_most_what_was_captured(door, stripe_api, stripe_url):
    intent = _authorised(door, stripe_api, 1000)
    too_much = {"paymentIntentId": intent["id"], "amountToCapture": 1001}
    _refused(door.call("capture-payment-intent", too_much, key=f"cap-{uuid.uuid4()}"), 400, "validation_error")
    part = {"paymentIntentId": intent["id"], "amountToCapture": 600}
    captured = _ok(door.call("capture-payment-intent", part, key=f"cap-{uuid.uuid4()}"))
    assert (captured["status"], captured["amountReceived"], captured["amountCapturable"]) == ("succeeded", 600, 0)
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert at_stripe.amount_received == 600
    assert stripe_api.v1.refunds.list(params={"payment_intent": at_stripe.id}).data == []  # released, not refunded
    over = door.call("create-refund", {"paymentIntentId": intent["id"], "amount": 700}, key=f"re-{uuid.uuid4()}")
    assert _refused(over, 422, "refund_exceeds_amount")["details"]["refundable"] == 600
    refund = _ok(door.call("create-refund", {"paymentIntentId": intent["id"]}, key=f"re-{uuid.uuid4()}"))
    assert refund["amount"] == 600
    listed = _ok(door.call("list-refunds", {"paymentIntentId": intent["id"]}))
    assert [r["id"] for r in listed["data"]] == [refund["id"]] and listed["hasMore"] is False


def cancel_works_from_every_state_stripe_allows_and_a_captured_payment_is_told_to_refund(door, stripe_api, stripe_url):
    customer_id = _customer()
    method = _vault(door, stripe_api, customer_id)
    _vault(door, stripe_api, customer_id, THREE_D_SECURE)  # now the default: a confirm needs 3-D Secure
    base = {"customerId": customer_id, "amount": 1200, "currency": "usd"}
    states = {
        "requires_payment_method": base,
        "requires_confirmation": {**base, "paymentMethodId": method["id"]},
        "requires_action": {**base, "confirm": True},
        "requires_capture": {**base, "paymentMethodId": method["id"], "captureMethod": "manual", "confirm": True},
    }
    for status, create in states.items():
        intent = _ok(door.call("create-payment-intent", create, key=f"pi-{uuid.uuid4()}"))
        assert intent["status"] == status, (status, intent["status"])
        key = f"cancel-{uuid.uuid4()}"
        cancel = {"paymentIntentId": intent["id"], "cancellationReason": "abandoned"}
        canceled = _ok(door.call("cancel-payment-intent", cancel, key))
        assert (canceled["status"], canceled["cancellationReason"]) == ("canceled", "abandoned"), status
        assert _ok(door.call("cancel-payment-intent", cancel, key)) == canceled  # the same key replays
        again = _ok(door.call("cancel-payment-intent", {"paymentIntentId": intent["id"]}, f"cancel-{uuid.uuid4()}"))
        assert again["status"] == "canceled"
    paid = _ok(
        door.call("create-payment-intent", {**states["requires_confirmation"], "confirm": True}, f"pi-{uuid.uuid4()}")
    )
    refused = door.call("cancel-payment-intent", {"paymentIntentId": paid["id"]}, f"cancel-{uuid.uuid4()}")
    body = _refused(refused, 409, "invalid_state")
    assert "refund" in body["message"] and body["details"]["refundable"] == 1200
    wrong = door.call("cancel-payment-intent", {"paymentIntentId": paid["id"], "cancellationReason": "bored"})
    _refused(wrong, 400, "validation_error")


def a_confirm_after_a_confirm_answers_where_the_payment_stands(door, stripe_api, stripe_url):
    customer_id = _customer()
    method = _vault(door, stripe_api, customer_id)
    created = {"customerId": customer_id, "amount": 800, "currency": "usd", "paymentMethodId": method["id"]}
    intent = _ok(door.call("create-payment-intent", {**created, "captureMethod": "manual"}, f"pi-{uuid.uuid4()}"))
    assert intent["status"] == "requires_confirmation" and intent["attempts"] == []
    first = _ok(door.call("confirm-payment-intent", {"paymentIntentId": intent["id"]}, f"confirm-{uuid.uuid4()}"))
    assert first["status"] == "requires_capture" and len(first["attempts"]) == 1 and "clientSecret" not in first
    second = _ok(door.call("confirm-payment-intent", {"paymentIntentId": intent["id"]}, f"confirm-{uuid.uuid4()}"))
    assert second["status"] == "requires_capture" and len(second["attempts"]) == 1  # no second attempt
    captured = _ok(door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, f"cap-{uuid.uuid4()}"))
    third = _ok(door.call("confirm-payment-intent", {"paymentIntentId": intent["id"]}, f"confirm-{uuid.uuid4()}"))
    assert third["status"] == captured["status"] == "succeeded"


def three_d_secure_answers_next_action_and_the_client_secret_then_a_sync_sees_it_succeed(door, stripe_api, stripe_url):
    customer_id = _customer()
    _vault(door, stripe_api, customer_id, THREE_D_SECURE)
    intent = _ok(door.call("create-payment-intent", {"customerId": customer_id, "amount": 900, "currency": "usd"}))
    confirmed = _ok(door.call("confirm-payment-intent", {"paymentIntentId": intent["id"]}, f"confirm-{uuid.uuid4()}"))
    assert confirmed["status"] == "requires_action" and confirmed["nextAction"] == {"type": "use_stripe_sdk"}
    assert confirmed["clientSecret"].startswith(intent["stripePaymentIntentId"])
    assert confirmed["attempts"][-1]["status"] == "requires_action"
    # The browser finishes 3-D Secure with Stripe.js; the platform's gateway then asks for a sync.
    requests.post(
        f"{stripe_url}/v1/payment_intents/{intent['stripePaymentIntentId']}/_authenticate",
        data={"client_secret": confirmed["clientSecret"], "success": "true"},
        auth=("sk_test_browser", ""),
        timeout=10,
    ).raise_for_status()
    synced = _ok(door.call("payment-status-update", {"paymentIntentId": intent["id"], "status": "failed"}))
    assert synced == {"paymentIntentId": intent["id"], "status": "succeeded", "errorCode": None, "errorMessage": None}
    got = _ok(door.call("get-payment-intent", {"paymentIntentId": intent["id"]}))
    assert got["nextAction"] is None and got["attempts"][-1]["status"] == "succeeded"
    assert _sync_or_event(_causes(door, intent["id"])[-1])


def a_capture_after_the_authorisation_expired_is_refused_and_the_payment_shows_canceled(door, stripe_api, stripe_url):
    intent = _authorised(door, stripe_api, 1500)
    requests.post(f"{stripe_url}/_config/expire_authorization/{intent['stripePaymentIntentId']}", timeout=10)
    late = door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, f"cap-{uuid.uuid4()}")
    assert "expired" in _refused(late, 409, "invalid_state")["message"]
    got = _ok(door.call("get-payment-intent", {"paymentIntentId": intent["id"]}))
    assert (got["status"], got["cancellationReason"], got["amountReceived"]) == ("canceled", "automatic", 0)
    assert [(a["operation"], a["status"]) for a in got["attempts"]] == [("confirm", "succeeded"), ("capture", "failed")]


def the_list_pages_newest_first_both_ways_and_filters(door, stripe_api, stripe_url):
    customer_id = _customer()
    method = _vault(door, stripe_api, customer_id)
    made = []
    for i in range(5):
        create = {"customerId": customer_id, "amount": 500 + i, "currency": "usd", "orderId": f"order-{i % 2}"}
        if i == 4:
            create.update(paymentMethodId=method["id"], confirm=True, subscriptionId="sub-9")
        made.append(_ok(door.call("create-payment-intent", create, f"pi-{uuid.uuid4()}")))
    newest_first = [m["id"] for m in reversed(made)]

    def page(**query: Any) -> dict[str, Any]:
        return _ok(door.call("list-payment-intents", {"customerId": customer_id, **query}))

    first = page(limit=2)
    assert [p["id"] for p in first["data"]] == newest_first[:2] and first["hasMore"]
    assert first["nextCursor"] == newest_first[1]
    second = page(limit=2, startingAfter=first["nextCursor"])
    assert [p["id"] for p in second["data"]] == newest_first[2:4] and second["hasMore"]
    last = page(limit=2, startingAfter=second["nextCursor"])
    assert [p["id"] for p in last["data"]] == newest_first[4:] and not last["hasMore"]
    assert last["nextCursor"] is None
    back = page(limit=2, endingBefore=second["data"][0]["id"])
    assert [p["id"] for p in back["data"]] == newest_first[:2] and not back["hasMore"]
    assert back["nextCursor"] is None
    back_one = page(limit=1, endingBefore=last["data"][0]["id"])  # one step back, and more beyond
    assert [p["id"] for p in back_one["data"]] == [newest_first[3]] and back_one["nextCursor"] == newest_first[3]
    assert [p["id"] for p in page(status="succeeded")["data"]] == [made[4]["id"]]
    assert [p["id"] for p in page(orderId="order-1")["data"]] == [made[3]["id"], made[1]["id"]]
    assert page(orderId="order-1")["data"][0]["attempts"] == []
    paid = page(status="succeeded")["data"][0]
    assert (paid["orderId"], paid["subscriptionId"], len(paid["attempts"])) == ("order-0", "sub-9", 1)
    at_stripe = stripe_api.v1.payment_intents.retrieve(made[4]["stripePaymentIntentId"])
    assert (at_stripe.metadata["vy_order_id"], at_stripe.metadata["vy_subscription_id"]) == ("order-0", "sub-9")
    assert page(createdGte="2999-01-01T00:00:00Z")["data"] == []
    assert len(page(createdLt="2999-01-01T00:00:00Z", limit=100)["data"]) == 5
    both = door.call(
        "list-payment-intents",
        {"customerId": customer_id, "startingAfter": made[0]["id"], "endingBefore": made[1]["id"]},
    )
    _refused(both, 400, "validation_error")


def a_declined_attempt_is_retried_only_with_another_card_and_its_status_reaches_the_gateway(
    door, stripe_api, stripe_url
):
    customer_id = _customer()
    _vault(door, stripe_api, customer_id, DECLINED)
    create = {"customerId": customer_id, "amount": 700, "currency": "usd", "confirm": True}
    declined = _refused(door.call("create-payment-intent", create, f"pi-{uuid.uuid4()}"), 402, "card_declined")
    intent_id, attempt_id = declined["details"]["paymentIntentId"], declined["details"]["attemptId"]
    status = _ok(door.call("get-payment-intent-status", {"paymentIntentId": intent_id}))
    assert (status["status"], status["errorCode"]) == ("requires_payment_method", "card_declined")
    assert status["errorMessage"]
    same_card = door.call("retry-payment-attempt", {"attemptId": attempt_id}, f"retry-{uuid.uuid4()}")
    assert "declined" in _refused(same_card, 409, "invalid_state")["message"]
    good = _vault(door, stripe_api, customer_id)
    confirmed = _ok(
        door.call(
            "confirm-payment-intent", {"paymentIntentId": intent_id, "paymentMethodId": good["id"]}, f"c-{uuid.uuid4()}"
        )
    )
    assert confirmed["status"] == "succeeded"
    assert [(a["attemptNumber"], a["status"]) for a in confirmed["attempts"]] == [(1, "failed"), (2, "succeeded")]
    stale = door.call("retry-payment-attempt", {"attemptId": attempt_id}, f"retry-{uuid.uuid4()}")
    _refused(stale, 409, "invalid_state")
    _refused(
        door.call("retry-payment-attempt", {"attemptId": "vyat_missing"}, f"retry-{uuid.uuid4()}"), 404, "not_found"
    )


def a_failed_capture_is_retried_as_a_new_attempt(door, stripe_api, stripe_url):
    """A capture whose every try failed before Stripe acted ends failed once the janitor has looked (nothing
    happened); a retry of it captures."""
    import datetime as dt_

    from domain import janitor
    from models import unit_of_work

    intent = _authorised(door, stripe_api, 1100)
    with captures_fail_unacted(stripe_url, intent):
        failed = door.call("capture-payment-intent", {"paymentIntentId": intent["id"]}, f"cap-{uuid.uuid4()}")
    _refused(failed, 502, "stripe_error")  # Stripe said it did not act: nothing happened, and the caller knows
    with unit_of_work():
        janitor.run(grace=dt_.timedelta(0))
    attempts = _ok(door.call("get-payment-intent", {"paymentIntentId": intent["id"]}))["attempts"]
    assert attempts[-1]["status"] == "failed" and attempts[-1]["operation"] == "capture"
    retried = _ok(door.call("retry-payment-attempt", {"attemptId": attempts[-1]["attemptId"]}, f"retry-{uuid.uuid4()}"))
    assert (retried["status"], retried["operation"], retried["retryOf"]) == (
        "succeeded",
        "capture",
        attempts[-1]["attemptId"],
    )
    got = _ok(door.call("get-payment-intent", {"paymentIntentId": intent["id"]}))
    assert (got["status"], got["amountReceived"]) == ("succeeded", 1100)


def a_sync_reads_stripe_after_a_dashboard_change_and_never_trusts_the_message(door, stripe_api, stripe_url):
    intent = _authorised(door, stripe_api, 1300, orderId="order-dash")
    stripe_api.v1.payment_intents.capture(intent["stripePaymentIntentId"])  # someone captured in the Dashboard
    lie = {"paymentIntentId": intent["stripePaymentIntentId"], "status": "failed", "orderId": "x", "errorCode": "y"}
    synced = _ok(door.call("payment-status-update", lie))
    assert synced == {"paymentIntentId": intent["id"], "status": "succeeded", "errorCode": None, "errorMessage": None}
    got = _ok(door.call("get-payment-intent", {"paymentIntentId": intent["id"]}))
    assert (got["status"], got["amountReceived"], got["orderId"]) == ("succeeded", 1300, "order-dash")
    causes = _causes(door, intent["id"])
    # One snapshot of the capture: the sync's, or Stripe's own webhook if it got here first (then the sync had
    # nothing left to change). Never two.
    assert causes[0] == "create-payment-intent" and len(causes) == 2 and _sync_or_event(causes[1]), causes
    assert _ok(door.call("payment-status-update", {"paymentIntentId": intent["id"]})) == synced  # nothing new: no row
    assert _causes(door, intent["id"]) == causes


def an_id_that_cannot_be_ours_is_not_found_not_a_validation_error(door, stripe_api, stripe_url):
    platform_id = str(uuid.uuid4())  # the platform's old ids: UUIDs with hyphens
    for operation, payload in (
        ("get-payment-intent", {"paymentIntentId": platform_id}),
        ("get-payment-intent-status", {"paymentIntentId": platform_id}),
        ("get-refund", {"refundId": platform_id}),
        ("capture-payment-intent", {"paymentIntentId": platform_id}),
        ("payment-status-update", {"paymentIntentId": platform_id}),
    ):
        _refused(door.call(operation, payload, f"k-{uuid.uuid4()}"), 404, "not_found")


SCENARIOS: list[Callable[..., None]] = [
    a_manual_capture_in_full_captures_the_authorisation_and_answers_capture_before,
    a_partial_capture_releases_the_rest_and_refunds_at_most_what_was_captured,
    cancel_works_from_every_state_stripe_allows_and_a_captured_payment_is_told_to_refund,
    a_confirm_after_a_confirm_answers_where_the_payment_stands,
    three_d_secure_answers_next_action_and_the_client_secret_then_a_sync_sees_it_succeed,
    a_capture_after_the_authorisation_expired_is_refused_and_the_payment_shows_canceled,
    the_list_pages_newest_first_both_ways_and_filters,
    a_declined_attempt_is_retried_only_with_another_card_and_its_status_reaches_the_gateway,
    a_failed_capture_is_retried_as_a_new_attempt,
    a_sync_reads_stripe_after_a_dashboard_change_and_never_trusts_the_message,
    an_id_that_cannot_be_ours_is_not_found_not_a_validation_error,
]
