"""The relay publishes a batch of requests, then waits once for RabbitMQ's confirms: only confirmed ones count."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue

from kafka_relay.handover import BatchHandOver, HandOverError
from kafka_relay.relay import PartitionProgress
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture()
def handover() -> Iterator[BatchHandOver]:
    from tasks.app import app

    batch = BatchHandOver(app, confirm_timeout_s=10.0)
    yield batch
    batch.close()


def _queue(handover: BatchHandOver, **arguments: Any) -> Queue:
    name = f"handover-test-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=arguments or None)
    with handover.app.connection_for_write() as conn:
        queue(conn.default_channel).declare()
    return queue


def _count(handover: BatchHandOver, queue: Queue) -> int:
    with handover.app.connection_for_write() as conn:
        _, count, _ = queue(conn.default_channel).queue_declare(passive=True)
        queue(conn.default_channel).delete()
        return count


def _send(queue: Queue, body: str) -> Any:
    return lambda producer, retry: producer.publish(
        body, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue], retry=retry
    )


def test_a_batch_of_publishes_is_confirmed_in_one_wait_and_every_message_is_queued(handover):
    assert handover.confirmed_publishing  # RabbitMQ with confirm_publish, as the service runs it
    queue = _queue(handover)
    tags = [handover.publish(_send(queue, f"m{i}")) for i in range(50)]
    assert tags == list(range(1, 51))
    assert handover.confirm() == set()
    assert _count(handover, queue) == 50
    # The next batch goes on over the same channel, its tags following on.
    again = _queue(handover)
    assert handover.publish(_send(again, "next")) == 51
    assert handover.confirm() == set()
    assert _count(handover, again) == 1


def test_messages_the_broker_refuses_are_reported_unconfirmed_and_the_others_confirmed(handover):
    # A queue that holds two messages and refuses (nacks) any more: RabbitMQ's reject-publish overflow.
    queue = _queue(handover, **{"x-max-length": 2, "x-overflow": "reject-publish"})
    tags = [handover.publish(_send(queue, f"m{i}")) for i in range(5)]
    assert handover.confirm() == set(tags[2:])
    assert _count(handover, queue) == 2


def test_a_broker_connection_lost_mid_batch_leaves_every_unconfirmed_publish_failed(handover):
    queue = _queue(handover)
    first = handover.publish(_send(queue, "before"))
    assert handover._connection is not None
    handover._connection.connection.sock.close()  # the TCP connection dies under the batch
    with pytest.raises(HandOverError):
        handover.publish(_send(queue, "after"))
    assert first in handover.confirm()
    # The next batch has a connection of its own again, its tags going on from the old one's (never reused).
    assert handover.publish(_send(queue, "later")) == first + 1
    assert handover.confirm() == set()
    assert _count(handover, queue) >= 1


def test_offsets_are_stored_only_up_to_the_first_unconfirmed_publish_of_a_partition():
    state = PartitionProgress(handled=[(10, []), (11, []), (12, []), (13, [])], published=[(10, 1), (11, 2), (12, 3)])
    state.unconfirmed({2, 3})
    # 10 is confirmed; 11 was not, so 11 and everything after it (13 included) is read again.
    assert state.settle() == (11, 11)


def test_a_partition_whose_publishes_were_all_confirmed_stores_past_its_last_message():
    state = PartitionProgress(handled=[(10, []), (11, [])], published=[(10, 7), (11, 8)])
    state.unconfirmed({99})
    assert state.settle() == (12, None)


def test_a_broker_without_publisher_confirms_is_published_to_as_celery_does_with_its_retries():
    from celery import Celery

    # A Redis broker (the suite's CELERY_BROKER_URL is RabbitMQ): the run's own Redis database, a queue of its own.
    redis_app = Celery("handover-test")
    # The write URL: Celery's broker_url would yield to the environment's CELERY_BROKER_URL (RabbitMQ).
    redis_app.conf.broker_write_url = REDIS_URL
    redis_app.conf.broker_transport_options = {"confirm_publish": True}  # meaningless on Redis

    @redis_app.task(name="handover.probe", shared=False)
    def probe(payload: dict) -> None: ...

    queue = f"handover-test-{uuid.uuid4().hex[:8]}"
    handover = BatchHandOver(redis_app, confirm_timeout_s=1.0)
    sent: list[tuple[Any, bool]] = []

    def send(producer: Any, retry: bool) -> None:
        sent.append((producer, retry))
        probe.apply_async(args=[{"n": 1}], queue=queue, ignore_result=True, producer=producer, retry=retry)

    assert not handover.confirmed_publishing
    assert handover.publish(send) is None
    assert sent == [(None, True)]  # Celery's own producer pool, kombu's retries on
    assert handover.confirm() == set()
    # Published for real: the task message is in the queue, as Celery wrote it.
    with Connection(REDIS_URL) as conn:
        waiting = conn.SimpleQueue(queue)
        try:
            message = waiting.get(timeout=10)
            assert message.headers["task"] == "handover.probe"
            assert message.decode()[0] == [{"n": 1}]  # protocol 2: (args, kwargs, embed)
            message.ack()
            with pytest.raises(waiting.Empty):  # and only it, once (the publish returned after the broker took it)
                waiting.get_nowait()
        finally:
            waiting.close()
