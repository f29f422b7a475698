"""Queue depth read from either broker the service runs on: Redis (`make run`), where a passive declare of an empty
queue is refused, by LLEN of kombu's lists (its priority sub-queues counted); RabbitMQ by a passive declare, a queue
nobody declared yet counted as empty."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from kombu import Connection, Exchange, Producer, Queue

from tests import conftest

pytestmark = pytest.mark.integration


def names(n: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"depth-{run}-{i}" for i in range(n)]


@pytest.fixture()
def redis_broker() -> Iterator[Connection]:
    # The run's own Redis database (claimed in tests/conftest.py), as `make run`'s broker.
    with Connection(conftest.REDIS_URL) as conn:
        yield conn


@pytest.fixture()
def rabbit_broker() -> Iterator[Connection]:
    with Connection(os.environ["CELERY_BROKER_URL"]) as conn:  # the run's own vhost
        yield conn


def publish(conn: Connection, queue: str, count: int, priority: int | None = None) -> Queue:
    declared = Queue(queue, Exchange(queue, type="direct"), routing_key=queue)
    producer = Producer(conn.default_channel)
    for i in range(count):
        producer.publish({"n": i}, exchange=declared.exchange, routing_key=queue, declare=[declared], priority=priority)
    return declared


def test_on_redis_an_empty_queue_is_zero_and_a_full_one_counts_every_priority_sub_queue(redis_broker):
    from operations.metrics import queue_depths

    empty, plain, prioritised = names(3)
    publish(redis_broker, plain, 3)
    publish(redis_broker, prioritised, 2)
    publish(redis_broker, prioritised, 4, priority=5)  # kombu files it under `<queue>\x06\x163`
    client = redis_broker.default_channel.client
    assert client.llen(f"{prioritised}\x06\x163") == 4  # the sub-queue is where kombu put them
    try:
        assert queue_depths(redis_broker, [empty, plain, prioritised]) == {empty: 0, plain: 3, prioritised: 6}
    finally:
        client.delete(plain, prioritised, f"{prioritised}\x06\x163")


def test_on_rabbitmq_a_queue_is_counted_and_one_never_declared_is_zero_without_losing_the_rest(rabbit_broker):
    from operations.metrics import queue_depths

    never_declared, full, empty = names(3)
    publish(rabbit_broker, full, 3)
    publish(rabbit_broker, empty, 0).bind(rabbit_broker.default_channel).declare()
    try:
        # The refused passive declare closes its channel: the queues after it are still read.
        assert queue_depths(rabbit_broker, [never_declared, full, empty]) == {never_declared: 0, full: 3, empty: 0}
    finally:
        for queue in (full, empty):
            rabbit_broker.default_channel.queue_delete(queue)


def test_the_queue_depth_metric_is_read_from_a_redis_broker_as_make_run_uses(redis_broker, monkeypatch):
    from operations import metrics
    from registry import QUEUES
    from tasks.app import app

    monkeypatch.setattr(app, "connection_for_read", lambda: Connection(conftest.REDIS_URL))
    publish(redis_broker, "reads", 2)
    try:
        depths = metrics.QueueDepthCollector().depths()
    finally:
        redis_broker.default_channel.client.delete("reads")
    assert depths == {**dict.fromkeys(QUEUES, 0), "reads": 2}  # not None: the page does not say "unknown"
