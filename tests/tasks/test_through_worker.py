"""Every operation dispatched through RabbitMQ to a real Celery worker, results over Redis."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import WEBHOOK_SECRET, make_card
from tests.support.stripe_objects import refunds_of
from tests.support.webhooks import intent_event, sign

pytestmark = pytest.mark.integration


def customer() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


def vault(dispatch, stripe_api, customer_id: str, number: str = "4242424242424242", default: bool = True) -> dict:
    envelope = dispatch(
        "create-payment-method",
        {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": default},
        key=f"pm-{uuid.uuid4()}",
    )
    return envelope["response"]


def paid_intent(dispatch, stripe_api, amount: int = 10_000) -> dict:
    customer_id = customer()
    vault(dispatch, stripe_api, customer_id)
    envelope = dispatch(
        "create-payment-intent",
        {"customerId": customer_id, "amount": amount, "currency": "usd", "confirm": True},
        key=f"pi-{uuid.uuid4()}",
    )
    return envelope["response"]


def count_stripe_intents(stripe_api) -> int:
    """Every PaymentIntent localstripe holds, all pages."""
    return sum(1 for _ in stripe_api.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter())


def test_create_payment_intent_confirms_with_the_default_card_and_answers_a_client_secret(dispatch, stripe_api):
    intent = paid_intent(dispatch, stripe_api, amount=2500)
    assert intent["status"] == "succeeded"
    assert intent["amountReceived"] == 2500
    assert intent["clientSecret"].startswith(intent["stripePaymentIntentId"] + "_secret_")
    assert intent["id"].startswith("vypi_")


def test_create_payment_intent_without_confirm_waits_for_confirmation(dispatch):
    envelope = dispatch(
        "create-payment-intent",
        {
            "customerId": customer(),
            "amount": 990,
            "currency": "EUR",
            "description": "order 42",
            "metadata": {"o": "42"},
        },
        key=str(uuid.uuid4()),
    )
    intent = envelope["response"]
    assert intent["status"] == "requires_payment_method"
    assert (intent["currency"], intent["description"], intent["metadata"]) == ("eur", "order 42", {"o": "42"})


def test_a_declined_card_answers_card_declined_and_stores_the_failed_intent(dispatch, stripe_api):
    customer_id = customer()
    method = vault(dispatch, stripe_api, customer_id, number="4000000000000341")
    envelope = dispatch(
        "create-payment-intent",
        {
            "customerId": customer_id,
            "amount": 1000,
            "currency": "usd",
            "confirm": True,
            "paymentMethodId": method["id"],
        },
        key=str(uuid.uuid4()),
    )
    assert envelope["error"]["code"] == "card_declined"
    assert envelope["error"]["status"] == 402
    stored = dispatch("get-payment-intent", {"paymentIntentId": envelope["error"]["details"]["paymentIntentId"]})
    assert stored["response"]["status"] == "requires_payment_method"
    assert stored["response"]["lastPaymentError"]["code"] == "card_declined"


@pytest.mark.parametrize(
    "payload",
    [
        {"customerId": "c", "amount": "100", "currency": "usd"},
        {"customerId": "c", "amount": 0, "currency": "usd"},
        {"customerId": "c", "amount": 100, "currency": "usd", "unknown": 1},
        {"customerId": "c", "amount": 100, "currency": "xx1"},
        ["not", "an", "object"],
    ],
)
def test_bad_input_answers_validation_error_and_creates_nothing(dispatch, stripe_api, payload):
    before = count_stripe_intents(stripe_api)
    envelope = dispatch("create-payment-intent", payload, key=str(uuid.uuid4()))
    assert envelope["error"]["code"] == "validation_error"
    assert envelope["error"]["status"] == 400
    assert count_stripe_intents(stripe_api) == before


def test_confirm_without_any_vaulted_method_is_a_validation_error(dispatch):
    envelope = dispatch(
        "create-payment-intent", {"customerId": customer(), "amount": 100, "currency": "usd", "confirm": True}
    )
    assert envelope["error"]["code"] == "validation_error"


def test_unknown_payment_method_is_not_found(dispatch):
    envelope = dispatch(
        "create-payment-intent",
        {"customerId": customer(), "amount": 100, "currency": "usd", "paymentMethodId": "vypm_nope"},
    )
    assert envelope["error"]["code"] == "not_found"


def keyed_create(dispatch, stripe_api, amount: int) -> tuple[str, Callable[[], dict]]:
    """A new customer with a default card, and `send()`: its confirmed create of `amount` USD, under one key."""
    customer_id = customer()
    vault(dispatch, stripe_api, customer_id)
    payload = {"customerId": customer_id, "amount": amount, "currency": "usd", "confirm": True}
    key = f"once-{uuid.uuid4()}"
    return customer_id, lambda: dispatch("create-payment-intent", payload, key=key)


def test_one_key_sent_three_times_makes_one_intent_and_the_same_answer(dispatch, stripe_api, mariadb):
    from models import PaymentIntent

    customer_id, send = keyed_create(dispatch, stripe_api, 4200)
    before = count_stripe_intents(stripe_api)
    answers = [send() for _ in range(3)]
    assert answers[0]["response"] == answers[1]["response"] == answers[2]["response"]
    assert [a.get("replayed") for a in answers] == [None, True, True]  # the retries say they are replays
    assert count_stripe_intents(stripe_api) == before + 1
    assert PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count() == 1


def test_one_key_sent_concurrently_makes_one_intent_and_retries_get_the_same_answer(dispatch, stripe_api, mariadb):
    from models import PaymentIntent

    customer_id, send = keyed_create(dispatch, stripe_api, 4300)
    before = count_stripe_intents(stripe_api)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: send(), range(3)))
    successes = [a["response"] for a in answers if "response" in a]
    in_use = [a for a in answers if a.get("error", {}).get("code") == "idempotency_key_in_use"]
    assert len(successes) + len(in_use) == 3 and successes
    assert all(s == successes[0] for s in successes)
    # The caller retries its 409s with the same key and gets the first result.
    assert send()["response"] == successes[0]
    assert count_stripe_intents(stripe_api) == before + 1
    assert PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count() == 1


def test_one_key_with_another_request_is_refused_as_reused(dispatch):
    key = f"reuse-{uuid.uuid4()}"
    first = dispatch("create-payment-intent", {"customerId": customer(), "amount": 100, "currency": "usd"}, key=key)
    assert "response" in first
    second = dispatch("create-payment-intent", {"customerId": customer(), "amount": 200, "currency": "usd"}, key=key)
    assert second["error"]["code"] == "idempotency_key_reused"
    assert second["error"]["status"] == 422


def test_get_payment_intent_and_history_from_the_database(dispatch, stripe_api):
    intent = paid_intent(dispatch, stripe_api)
    got = dispatch("get-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert got == {k: v for k, v in intent.items() if k != "clientSecret"}
    history = dispatch("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert [h["ztrackingVersion"] for h in history] == [1]
    assert history[0]["cause"] == "create-payment-intent"


def test_unknown_intent_is_not_found_for_get_and_history(dispatch):
    for operation in ("get-payment-intent", "get-ztracking-payment-intent"):
        envelope = dispatch(operation, {"paymentIntentId": "vypi_missing"})
        assert envelope["error"]["code"] == "not_found", operation


def test_refund_part_then_the_rest_then_nothing_is_left(dispatch, stripe_api):
    intent = paid_intent(dispatch, stripe_api, amount=5000)
    part = dispatch("create-refund", {"paymentIntentId": intent["id"], "amount": 1200, "reason": "duplicate"})
    assert part["response"]["status"] == "succeeded" and part["response"]["reason"] == "duplicate"
    rest = dispatch("create-refund", {"paymentIntentId": intent["id"]})
    assert rest["response"]["amount"] == 3800
    more = dispatch("create-refund", {"paymentIntentId": intent["id"], "amount": 1})
    assert more["error"]["code"] == "refund_exceeds_amount"
    got = dispatch("get-refund", {"refundId": part["response"]["id"]})
    assert got["response"] == part["response"]
    assert dispatch("get-payment-intent", {"paymentIntentId": intent["id"]})["response"]["amountRefunded"] == 5000


def test_refund_errors_not_found_and_invalid_state(dispatch):
    assert dispatch("create-refund", {"paymentIntentId": "vypi_missing"})["error"]["code"] == "not_found"
    assert dispatch("get-refund", {"refundId": "vyre_missing"})["error"]["code"] == "not_found"
    unpaid = dispatch("create-payment-intent", {"customerId": customer(), "amount": 100, "currency": "usd"})
    envelope = dispatch("create-refund", {"paymentIntentId": unpaid["response"]["id"]})
    assert envelope["error"]["code"] == "invalid_state"


def test_twenty_concurrent_ten_percent_refunds_exactly_ten_succeed(dispatch, stripe_api):
    intent = paid_intent(dispatch, stripe_api, amount=10_000)
    with ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(
                lambda i: dispatch("create-refund", {"paymentIntentId": intent["id"], "amount": 1000}, key=f"r{i}"),
                range(20),
            )
        )
    succeeded = [a for a in answers if "response" in a]
    refused = [a for a in answers if a.get("error", {}).get("code") == "refund_exceeds_amount"]
    assert (len(succeeded), len(refused)) == (10, 10)
    # Every page: an 11th refund at Stripe must be seen (pages of 4 make the paging itself run).
    stripe_refunds = refunds_of(stripe_api, intent["stripePaymentIntentId"], page_size=4)
    assert len({r["id"] for r in stripe_refunds}) == len(stripe_refunds) == 10
    assert sum(r["amount"] for r in stripe_refunds) == 10_000
    final = dispatch("get-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert final["amountRefunded"] == 10_000


def test_payment_methods_vault_dedupe_list_and_delete(dispatch, stripe_api):
    customer_id = customer()
    first = vault(dispatch, stripe_api, customer_id, default=True)
    assert first["card"]["last4"] == "4242" and first["isDefault"]
    # The same card again (another pm_ from Stripe.js, same fingerprint) returns the vaulted one.
    again = vault(dispatch, stripe_api, customer_id, default=False)
    assert again["id"] == first["id"]
    other = vault(dispatch, stripe_api, customer_id, number="5555555555554444", default=False)
    page = dispatch("list-payment-methods", {"customerId": customer_id, "limit": 1})["response"]
    assert [m["id"] for m in page["data"]] == [other["id"]] and page["hasMore"]
    page2 = dispatch("list-payment-methods", {"customerId": customer_id, "limit": 1, "startingAfter": other["id"]})
    assert [m["id"] for m in page2["response"]["data"]] == [first["id"]] and not page2["response"]["hasMore"]
    deleted = dispatch("delete-payment-method", {"paymentMethodId": other["id"]})
    assert deleted["response"] == {"id": other["id"], "deleted": True}
    assert dispatch("delete-payment-method", {"paymentMethodId": other["id"]})["error"]["code"] == "not_found"
    remaining = dispatch("list-payment-methods", {"customerId": customer_id})["response"]["data"]
    assert [m["id"] for m in remaining] == [first["id"]]
    detached = stripe_api.v1.payment_methods.retrieve(other["stripePaymentMethodId"])
    assert detached.customer is None


def test_payment_method_errors(dispatch, stripe_api):
    missing = dispatch("create-payment-method", {"customerId": customer(), "stripePaymentMethodId": "pm_doesnotexist"})
    assert missing["error"]["code"] == "not_found"
    declined = dispatch(
        "create-payment-method",
        {"customerId": customer(), "stripePaymentMethodId": make_card(stripe_api, "4000000000000002")},
    )
    assert declined["error"]["code"] == "card_declined"
    cursor = dispatch("list-payment-methods", {"customerId": customer(), "startingAfter": "vypm_x"})
    assert cursor["error"]["code"] == "validation_error"
    assert dispatch("list-payment-methods", {"customerId": "c", "limit": 101})["error"]["code"] == "validation_error"


def test_a_webhook_delivered_five_times_concurrently_is_applied_once(dispatch):
    created = dispatch("create-payment-intent", {"customerId": customer(), "amount": 700, "currency": "usd"})
    intent = created["response"]
    payload = intent_event(intent["stripePaymentIntentId"], "processing", int(time.time()))
    header = sign(payload, WEBHOOK_SECRET)
    with ThreadPoolExecutor(5) as pool:
        answers = list(
            pool.map(lambda _: dispatch("process-stripe-webhook", {"payload": payload, "signature": header}), range(5))
        )
    assert sorted(a["response"]["duplicate"] for a in answers) == [False, True, True, True, True]
    history = dispatch("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert [h["status"] for h in history] == ["requires_payment_method", "processing"]
    assert history[-1]["cause"] == json.loads(payload)["id"]


def test_bad_or_stale_signatures_are_refused_and_store_nothing(dispatch, mariadb):
    from models import WebhookEvent

    payload = intent_event("pi_x", "succeeded", int(time.time()))
    tampered = payload.replace('"amount": 10000', '"amount": 1')
    stale = sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    for body, header in (
        (tampered, sign(payload, WEBHOOK_SECRET)),
        (payload, stale),
        (payload, sign(payload, "whsec_wrong")),
        (payload, "garbage"),
    ):
        envelope = dispatch("process-stripe-webhook", {"payload": body, "signature": header})
        assert envelope["error"]["code"] == "invalid_signature"
    assert WebhookEvent.get_or_none(WebhookEvent.id == json.loads(payload)["id"]) is None


def test_an_older_event_after_a_newer_one_does_not_move_the_status_back(dispatch, stripe_api):
    intent = paid_intent(dispatch, stripe_api)
    now = int(time.time())
    newer = intent_event(intent["stripePaymentIntentId"], "succeeded", now)
    older = intent_event(intent["stripePaymentIntentId"], "processing", now - 30)
    for payload in (newer, older):
        assert "response" in dispatch(
            "process-stripe-webhook", {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)}
        )
    got = dispatch("get-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert got["status"] == "succeeded"
    history = dispatch("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert len(history) == 1  # neither event changed anything the caller can see


def test_ztracking_counts_every_change_with_its_cause(dispatch, stripe_api):
    intent = paid_intent(dispatch, stripe_api, amount=3000)
    first = dispatch("create-refund", {"paymentIntentId": intent["id"], "amount": 1000})["response"]
    second = dispatch("create-refund", {"paymentIntentId": intent["id"], "amount": 500})["response"]
    history = dispatch("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})["response"]
    assert [h["cause"] for h in history] == [
        "create-payment-intent",
        f"create-refund:{first['id']}",
        f"create-refund:{second['id']}",
    ]
    assert [h["amountRefunded"] for h in history] == [0, 1000, 1500]
    assert [h["ztrackingVersion"] for h in history] == [1, 2, 3]
