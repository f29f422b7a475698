"""The PRD's events (PaymentSucceeded, PaymentFailed…) over this run's Tansu, as the platform's order service reads
them: the same outbox rows as our own topics, one publish per topic, a row published only when every topic took it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from domain import payment_events
from errors import OperationError
from event_publisher.publisher import Publisher
from models import PaymentEvent, unit_of_work
from settings import get_settings
from tests.domain.helpers import call, customer_with_card
from tests.kafka_relay.conftest import fresh_outbox_reader
from tests.kafka_relay.publishing import drain, publisher_timing_out
from tests.support import kafka

pytestmark = pytest.mark.integration

ENVELOPE = {"eventId", "version", "occurredAt", "traceId"}


@pytest.fixture()
def every_event_topic(kafka_broker: str, mariadb) -> Iterator[kafka.Collector]:
    """Every topic an event is published to (ours and the PRD's), read from the start."""
    topics = get_settings().published_event_topics
    assert {"PaymentSucceeded", "PaymentFailed", "succeeded-payment"} <= set(topics)  # the defaults publish both
    reader = fresh_outbox_reader(kafka_broker, topics)
    yield reader
    reader.close()


class OrderService:
    """What vy-commerce does (order.controller.ts, order-kafka.service.ts, order.service.ts): subscribes to the topics
    `PaymentSucceeded` and `PaymentFailed`, takes the key as a string, reads `orderId` (ignored when absent) and
    `paymentIntentId`, sets the order PAID (and emits OrderPaid) or PAYMENT_FAILED. Unlike it, deduplicates by
    eventId, as every consumer of an at-least-once topic must."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.order_paid_emitted: list[str] = []
        self.seen: set[str] = set()
        self.repeats = 0

    def handle(self, topic: str, key: bytes | None, value: bytes) -> None:
        assert key is not None  # `context.getMessage().key.toString()` throws on a null key
        event = json.loads(value)
        if event["eventId"] in self.seen:
            self.repeats += 1
            return
        self.seen.add(event["eventId"])
        # Keyed by the order (the PRD partitions by order or subscription), else the intent.
        assert key.decode() == (event.get("orderId") or event.get("subscriptionId") or event["paymentIntentId"])
        if not event.get("orderId"):
            return
        if topic == "PaymentSucceeded":
            self.status[event["orderId"]] = "PAID"
            self.order_paid_emitted.append(event["orderId"])
        elif topic == "PaymentFailed":
            self.status[event["orderId"]] = "PAYMENT_FAILED"


def vaulted(stripe_api, number: str = "4242424242424242") -> str:
    return customer_with_card(stripe_api, "plat-ev", number)


def published(publisher_owner: str) -> None:
    publisher = Publisher(get_settings(), owner=publisher_owner)
    try:
        drain(publisher)
    finally:
        publisher.close()


def on_topic(reader: kafka.Collector, key: str, topic: str) -> list[Any]:
    return [m for m in reader.received(key.encode()) if m.topic == topic]


def test_the_order_service_marks_each_order_paid_or_failed_exactly_once_from_the_prds_events(
    stripe_api, every_event_topic
):
    paid_orders = {f"order-{uuid.uuid4().hex[:8]}": None for _ in range(2)}
    failed_order = f"order-{uuid.uuid4().hex[:8]}"
    with unit_of_work():
        for order_id in paid_orders:
            create = {"customerId": vaulted(stripe_api), "amount": 2000, "currency": "usd", "confirm": True}
            paid_orders[order_id] = call("create-payment-intent", {**create, "orderId": order_id})["id"]
        declined_card = vaulted(stripe_api, "4000000000000341")
        with pytest.raises(OperationError) as declined:
            create = {"customerId": declined_card, "amount": 900, "currency": "usd", "confirm": True}
            call("create-payment-intent", {**create, "orderId": failed_order})
        failed_intent = declined.value.details["paymentIntentId"]
    intents = [*paid_orders.values(), failed_intent]
    published("platform-events")
    with unit_of_work():  # a consumer that lost its data asks for them again: these events go out a second time
        first = PaymentEvent.select().where(PaymentEvent.payment_intent_id.in_(intents)).order_by(PaymentEvent.id)
        assert payment_events.replay(first.get().occurred_at) >= 3 * len(intents)
    published("platform-events-replay")
    every_event_topic.wait(
        lambda: (
            all(len(on_topic(every_event_topic, order, "PaymentSucceeded")) >= 2 for order in paid_orders)
            and len(on_topic(every_event_topic, failed_order, "PaymentFailed")) >= 2
        ),
        60,
        "each PRD event twice",
    )
    order_service = OrderService()
    for order_id in [*paid_orders, failed_order]:  # each intent's events are keyed by its order
        for message in every_event_topic.received(order_id.encode()):
            if message.topic in ("PaymentSucceeded", "PaymentFailed"):
                order_service.handle(message.topic, message.key, message.value)
    assert order_service.status == {**dict.fromkeys(paid_orders, "PAID"), failed_order: "PAYMENT_FAILED"}
    assert sorted(order_service.order_paid_emitted) == sorted(paid_orders)  # once each
    assert order_service.repeats >= 3  # the repeats did reach it (and were dropped by eventId)

    # The PRD's fields, camelCase, and our envelope: nothing else, nothing missing.
    succeeded = json.loads(on_topic(every_event_topic, next(iter(paid_orders)), "PaymentSucceeded")[0].value)
    assert set(succeeded) == {"paymentIntentId", "orderId", "subscriptionId"} | ENVELOPE
    failed = json.loads(on_topic(every_event_topic, failed_order, "PaymentFailed")[0].value)
    assert set(failed) == {"paymentIntentId", "orderId", "subscriptionId", "errorCode", "errorMessage"} | ENVELOPE
    assert (failed["orderId"], failed["errorCode"]) == (failed_order, "card_declined")
    created = json.loads(on_topic(every_event_topic, failed_order, "PaymentIntentCreated")[0].value)
    assert set(created) == {"paymentIntentId", "orderId", "subscriptionId", "amountCents", "currency"} | ENVELOPE
    assert (created["amountCents"], created["currency"]) == (900, "usd")
    # Beside our own topic, the same row: the same eventId on both.
    own = json.loads(on_topic(every_event_topic, failed_order, "failed-payment")[0].value)
    assert own["eventId"] == failed["eventId"] and own["type"] == "failed-payment" and "type" not in failed


def test_a_row_one_of_whose_topics_failed_is_sent_again_whole_and_the_intents_next_event_waits_for_it(
    stripe_api, every_event_topic
):
    with unit_of_work():
        create = {"customerId": vaulted(stripe_api), "amount": 2000, "currency": "usd", "confirm": True}
        intent_id = call("create-payment-intent", create)["id"]
        call("create-refund", {"paymentIntentId": intent_id, "amount": 500})
        succeeded = PaymentEvent.get(
            PaymentEvent.payment_intent_id == intent_id, PaymentEvent.type == payment_events.SUCCEEDED_PAYMENT
        )
    # That topic's partition leader does not answer; succeeded-payment's does.
    publisher = publisher_timing_out("one-topic-down", lambda record: record.topic == "PaymentSucceeded")
    try:
        with unit_of_work():
            _, clean = publisher.run_once()
            assert not clean
            assert PaymentEvent.get_by_id(succeeded.id).published_at is None  # one topic took it: not published
        every_event_topic.wait(
            lambda: len(on_topic(every_event_topic, intent_id, "succeeded-payment")) == 1, 30, "the half-sent row"
        )
        assert on_topic(every_event_topic, intent_id, "PaymentSucceeded") == []
        drain(publisher)
    finally:
        publisher.close()
    every_event_topic.wait(
        lambda: len(on_topic(every_event_topic, intent_id, "RefundSucceeded")) == 1, 60, "the intent's later events"
    )
    own_copies = on_topic(every_event_topic, intent_id, "succeeded-payment")
    prd_copies = on_topic(every_event_topic, intent_id, "PaymentSucceeded")
    assert len(own_copies) == 2 and len(prd_copies) == 1  # sent again whole: our topic has it twice
    assert {json.loads(m.value)["eventId"] for m in own_copies + prd_copies} == {succeeded.event_id}
    # The refund's events were produced only after the row was on every topic.
    refund_created = on_topic(every_event_topic, intent_id, "RefundCreated")[0]
    assert refund_created.timestamp_ms >= max(m.timestamp_ms for m in own_copies + prd_copies)
    assert int(refund_created.headers["sequence"]) > succeeded.id
