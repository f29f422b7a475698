"""The events publisher against this run's Tansu: in order per intent, marked once acknowledged, shards shared."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Iterator

import pytest

from event_publisher.publisher import Publisher
from models import PaymentEvent, unit_of_work, utcnow
from settings import get_settings
from tests.domain.helpers import call, customer_with_card
from tests.kafka_relay.conftest import fresh_outbox_reader
from tests.kafka_relay.publishing import drain, publisher_timing_out
from tests.support import kafka

pytestmark = pytest.mark.integration


@pytest.fixture()
def events_topics(kafka_broker: str, mariadb) -> Iterator[kafka.Collector]:
    """The event topics, and a collector reading them from the start."""
    topics = list(get_settings().event_topics.values())
    reader = fresh_outbox_reader(kafka_broker, topics)
    yield reader
    reader.close()


def payments(stripe_api, count: int) -> list[str]:
    """Paid intents with a refund each: four events per intent, in the database's outbox."""
    ids = []
    with unit_of_work():
        for _ in range(count):
            customer_id = customer_with_card(stripe_api, "pub")
            intent = call(
                "create-payment-intent", {"customerId": customer_id, "amount": 2000, "currency": "usd", "confirm": True}
            )
            call("create-refund", {"paymentIntentId": intent["id"], "amount": 500})
            ids.append(intent["id"])
    return ids


def received_by_intent(reader: kafka.Collector, ids: list[str]) -> dict[str, list[dict]]:
    def told(intent_id: str) -> int:  # the four facts of a paid, refunded intent (status changes come beside them)
        types = {json.loads(m.value)["type"] for m in reader.received(intent_id.encode())}
        return len(types - {"payment-status-changed"})

    # Waiting for four messages could end before the last fact arrived: status changes are messages too.
    reader.wait(lambda: all(told(i) >= 4 for i in ids), 60, "the events")
    by_intent: dict[str, list[dict]] = defaultdict(list)
    for intent_id in ids:
        # Each type has its topic: the order they were written in is their sequence header...
        messages = sorted(reader.received(intent_id.encode()), key=lambda m: int(m.headers["sequence"]))
        # ...and they were produced in that order (the producer stamps CreateTime when it is handed a message).
        assert [m.timestamp_ms for m in messages] == sorted(m.timestamp_ms for m in messages)
        for message in messages:
            by_intent[intent_id].append({**json.loads(message.value), "_headers": message.headers})
    return by_intent


def test_events_go_out_in_order_per_intent_keyed_by_intent_and_are_marked_published(stripe_api, events_topics):
    ids = payments(stripe_api, 3)
    publisher = Publisher(get_settings(), owner="test-publisher")
    try:
        drain(publisher)
    finally:
        publisher.close()
    for intent_id, events in received_by_intent(events_topics, ids).items():
        changes = [e for e in events if e["type"] == "payment-status-changed"]
        assert changes and changes[-1]["status"] == "succeeded" and changes[0]["previousStatus"] is None
        assert [e["type"] for e in events if e not in changes] == [
            "created-payment-intent",
            "succeeded-payment",
            "created-refund",
            "refund-succeeded-payment",
        ]
        assert [e["version"] for e in events] == sorted(e["version"] for e in events)
        assert all(e["_headers"]["eventId"] == e["eventId"].encode() for e in events)
        assert all(e["paymentIntentId"] == intent_id for e in events)
    with unit_of_work():
        assert (
            not PaymentEvent.select()
            .where(PaymentEvent.payment_intent_id.in_(ids), PaymentEvent.published_at.is_null())
            .exists()
        )


def test_two_publishers_share_the_shards_never_one_shard_at_once_and_keep_each_intents_order(stripe_api, events_topics):
    first = Publisher(get_settings(), owner="publisher-a")
    second = Publisher(get_settings(), owner="publisher-b")
    try:
        with unit_of_work():
            assert len(first.take_shards(utcnow())) == get_settings().outbox_shards  # alone: every shard
            assert second.take_shards(utcnow()) == []  # all leased: it waits for its share to be given back
            a = first.take_shards(utcnow())  # sees the other one now: keeps half, gives the rest back
            b = second.take_shards(utcnow())
        assert set(a).isdisjoint(b) and sorted(a + b) == list(range(get_settings().outbox_shards))
        assert len(a) == len(b) == get_settings().outbox_shards // 2
        ids = payments(stripe_api, 4)
        drain(first, second)
    finally:
        first.close()
        second.close()
    for events in received_by_intent(events_topics, ids).values():
        assert [e["version"] for e in events] == sorted(e["version"] for e in events)


def test_with_kafka_unreachable_events_wait_unpublished_and_go_out_when_it_is_back(stripe_api, events_topics):
    ids = payments(stripe_api, 1)
    cut_off = dataclasses.replace(get_settings(), kafka_broker="127.0.0.1:9", kafka_delivery_timeout_s=1.0)
    stranded = Publisher(cut_off, owner="cut-off")
    try:
        stranded.run_once()
    finally:
        stranded.close()
    with unit_of_work():
        waiting = list(PaymentEvent.select().where(PaymentEvent.payment_intent_id == ids[0]))
    assert waiting and all(e.published_at is None for e in waiting)
    assert any(e.last_error for e in waiting)
    back = Publisher(get_settings(), owner="back")
    try:
        drain(back)
    finally:
        back.close()
    arrived = [e["type"] for e in received_by_intent(events_topics, ids)[ids[0]]]
    assert len([t for t in arrived if t != "payment-status-changed"]) == 4 and "payment-status-changed" in arrived


def test_a_later_event_of_an_intent_never_reaches_kafka_before_an_earlier_one_that_failed(stripe_api, events_topics):
    """One partition fails an intent's first event while the others take their writes (a partition leader away):
    the intent's later events wait for it, so every event's first copy on Kafka comes in the order written."""
    ids = payments(stripe_api, 2)
    with unit_of_work():
        written = {
            i: [
                e.event_id
                for e in PaymentEvent.select().where(PaymentEvent.payment_intent_id == i).order_by(PaymentEvent.id)
            ]
            for i in ids
        }
    stuck = written[ids[0]][0]
    publisher = publisher_timing_out(
        "one-partition-down", lambda record: dict(record.headers)["eventId"] == stuck.encode()
    )
    try:
        with unit_of_work():
            _, clean = publisher.run_once()
        assert not clean
        drain(publisher)
    finally:
        publisher.close()
    events_topics.wait(
        lambda: all(
            {m.headers["eventId"].decode() for m in events_topics.received(i.encode())} >= set(w)
            for i, w in written.items()
        ),
        60,
        "every event",
    )
    for intent_id, order in written.items():
        firsts: list[str] = []
        copies = sorted(
            events_topics.received(intent_id.encode()), key=lambda m: (m.timestamp_ms, int(m.headers["sequence"]))
        )
        for message in copies:
            if message.headers["eventId"].decode() not in firsts:
                firsts.append(message.headers["eventId"].decode())
        assert firsts == order, intent_id


def test_an_intent_of_an_order_is_keyed_by_the_order_so_an_orders_events_share_a_partition(stripe_api, events_topics):
    order_id = f"order-{utcnow().timestamp():.6f}"
    with unit_of_work():
        ids = []
        for _ in range(2):  # two intents of one order (a retry with another card, say)
            customer_id = customer_with_card(stripe_api, "pub")
            payload = {
                "customerId": customer_id,
                "amount": 1500,
                "currency": "usd",
                "confirm": True,
                "orderId": order_id,
            }
            ids.append(call("create-payment-intent", payload)["id"])
    publisher = Publisher(get_settings(), owner="test-publisher-orders")
    try:
        drain(publisher)
    finally:
        publisher.close()
    topic = get_settings().event_topics["succeeded-payment"]
    events_topics.wait(
        lambda: len([m for m in events_topics.received(order_id.encode()) if m.topic == topic]) >= 2, 60, "keyed"
    )
    keyed = [json.loads(m.value) for m in events_topics.received(order_id.encode()) if m.topic == topic]
    assert sorted(e["paymentIntentId"] for e in keyed) == sorted(ids)
    assert len({m.partition for m in events_topics.received(order_id.encode()) if m.topic == topic}) == 1
    # The positive control: an intent without an order is still keyed by the intent (the tests above).
    assert not [m for i in ids for m in events_topics.received(i.encode()) if m.topic == topic]


def test_one_pass_takes_the_events_of_every_shard_it_holds_in_one_select(stripe_api, events_topics, monkeypatch):
    from models import database

    ids = payments(stripe_api, 6)
    with unit_of_work():
        shards = {e.shard for e in PaymentEvent.select().where(PaymentEvent.payment_intent_id.in_(ids))}
    assert len(shards) > 1  # six intents in one of 16 shards: about one run in a million
    batches: list[str] = []
    execute_sql = database.obj.execute_sql

    def counting(sql: str, params=None, *args, **kwargs):  # a spy: every statement still runs
        if sql.startswith("SELECT `t1`.`id`, `t1`.`event_id`") and "published_at` IS NULL" in sql:
            batches.append(sql)
        return execute_sql(sql, params, *args, **kwargs)

    monkeypatch.setattr(database.obj, "execute_sql", counting)
    publisher = Publisher(get_settings(), owner="one-select")
    try:
        sent, clean = publisher.run_once()
    finally:
        publisher.close()
    assert clean and len(batches) == 1  # not one select per shard (16 a pass whatever the load)
    with unit_of_work():
        waiting = PaymentEvent.select().where(
            PaymentEvent.payment_intent_id.in_(ids), PaymentEvent.published_at.is_null()
        )
        assert not waiting.exists() and sent >= 6 * 4
