"""The relay publishes a batch of requests, then waits once for RabbitMQ's confirms: only confirmed ones count."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Exchange, Queue

from kafka_relay.handover import BatchHandOver, HandOverError
from kafka_relay.relay import PartitionProgress

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

    redis_app = Celery()
    redis_app.conf.broker_write_url = "redis://127.0.0.1:6379/13"  # (the suite's CELERY_BROKER_URL is RabbitMQ)
    redis_app.conf.broker_transport_options = {"confirm_publish": True}  # meaningless on Redis
    handover = BatchHandOver(redis_app, confirm_timeout_s=1.0)
    sent: list[tuple[Any, bool]] = []
    assert not handover.confirmed_publishing
    assert handover.publish(lambda producer, retry: sent.append((producer, retry))) is None
    assert sent == [(None, True)]  # Celery's own producer pool, kombu's retries on
    assert handover.confirm() == set()
