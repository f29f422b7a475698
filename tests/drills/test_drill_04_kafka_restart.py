"""Drill 4: the Kafka broker goes away and comes back while the relay runs — every request is answered once it
is back, and none is executed twice.

The Tansu shipped here keeps its log in memory only (its sqlite/turso engines are not built in, and postgres or
s3 storage would need one more server), so a restart of its process would erase the requests themselves. What the
clients see of a broker restart — every connection reset, connects refused, then the same broker with its data —
is played by the TCP proxy the drills' Kafka clients all go through (tests/support/tcp_proxy.py).
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.drills.conftest import size
from tests.drills.helpers import invariant_violations, kafka_creates
from tests.drills.report import report
from tests.support import services

pytestmark = pytest.mark.integration

OUTAGE_S = 6.0
MAX_OUTAGES = 3


def test_a_kafka_broker_outage_while_the_relay_runs_ends_with_every_request_answered_once(
    stack, drill_kafka, stripe_api
):
    gateway, collector = drill_kafka.gateway, drill_kafka.collector
    if stack.relay is None or not stack.relay.running:
        stack.start_relay()
    count = size(60, 500)
    customers = [f"d4-{uuid.uuid4().hex[:10]}" for _ in range(5)]
    topic, response_topic = "create-payment-intent", "create-payment-intent-response"
    keys: list[str] = []
    per_wave = count // (MAX_OUTAGES + 1)
    outages, answered_before, answered_during = 0, [], []
    worker_crashed = False
    try:
        for wave in range(MAX_OUTAGES + 1):
            wave_keys = [
                gateway.send(topic, {"customerId": customers[i % 5], "amount": 100 + i, "currency": "usd"})
                for i in range(wave * per_wave, count if wave == MAX_OUTAGES else (wave + 1) * per_wave)
            ]
            keys.extend(wave_keys)
            if wave == MAX_OUTAGES or worker_crashed:
                break
            gateway.flush()
            services.wait_until(
                lambda wk=wave_keys: len(collector.answered(wk, response_topic)) >= len(wk) // 4, 60, "first answers"
            )
            answered_before.append(len(collector.answered(keys, response_topic)))
            # The broker goes away with replies in flight; requests keep coming meanwhile (the gateway holds them).
            drill_kafka.proxy.outage(OUTAGE_S)
            outages += 1
            answered_during.append(len(collector.answered(keys, response_topic)))
            time.sleep(3.0)
            worker_crashed = stack.procs["worker"].poll() is not None
        gateway.flush()
        back_at = time.monotonic()
        try:
            if not worker_crashed:
                collector.wait(lambda: len(collector.answered(keys, response_topic)) == len(keys), 20, "every answer")
        except TimeoutError:
            pass
        answered_without_supervisor = len(collector.answered(keys, response_topic))
        worker_crashed = worker_crashed or stack.procs["worker"].poll() is not None
    finally:
        # A supervisor (systemd, Kubernetes) starts a dead worker again: acks_late gives its tasks back.
        restarted = stack.supervise_worker()
    collector.wait(
        lambda: len(collector.answered(keys, response_topic)) == len(keys), 180, "an answer to every request"
    )
    seconds_to_all = time.monotonic() - back_at
    time.sleep(2.0)  # late duplicates, if any, arrive
    crash_lines = [line for line in stack.log_text().splitlines() if "Assertion" in line or "Fatal Python" in line]

    replies, ids, differing, at_stripe, rows = kafka_creates(
        collector, response_topic, keys, customers, stack.sql, stripe_api
    )
    report(
        "4",
        f"Kafka broker unreachable {OUTAGE_S:.0f} s x{outages} (every connection reset, connects refused) mid-stream",
        requests_sent=len(keys),
        answered_before_outage=",".join(map(str, answered_before)),
        answered_during_outage=",".join(map(str, answered_during)),
        answered_without_supervisor=answered_without_supervisor,
        worker_crashed=worker_crashed,
        worker_restarted_by_supervisor=restarted,
        crash=crash_lines[0][-90:] if crash_lines else "-",
        answered_in_all=sum(bool(a) for a in replies.values()),
        seconds_to_all_after_back=round(seconds_to_all, 1),
        replies_total=sum(len(a) for a in replies.values()),
        keys_answered_differently=differing,
        intents_at_stripe=len(at_stripe),
        intent_rows=rows,
        relay_alive=stack.relay.running,
    )
    # Nothing accepted is lost, and nothing runs twice — once a supervisor has restarted what died.
    assert all(replies.values())
    assert differing == 0 and len(ids) == len(keys)
    assert len(at_stripe) == rows == len(keys)
    assert stack.relay.running
    assert invariant_violations(stack.sql) == {}
    # ... but no process may die of a broker outage.
    assert not worker_crashed, crash_lines[:1]
