"""Payment events are written with the change they tell of, once per fact, on both databases."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest

from domain import payment_events
from errors import OperationError
from models import PaymentEvent, PaymentIntent, utcnow, write_transaction
from settings import get_settings
from tests.conftest import WEBHOOK_SECRET, make_card
from tests.domain.helpers import call, customer_with_card
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def vaulted(stripe_api, number: str = "4242424242424242") -> str:
    return customer_with_card(stripe_api, "dom-ev", number)


def events_of(intent_id: str, *, status_changes: bool = False) -> list[PaymentEvent]:
    """An intent's events in the order written; the status-change events only when asked for."""
    query = PaymentEvent.select().where(PaymentEvent.payment_intent_id == intent_id)
    if not status_changes:
        query = query.where(PaymentEvent.type != payment_events.PAYMENT_STATUS_CHANGED)
    return list(query.order_by(PaymentEvent.id))


def test_a_paid_create_writes_created_then_succeeded_with_its_order_and_versions(domain_db, stripe_api):
    create = {"customerId": vaulted(stripe_api), "amount": 2500, "currency": "usd", "confirm": True}
    intent = call("create-payment-intent", {**create, "orderId": "order-1", "subscriptionId": "sub-1"})
    written = events_of(intent["id"])
    assert [e.type for e in written] == ["created-payment-intent", "succeeded-payment"]
    created, succeeded = (e.payload for e in written)
    assert (created["orderId"], created["subscriptionId"], created["amount"], created["currency"]) == (
        "order-1",
        "sub-1",
        2500,
        "usd",
    )
    assert (succeeded["amountReceived"], succeeded["version"], succeeded["paymentIntentId"]) == (2500, 1, intent["id"])
    assert {"eventId", "type", "occurredAt", "traceId", "version"} <= set(succeeded)
    assert len({e.event_id for e in written}) == 2 and all(e.published_at is None for e in written)


def test_every_status_change_is_one_status_event_naming_the_customer_and_the_status_before(domain_db, stripe_api):
    customer = vaulted(stripe_api)
    intent = call("create-payment-intent", {"customerId": customer, "amount": 1100, "currency": "usd"})
    call("confirm-payment-intent", {"paymentIntentId": intent["id"]})
    call("confirm-payment-intent", {"paymentIntentId": intent["id"]})  # no change: no event
    changes = [e.payload for e in events_of(intent["id"], status_changes=True) if e.type == "payment-status-changed"]
    assert [(c["previousStatus"], c["status"]) for c in changes] == [
        (None, "requires_payment_method"),
        ("requires_payment_method", "succeeded"),
    ]
    assert all(c["customerId"] == customer and c["errorCode"] is None for c in changes)
    assert [c["version"] for c in changes] == sorted({c["version"] for c in changes})

    with pytest.raises(OperationError) as declined:
        call(
            "create-payment-intent",
            {"customerId": vaulted(stripe_api, "4000000000000341"), "amount": 800, "currency": "usd", "confirm": True},
        )
    written = events_of(declined.value.details["paymentIntentId"], status_changes=True)
    failed = [e.payload for e in written if e.type == "payment-status-changed"][-1]
    assert (failed["type"], failed["status"], failed["errorCode"]) == (
        "payment-status-changed",
        "requires_payment_method",
        "card_declined",
    )


def test_the_same_success_told_by_a_webhook_after_the_answer_is_one_event(domain_db, stripe_api):
    intent = call(
        "create-payment-intent", {"customerId": vaulted(stripe_api), "amount": 900, "currency": "usd", "confirm": True}
    )
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).to_dict()
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "payment_intent.succeeded",
            "created": int(time.time()) + 5,
            "data": {"object": at_stripe},
        }
    )
    call("process-stripe-webhook", {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)})
    assert [e.type for e in events_of(intent["id"])].count("succeeded-payment") == 1


def test_a_change_that_rolls_back_announces_nothing(domain_db, stripe_api):
    intent = call("create-payment-intent", {"customerId": vaulted(stripe_api), "amount": 700, "currency": "usd"})
    before = len(events_of(intent["id"]))
    with pytest.raises(RuntimeError), write_transaction():
        row = PaymentIntent.get_by_id(intent["id"])
        previous, row.status = row.status, "canceled"
        payment_events.save_intent_change(row, "test", before=previous)
        assert len(events_of(intent["id"])) == before + 1  # written, inside the transaction
        raise RuntimeError("the change fails after its event was written")
    assert len(events_of(intent["id"])) == before
    assert PaymentIntent.get_by_id(intent["id"]).status != "canceled"


def test_a_decline_is_failed_payment_and_refunds_announce_created_then_succeeded(domain_db, stripe_api):
    with pytest.raises(OperationError) as declined:
        call(
            "create-payment-intent",
            {"customerId": vaulted(stripe_api, "4000000000000341"), "amount": 800, "currency": "usd", "confirm": True},
        )
    failed = events_of(declined.value.details["paymentIntentId"])
    assert [e.type for e in failed] == ["created-payment-intent", "failed-payment"]
    assert failed[1].payload["errorCode"] == "card_declined" and failed[1].payload["errorMessage"]

    paid = call(
        "create-payment-intent", {"customerId": vaulted(stripe_api), "amount": 3000, "currency": "usd", "confirm": True}
    )
    refund = call("create-refund", {"paymentIntentId": paid["id"], "amount": 1000})
    refund_events = [e for e in events_of(paid["id"]) if "refund" in e.type]
    assert [(e.type, e.payload["refundId"], e.payload["amount"]) for e in refund_events] == [
        ("created-refund", refund["id"], 1000),
        ("refund-succeeded-payment", refund["id"], 1000),
    ]


def test_every_failed_attempt_is_announced_once_with_a_push_a_second_decline_too(domain_db, stripe_api):
    """Two declines of one intent (another card the second time) leave its status where it was: each is still a
    failed-payment of its own (its id from the attempt) and a status event of a new version (the Socket.IO push);
    Stripe's webhook telling the same failure adds nothing."""
    from socket_door.pushes import status_push
    from tests.support.webhooks import signed_event

    customer = vaulted(stripe_api, "4000000000000341")
    intent = call(
        "create-payment-intent", {"customerId": customer, "amount": 1300, "currency": "usd", "orderId": "o-4"}
    )
    with pytest.raises(OperationError) as first:
        call("confirm-payment-intent", {"paymentIntentId": intent["id"]})
    other = {"customerId": customer, "stripePaymentMethodId": make_card(stripe_api, "4000000000000341")}
    other_card = call("create-payment-method", other)
    with pytest.raises(OperationError) as second:
        call("confirm-payment-intent", {"paymentIntentId": intent["id"], "paymentMethodId": other_card["id"]})
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).to_dict()
    late = signed_event("payment_intent.payment_failed", at_stripe, WEBHOOK_SECRET, int(time.time()) + 5)
    call("process-stripe-webhook", late)

    assert (first.value.code, second.value.code) == ("card_declined", "card_declined")
    assert first.value.details["attemptId"] != second.value.details["attemptId"]
    failed = [e for e in events_of(intent["id"]) if e.type == "failed-payment"]
    assert len(failed) == 2 and len({e.event_id for e in failed}) == 2
    assert all((e.payload["errorCode"], e.payload["orderId"]) == ("card_declined", "o-4") for e in failed)
    changes = [e.payload for e in events_of(intent["id"], status_changes=True) if e.type == "payment-status-changed"]
    pushes = [status_push(c) for c in changes if c["errorCode"]]
    assert [p["status"] for p in pushes] == ["failed", "failed"]
    assert pushes[0]["version"] < pushes[1]["version"] == failed[1].payload["version"]


def test_an_expired_authorisation_is_canceled_and_failed(domain_db, stripe_api, localstripe_url):
    import requests

    create = {"customerId": vaulted(stripe_api), "amount": 1200, "currency": "usd", "captureMethod": "manual"}
    intent = call("create-payment-intent", {**create, "confirm": True})
    requests.post(f"{localstripe_url}/_config/expire_authorization/{intent['stripePaymentIntentId']}", timeout=10)
    call("payment-status-update", {"paymentIntentId": intent["id"]})
    tail = [
        (e.type, e.payload.get("cancellationReason") or e.payload.get("errorCode")) for e in events_of(intent["id"])
    ]
    assert tail[-2:] == [("canceled-payment", "automatic"), ("failed-payment", "authorization_expired")]


def test_prune_deletes_only_old_published_events_and_replay_queues_a_window_again(domain_db, stripe_api):
    intent = call("create-payment-intent", {"customerId": vaulted(stripe_api), "amount": 600, "currency": "usd"})
    (event,) = events_of(intent["id"])
    other = call("create-payment-intent", {"customerId": vaulted(stripe_api), "amount": 700, "currency": "usd"})
    (published,) = events_of(other["id"])
    # Beside the event never published, one published long ago: the same prune must delete it.
    PaymentEvent.update(published_at=utcnow() - dt.timedelta(days=60)).where(PaymentEvent.id == published.id).execute()

    def due(now: dt.datetime) -> int:
        cutoff = now - dt.timedelta(days=get_settings().outbox_retention_days)
        return PaymentEvent.select().where(PaymentEvent.published_at < cutoff).count()

    later = utcnow() + dt.timedelta(days=30)
    expected = due(later)
    assert expected >= 1
    assert payment_events.prune_published(later) == expected
    assert PaymentEvent.get_or_none(PaymentEvent.id == event.id) is not None  # never published: kept
    assert PaymentEvent.get_or_none(PaymentEvent.id == published.id) is None
    PaymentEvent.update(published_at=utcnow()).where(PaymentEvent.id == event.id).execute()
    window = PaymentEvent.select().where(
        PaymentEvent.occurred_at >= event.occurred_at, PaymentEvent.type == "created-payment-intent"
    )
    expected = window.count()
    assert expected >= 1
    assert payment_events.replay(event.occurred_at, types=("created-payment-intent",)) == expected
    assert PaymentEvent.get_by_id(event.id).published_at is None
    PaymentEvent.update(published_at=utcnow() - dt.timedelta(days=8)).where(PaymentEvent.id == event.id).execute()
    expected = due(utcnow())
    assert expected >= 1
    assert payment_events.prune_published() == expected
    assert PaymentEvent.get_or_none(PaymentEvent.id == event.id) is None


def test_every_event_written_matches_its_asyncapi_schema_exactly(domain_db, stripe_api):
    from api.asyncapi import EVENTS, PLATFORM_EVENTS, asyncapi_document

    paid = call(
        "create-payment-intent", {"customerId": vaulted(stripe_api), "amount": 1500, "currency": "usd", "confirm": True}
    )
    call("create-refund", {"paymentIntentId": paid["id"], "amount": 500})
    written = PaymentEvent.select().order_by(PaymentEvent.id.desc()).limit(500)
    seen = set()
    for event in written:
        EVENTS[event.type].model_validate(event.payload)  # no field missing, none more, each of its type
        if event.type in PLATFORM_EVENTS:  # and as the PRD's event, as its topic carries it
            PLATFORM_EVENTS[event.type].model_validate(payment_events.platform_payload(event.type, event.payload))
        seen.add(event.type)
    assert {"created-payment-intent", "succeeded-payment", "created-refund", "refund-succeeded-payment"} <= seen
    document = asyncapi_document()
    assert {c["address"] for c in document["channels"].values()} == set(get_settings().published_event_topics)
    assert set(payment_events.TYPES) | {"PaymentSucceeded", "PaymentFailed"} <= set(document["channels"])
    assert set(EVENTS) == set(payment_events.TYPES)
    assert set(PLATFORM_EVENTS) == set(payment_events.PLATFORM_FIELDS)
