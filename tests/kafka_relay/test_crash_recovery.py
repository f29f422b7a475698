"""Nothing accepted is lost and nothing is charged twice when the relay is killed or stopped mid-stream."""

from __future__ import annotations

import signal
import uuid

import pytest

from tests.kafka_relay.conftest import KAFKA_ENV, PARTITIONS
from tests.support import kafka, services
from tests.support.stripe_objects import intents_of_customers

pytestmark = pytest.mark.integration


def test_sigkill_with_500_requests_in_flight_then_a_restart_answers_every_one_and_creates_no_intent_twice(
    gateway, own_relay, stripe_api, mariadb
):
    from models import PaymentIntent

    topic, response_topic = "create-payment-intent", "create-payment-intent-response"
    # No commit before the kill: every request the first relay handed over is read and handed over again.
    own_relay.start({"KAFKA_CONSUMER_OPT_AUTO_COMMIT_INTERVAL_MS": "600000"})
    customers = [f"kill-{uuid.uuid4().hex[:10]}" for _ in range(5)]
    keys = [
        gateway.send(topic, {"customerId": customers[i % 5], "amount": 100 + i, "currency": "usd"}, trace_id=f"k{i}")
        for i in range(500)
    ]
    gateway.flush()
    services.wait_until(lambda: own_relay.log_text().count("handed over") >= 50, 60, "the first hand-overs", 0.02)
    own_relay.kill()
    collector = gateway.collector
    answered_at_kill = len(collector.answered(keys, response_topic))
    first_log = own_relay.log_text()

    own_relay.start()
    collector.wait(lambda: len(collector.answered(keys, response_topic)) == 500, 180, "an answer to every request")

    handed_over_first = first_log.count("handed over")
    handed_over = handed_over_first + own_relay.log_text().count("handed over")
    print(f"answered at kill: {answered_at_kill}/500 after {handed_over_first} hand-overs; in all: {handed_over}")
    # The relay hands requests over without waiting for their tasks, and what it had not committed is taken again.
    assert answered_at_kill < handed_over_first and handed_over > 500
    intent_ids = set()
    for key in keys:
        replies = [r.json() for r in collector.received(key.encode(), response_topic)]
        assert all("response" in r for r in replies), replies[0]
        # A redelivered request answers the first result again.
        assert len({r["response"]["id"] for r in replies}) == 1
        intent_ids.add(replies[0]["response"]["id"])
    assert len(intent_ids) == 500
    for customer_id in customers:
        assert PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count() == 100
    at_stripe = intents_of_customers(stripe_api, customers)
    assert len(at_stripe) == 500
    assert {pi["metadata"]["vy_payment_intent_id"] for pi in at_stripe} == intent_ids


def test_sigterm_with_a_full_producer_queue_loses_nothing(gateway, own_relay, kafka_broker):
    topic, response_topic, dlq = "create-refund", "create-refund-response", "create-refund-dlq"
    # A tiny producer queue that drains slowly: the relay's error replies and dead-letter copies wait for room.
    own_relay.start(
        {
            "KAFKA_PRODUCER_OPT_QUEUE_BUFFERING_MAX_MESSAGES": "4",
            "KAFKA_PRODUCER_OPT_LINGER_MS": "100",
            "KAFKA_CONSUME_BATCH": "500",
        }
    )
    poison, good = [], []
    for i in range(240):
        if i % 4 == 3:
            good.append(gateway.send(topic, {"paymentIntentId": f"vypi_missing{i}"}))
        else:
            poison.append(gateway.send(topic, {"paymentIntentId": i}))
    gateway.flush()
    collector = gateway.collector
    collector.wait(lambda: len(collector.answered(poison, response_topic)) >= 10, 60, "the first error replies")
    assert own_relay.stop(signal.SIGTERM) == 0
    log = own_relay.log_text()
    assert "producer queue full" in log and "relay stopped (0 messages left unflushed)" in log

    # Everything below a committed offset was handed over: its error reply and dead-letter copy are out.
    committed = kafka.committed_offsets(kafka_broker, KAFKA_ENV["KAFKA_GROUP"], topic, PARTITIONS)
    below = [k for k in poison if gateway.positions[k][1] < committed[gateway.positions[k][0]]]
    collector.wait(lambda: len(collector.answered(below, response_topic)) == len(below), 10, "committed replies")
    assert all(collector.received(k.encode(), dlq) for k in below)
    print(f"poison handed over before SIGTERM: {len(below)}/{len(poison)}")
    assert 10 <= len(below)

    own_relay.start()
    everything = poison + good
    collector.wait(lambda: len(collector.answered(everything, response_topic)) == 240, 60, "every answer")
    for key in poison:
        assert collector.received(key.encode(), dlq)
        assert gateway.reply(topic, key)["error"]["code"] == "validation_error"
    for key in good:
        assert gateway.reply(topic, key)["error"]["code"] == "not_found"
