"""The relay process itself: its topics, and what it does when the Celery broker does not take a request."""

from __future__ import annotations

import dataclasses
import signal
import time

import pytest
from confluent_kafka.admin import AdminClient

from messaging.config import door_topics, ensure_topics
from settings import get_settings
from tests.kafka_relay.conftest import KAFKA_ENV, PARTITIONS
from tests.support import kafka, services

pytestmark = pytest.mark.integration


def test_the_door_topics_exist_with_the_configured_partitions_and_creating_them_again_changes_nothing(kafka_broker):
    assert ensure_topics(get_settings()) == []
    topics = AdminClient({"bootstrap.servers": kafka_broker}).list_topics(timeout=10).topics
    assert {name: len(topics[name].partitions) for name in door_topics()} == dict.fromkeys(door_topics(), PARTITIONS)


def test_creating_topics_is_never_required_a_broker_out_of_reach_costs_a_bounded_wait():
    unreachable = dataclasses.replace(get_settings(), kafka_broker=f"127.0.0.1:{services.free_port()}")
    started = time.monotonic()
    assert ensure_topics(unreachable, timeout_s=1.0) == []
    # Bounded by its timeout, not by librdkafka's own (minutes): a margin a loaded 2-core machine keeps.
    assert time.monotonic() - started < 30


def test_a_request_the_celery_broker_did_not_confirm_is_not_committed_and_is_answered_after_a_restart(
    gateway, own_relay, kafka_broker
):
    topic = "get-refund"
    own_relay.start({"CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{services.free_port()}//"})
    key = gateway.send(topic, {"refundId": "vyre_missing"})
    gateway.flush()
    own_relay.wait_for_log("not handed over", 60)
    assert own_relay.running  # the relay waits and tries again; it does not skip the request
    assert own_relay.stop(signal.SIGINT) == 0
    assert "relay stopped" in own_relay.log_text()

    partition, offset = gateway.positions[key]
    assert kafka.committed_offsets(kafka_broker, KAFKA_ENV["KAFKA_GROUP"], topic, PARTITIONS)[partition] <= offset
    assert not gateway.collector.answered([key], f"{topic}-response")
    own_relay.start()
    assert gateway.reply(topic, key)["error"]["code"] == "not_found"
