"""The doors' shared stacks, one per run (tests/conftest.py loads this plugin): the Kafka door's Tansu broker, its
relay as a real process and a gateway-like client; the REST door under gunicorn. Shared by every folder that uses
them (tests/kafka_relay, tests/platform…): a fixture defined in two conftests would start a second broker.

The session's Celery worker (tests/conftest.py) publishes the replies, so it must start with KAFKA_BROKER
pointing at this run's Tansu. The variables are therefore set when this plugin is configured, before collection
and any test — and so before the worker fixture, whichever test module starts it first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from registry import OPERATIONS
from tests.api.conftest import Client, running_api
from tests.conftest import LOG_DIR, RUN
from tests.support import kafka, services

TANSU_PORT = services.free_port()
RELAY_METRICS_PORT = services.free_port()
PARTITIONS = 2
# Where a NestJS ClientKafka listens for the answers to its create-payment-intent and get-payment-intent sends.
NEST_REPLY_TOPICS = ["create-payment-intent.reply", "get-payment-intent.reply"]
KAFKA_ENV = {
    "KAFKA_BROKER": f"127.0.0.1:{TANSU_PORT}",
    "KAFKA_GROUP": f"vyp-test-{RUN}",
    "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
    "KAFKA_DELIVERY_TIMEOUT_S": "10",
    **{f"KAFKA_CONSUMER_OPT_{name.upper().replace('.', '_')}": value for name, value in kafka.FAST_CONSUMER.items()},
}


def pytest_configure(config: pytest.Config) -> None:
    import settings

    os.environ.update(KAFKA_ENV)
    settings.reload_settings()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """This run's Tansu, with the door's topics and the NestJS reply topics created."""
    from messaging.config import ensure_topics
    from settings import get_settings

    with kafka.tansu(TANSU_PORT, LOG_DIR / "tansu.log") as address:
        assert get_settings().kafka_broker == address
        ensure_topics(get_settings())
        admin = AdminClient({"bootstrap.servers": address})
        for future in admin.create_topics([NewTopic(t, PARTITIONS) for t in NEST_REPLY_TOPICS]).values():
            future.result(10)
        yield address


@pytest.fixture(scope="session")
def collector(kafka_broker: str) -> Iterator[kafka.Collector]:
    """Everything answered: every -response and -dlq topic and the NestJS reply topics."""
    topics = [t for op in OPERATIONS.values() for t in (op.response_topic, f"{op.name}-dlq")] + NEST_REPLY_TOPICS
    reader = kafka.Collector(kafka_broker, topics)
    yield reader
    reader.close()


@pytest.fixture(scope="session")
def gateway(kafka_broker: str, collector: kafka.Collector) -> kafka.Gateway:
    return kafka.Gateway(kafka_broker, collector)


@pytest.fixture(scope="session")
def relay_process(kafka_broker: str) -> Iterator[kafka.RelayProcess]:
    process = kafka.RelayProcess(LOG_DIR)
    yield process
    process.stop()
    process.kill()


@pytest.fixture()
def relay(relay_process: kafka.RelayProcess, worker: Any) -> kafka.RelayProcess:
    """The relay, running with the suite's settings (started once, restarted after a test stopped it)."""
    if not relay_process.running:
        relay_process.start({"METRICS_PORT": str(RELAY_METRICS_PORT)})
    return relay_process


@pytest.fixture()
def own_relay(relay_process: kafka.RelayProcess, worker, kafka_broker) -> Iterator[kafka.RelayProcess]:
    """The relay, stopped so that the test starts it its own way; stopped again afterwards."""
    relay_process.stop()
    yield relay_process
    relay_process.stop()


def fresh_outbox_reader(kafka_broker: str, topics: list[str]) -> kafka.Collector:
    """A reader of `topics` from the start (made first), with no earlier test's publisher leasing the outbox."""
    from messaging.config import ensure_topics
    from models import OutboxLease, OutboxPublisher, unit_of_work
    from settings import get_settings

    ensure_topics(get_settings(), topics)
    reader = kafka.Collector(kafka_broker, topics)
    with unit_of_work():
        OutboxLease.delete().execute()  # no lease of an earlier test's publisher stands in the way
        OutboxPublisher.delete().execute()
    return reader


@pytest.fixture(scope="session")
def api_url(worker: Any) -> Iterator[str]:
    with running_api("api.log") as base:
        yield base


@pytest.fixture()
def client(api_url: str) -> Client:
    return Client(api_url)


@pytest.fixture()
def anonymous(api_url: str) -> Client:
    return Client(api_url, key=None)
