"""The worker's shared reply producer under a gevent pool, while the broker goes away and comes back; its deadlines.

Regression test of drill 4's crash: librdkafka's Python binding keeps the state of a call into the producer per
OS thread, so two greenlets inside poll() at once (one of them parked in a callback that yielded) abort the whole
process with `CallState_get: Assertion cs != NULL failed`. Here a private Tansu sits behind a TCP proxy that plays
the outages; the greenlets run in a child process patched as `celery -P gevent` patches the worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from messaging.producer import ReplyProducer
from messaging.wire import Record
from tests.conftest import LOG_DIR
from tests.support import kafka, services
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

TOPIC = "gevent-reply-storm"
TIMEOUT_S = 2.0  # each delivery's deadline (KAFKA_DELIVERY_TIMEOUT_S): shorter than an outage, so some fail
# librdkafka itself keeps every message through the outages: a message it times out makes the idempotent producer
# bump its epoch on its own, which Tansu answers with PRODUCER_FENCED for good (a stand-in quirk, not this test's).
MESSAGE_TIMEOUT_MS = 60_000
GREENLETS = 100
OUTAGES = 2
OUTAGE_S = 3.0
# A waiter is woken at its deadline; the hub (and a loaded 2-core machine) may be busy for a while. Far below the
# 60 s librdkafka would keep a message: a wait that ignored its deadline still fails.
SLACK_S = 5.0


@pytest.fixture()
def broker_behind_proxy() -> Iterator[tuple[str, TcpProxy]]:
    """A private memory-only Tansu, reached (and advertised) only through a TCP proxy that can cut it away."""
    with kafka.tansu_behind_proxy(LOG_DIR / "tansu-gevent-storm.log") as (address, proxy):
        admin = AdminClient({"bootstrap.servers": address, "log_level": 2})
        admin.create_topics([NewTopic(TOPIC, 2)])[TOPIC].result(10)
        yield address, proxy


def test_greenlets_sharing_the_reply_producer_survive_broker_outages_and_each_delivery_ends_by_its_deadline(
    broker_behind_proxy: tuple[str, TcpProxy], tmp_path: Path
):
    address, proxy = broker_behind_proxy
    seconds = 2.0 + OUTAGES * (OUTAGE_S + 2.0) + 3.0
    env = {
        **os.environ,
        "KAFKA_BROKER": address,
        "KAFKA_DELIVERY_TIMEOUT_S": str(TIMEOUT_S),
        "KAFKA_PRODUCER_OPT_MESSAGE_TIMEOUT_MS": str(MESSAGE_TIMEOUT_MS),
    }
    stderr_path = tmp_path / "storm.stderr"
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(
            [services.PYTHON, "-m", "tests.kafka_relay.gevent_reply_storm", str(seconds), str(GREENLETS), TOPIC],
            cwd=services.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            time.sleep(2.0)
            for _ in range(OUTAGES):
                proxy.outage(OUTAGE_S)  # every connection reset, connects refused, then the broker again
                time.sleep(2.0)
            out, _ = child.communicate(timeout=seconds + 60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
    log = stderr_path.read_text(errors="replace")
    crash = [line for line in log.splitlines() if "Assertion" in line or "Fatal Python" in line]
    assert child.returncode == 0, (child.returncode, crash[:1] or log[-2000:])
    summary = json.loads(out.decode().strip().splitlines()[-1])
    print("gevent reply storm:", summary)
    # Every delivery ended acknowledged or failed (nothing else is possible), each by its deadline...
    assert summary["worst_overrun_s"] <= SLACK_S, summary
    assert summary["undeliverable"] == 0, summary
    # ... the outages were felt, and once the broker was back the replies went through again.
    assert summary["failed"] > 0, summary
    assert summary["acknowledged"] > GREENLETS, summary
    assert summary["last_ack_s"] > seconds - 3.0, summary


NOWHERE = {"bootstrap.servers": "127.0.0.1:9", "enable.idempotence": True, "log_level": 2}  # nothing listens there


def test_a_full_queue_and_an_unreachable_broker_end_every_delivery_failed_by_its_deadline():
    producer = ReplyProducer({**NOWHERE, "queue.buffering.max.messages": 2, "message.timeout.ms": 60_000})
    try:
        began = time.monotonic()
        deliveries = [producer.produce(Record(TOPIC, b"k", b"v"), began + 1.0) for _ in range(3)]
        # The third found the queue full until its deadline: failed then, and said why.
        assert 0.9 <= time.monotonic() - began < 1.0 + SLACK_S
        assert deliveries[2].done and deliveries[2].error.code() == KafkaError._QUEUE_FULL
        began = time.monotonic()
        assert not producer.wait(deliveries, began + 0.5)
        assert 0.45 <= time.monotonic() - began < 0.5 + SLACK_S
        assert all(d.failed for d in deliveries) and not any(d.undeliverable for d in deliveries)
        assert producer.flush(0) == 2  # still queued: librdkafka would send them once the broker is there
    finally:
        producer.close()
    assert producer._poller is not None and not producer._poller.is_alive()


def test_a_retired_producer_serves_its_outstanding_reports_then_its_poller_stops():
    producer = ReplyProducer({**NOWHERE, "message.timeout.ms": 500})
    delivery = producer.produce(Record(TOPIC, b"k", b"v"), time.monotonic() + 10)
    producer.retire()  # what shared_producer does once the process has a new producer
    assert producer.wait([delivery], time.monotonic() + 10)
    assert delivery.error.code() == KafkaError._MSG_TIMED_OUT
    services.wait_until(lambda: producer._poller is None, 10, "the retired producer's poller to stop")


def test_a_fenced_producer_is_replaced_by_the_next_shared_producer_call(monkeypatch):
    import messaging.producer as producer_module
    from settings import get_settings

    monkeypatch.setattr(producer_module, "producer_config", lambda _settings: dict(NOWHERE))
    monkeypatch.setattr(producer_module, "_shared", {})
    first = producer_module.shared_producer(get_settings())
    try:
        assert producer_module.shared_producer(get_settings()) is first
        fenced = producer_module.Delivery(Record(TOPIC, b"k", b"v"))
        fenced(KafkaError(KafkaError.PRODUCER_FENCED))  # what Tansu answers once librdkafka bumped the epoch
        first.wait([fenced], time.monotonic() + 1)
        assert fenced.failed and first.fatal_error is not None
        second = producer_module.shared_producer(get_settings())
        assert second is not first and second.fatal_error is None
        second.close()
    finally:
        first.close()
