"""A worker makes its Kafka reply producer at start, so that its first replies do not wait for a producer id (issue 27).

A new idempotent librdkafka producer sends nothing until the broker gave it a producer id, which it asks for on a
500 ms timer once connected: made lazily at the first reply, that reply and the ones behind it waited ~500 ms.
The latency itself is the bench's (R2/W2 low-rate step); here, the mechanism: who makes the producer, and when.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import messaging.producer as producer_module
import tasks.app as worker_app
from settings import get_settings
from tests.support import services

NOWHERE = {"bootstrap.servers": "127.0.0.1:9", "enable.idempotence": True, "log_level": 2}  # nothing listens there


class _Worker:
    def __init__(self, pool_cls: Any) -> None:
        self.pool_cls = pool_cls


@pytest.fixture
def fresh_producers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[int, producer_module.ReplyProducer]]:
    made: dict[int, producer_module.ReplyProducer] = {}
    monkeypatch.setattr(producer_module, "_shared", made)
    yield made
    for producer in made.values():
        producer.close()


def test_the_warm_up_makes_the_producer_the_first_reply_then_uses(monkeypatch, fresh_producers):
    monkeypatch.setattr(producer_module, "producer_config", lambda _settings: dict(NOWHERE))
    worker_app.warm_reply_producer()
    assert len(fresh_producers) == 1
    warmed = next(iter(fresh_producers.values()))
    assert producer_module.shared_producer(get_settings()) is warmed


@pytest.mark.parametrize("pool", ["gevent", "solo", "threads", "eventlet"])
def test_a_pool_running_tasks_in_the_worker_process_warms_it_there(pool):
    assert not worker_app._forks_children(_Worker(pool))


@pytest.mark.parametrize("pool", ["prefork", None])
def test_a_prefork_parent_leaves_the_producer_to_its_children(pool):
    # The parent's handle would be copied by fork() and never used: each child makes its own at process init.
    assert worker_app._forks_children(_Worker(pool))


def test_a_prefork_child_warms_its_own_producer_at_process_init(monkeypatch, fresh_producers):
    import models

    monkeypatch.setattr(models, "bind_database", lambda _settings: None)
    monkeypatch.setattr(producer_module, "producer_config", lambda _settings: dict(NOWHERE))
    worker_app._bind_child()
    assert len(fresh_producers) == 1


def test_a_producer_that_cannot_be_made_is_a_warning_not_a_failed_worker(monkeypatch, fresh_producers, caplog):
    monkeypatch.setattr(producer_module, "producer_config", lambda _settings: {**NOWHERE, "no.such.option": "1"})
    with caplog.at_level(logging.WARNING, logger="tasks"):
        worker_app.warm_reply_producer()
    assert not fresh_producers
    assert "Kafka reply producer not made at start" in caplog.text


@pytest.mark.integration
def test_a_warmed_producer_has_its_producer_id_before_any_reply_is_sent(
    kafka_broker, monkeypatch, fresh_producers, caplog
):
    from messaging.config import producer_config

    monkeypatch.setattr(producer_module, "producer_config", lambda s: {**producer_config(s), "debug": "eos"})
    with caplog.at_level(logging.DEBUG, logger="kafka_relay.librdkafka"):
        worker_app.warm_reply_producer()
        producer = next(iter(fresh_producers.values()))
        # The debug lines are queued by librdkafka's callbacks and written when the producer is served.
        services.wait_until(
            lambda: producer._serve() == 0 and "Acquired PID" in caplog.text, 15, "the warmed producer's id"
        )
    assert len(producer._producer) == 0  # nothing was produced: the id came from the warm-up alone
