"""Drill 5: the relay is SIGKILLed mid-batch, and SIGTERMed with its producer queue full — nothing is lost.

(tests/kafka_relay has versions of these against the suite's stack; here they run on the drills' stack and are
counted as drills.)
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator

import pytest

from tests.drills.conftest import FULL, KAFKA_PARTITIONS, size
from tests.drills.helpers import invariant_violations, kafka_creates
from tests.drills.report import report
from tests.support import kafka, services

pytestmark = [
    pytest.mark.integration,
    # make test already runs tests/kafka_relay/test_crash_recovery.py (the same faults on the suite's stack).
    pytest.mark.skipif(not FULL, reason="full run only (make drills); make test runs tests/kafka_relay's versions"),
]


@pytest.fixture()
def own_relay(stack) -> Iterator:
    """The drills' relay, stopped so the drill starts it its own way; back to normal afterwards."""
    if stack.relay is not None:
        stack.relay.stop()
    yield stack
    if stack.relay is not None:
        stack.relay.stop()
        stack.relay.kill()
    stack.start_relay()


def test_a_relay_sigkilled_mid_batch_loses_no_request_and_creates_no_intent_twice(own_relay, drill_kafka, stripe_api):
    stack = own_relay
    gateway, collector = drill_kafka.gateway, drill_kafka.collector
    topic, response_topic = "create-payment-intent", "create-payment-intent-response"
    count = size(100, 500)
    # No commit before the kill: all the first relay handed over is read and handed over again.
    relay = stack.start_relay(KAFKA_CONSUMER_OPT_AUTO_COMMIT_INTERVAL_MS="600000")
    customers = [f"d5kill-{uuid.uuid4().hex[:10]}" for _ in range(5)]
    keys = [
        gateway.send(topic, {"customerId": customers[i % 5], "amount": 100 + i, "currency": "usd"})
        for i in range(count)
    ]
    gateway.flush()
    services.wait_until(lambda: relay.log_text().count("handed over") >= count // 10, 60, "first hand-overs", 0.02)
    relay.kill()
    answered_at_kill = len(collector.answered(keys, response_topic))
    handed_over_first = relay.log_text().count("handed over")
    stack.start_relay()
    collector.wait(lambda: len(collector.answered(keys, response_topic)) == count, 180, "an answer to every request")
    handed_over_all = handed_over_first + stack.relay.log_text().count("handed over")

    _, ids, differing, at_stripe, rows = kafka_creates(
        collector, response_topic, keys, customers, stack.sql, stripe_api
    )
    report(
        "5a",
        f"relay SIGKILL after {handed_over_first} hand-overs of {count} requests, offsets uncommitted",
        requests_sent=count,
        answered_at_kill=answered_at_kill,
        handed_over_in_all=handed_over_all,
        answered_in_all=len(collector.answered(keys, response_topic)),
        keys_answered_differently=differing,
        intents_at_stripe=len(at_stripe),
        intent_rows=rows,
    )
    assert handed_over_all > count  # what the first relay had not committed was taken again
    assert differing == 0 and len(ids) == count
    assert len(at_stripe) == rows == count
    assert invariant_violations(stack.sql) == {}


def test_a_relay_sigtermed_with_a_full_producer_queue_loses_nothing(own_relay, drill_kafka):
    stack = own_relay
    gateway, collector = drill_kafka.gateway, drill_kafka.collector
    topic, response_topic, dlq = "create-refund", "create-refund-response", "create-refund-dlq"
    # A tiny producer queue that drains slowly: the relay's error replies and dead letters wait for room.
    relay = stack.start_relay(
        KAFKA_PRODUCER_OPT_QUEUE_BUFFERING_MAX_MESSAGES="4",
        KAFKA_PRODUCER_OPT_LINGER_MS="100",
        KAFKA_CONSUME_BATCH="500",
    )
    total = size(240, 600)
    poison, good = [], []
    for i in range(total):
        if i % 4 == 3:
            good.append(gateway.send(topic, {"paymentIntentId": f"vypi_missing{i}"}))
        else:
            poison.append(gateway.send(topic, {"paymentIntentId": i}))
    gateway.flush()
    collector.wait(lambda: len(collector.answered(poison, response_topic)) >= 10, 60, "the first error replies")
    exit_code = relay.stop(signal.SIGTERM)
    log = relay.log_text()
    answered_at_stop = len(collector.answered(poison + good, response_topic))
    group = stack.config.kafka_group
    committed = kafka.committed_offsets(drill_kafka.address, group, topic, KAFKA_PARTITIONS)
    below = [k for k in poison if gateway.positions[k][1] < committed.get(gateway.positions[k][0], -1)]
    collector.wait(lambda: len(collector.answered(below, response_topic)) == len(below), 20, "committed replies")

    stack.start_relay()
    everything = poison + good
    collector.wait(lambda: len(collector.answered(everything, response_topic)) == total, 120, "every answer")
    dead_lettered = sum(bool(collector.received(k.encode(), dlq)) for k in poison)
    report(
        "5b",
        f"relay SIGTERM with a 4-message producer queue and {total} requests (3/4 poison)",
        requests_sent=total,
        exit_code=exit_code,
        queue_full_seen="producer queue full" in log,
        answered_at_stop=answered_at_stop,
        committed_before_stop=len(below),
        answered_in_all=len(collector.answered(everything, response_topic)),
        poison_dead_lettered=dead_lettered,
    )
    assert exit_code == 0
    assert all(collector.received(k.encode(), dlq) for k in below)
    assert dead_lettered == len(poison)
    for key in poison:
        assert gateway.reply(topic, key)["error"]["code"] == "validation_error"
    for key in good:
        assert gateway.reply(topic, key)["error"]["code"] == "not_found"
