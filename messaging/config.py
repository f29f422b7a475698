"""librdkafka settings of the door's clients, from settings.py, and the topics it creates at start."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from registry import OPERATIONS
from settings import Settings

log = logging.getLogger("kafka_relay")
librdkafka_log = logging.getLogger("kafka_relay.librdkafka")

CLIENT_ID = "vy-finance-payments"


def off_the_hub(call: Callable[..., Any], *args: Any) -> Any:
    """Run a librdkafka call that blocks in C on a native thread of gevent's pool when gevent runs the process (the
    result comes back to the calling greenlet), so one slow broker does not stop every other greenlet."""
    from gevent import get_hub, monkey

    if monkey.is_module_patched("socket"):
        return get_hub().threadpool.apply(call, args)
    return call(*args)


def dlq_topic(topic: str) -> str:
    """Where poison messages of a request topic are copied."""
    return f"{topic}-dlq"


def common_config(settings: Settings) -> dict[str, Any]:
    """What every client of the door shares: brokers, client id, and every KAFKA_OPT_* option."""
    return {
        # KAFKA_BROKER empty: the zero-setup local broker (`make run` starts it on LOCAL_KAFKA_PORT).
        "bootstrap.servers": settings.kafka_broker or f"127.0.0.1:{settings.local_kafka_port}",
        "client.id": CLIENT_ID,
        **settings.kafka_options,
    }


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The relay's consumer: group from KAFKA_GROUP, offsets stored by hand, committed in the background."""
    return {
        **common_config(settings),
        "group.id": settings.kafka_group,
        # A group's first start takes the requests already waiting, rather than only the next ones.
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        **settings.kafka_consumer_options,
        # At-least-once rests on this: the relay stores an offset only once its request is handed over.
        "enable.auto.offset.store": False,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    """The replies' producer: idempotent, and giving up on a message when its caller stops waiting for it."""
    return {
        **common_config(settings),
        "message.timeout.ms": int(settings.kafka_delivery_timeout_s * 1000),
        **settings.kafka_producer_options,
        # A send that librdkafka retries is written once.
        "enable.idempotence": True,
    }


def door_topics() -> list[str]:
    """Every topic of the door: each operation's request, response and dead-letter topic."""
    return [name for op in OPERATIONS.values() for name in (op.name, op.response_topic, dlq_topic(op.name))]


def ensure_topics(settings: Settings, names: list[str] | None = None, timeout_s: float = 10.0) -> list[str]:
    """Create missing topics (the door's by default) where the broker allows it; never required. Returns those
    created."""
    admin = AdminClient(common_config(settings), logger=librdkafka_log)
    partitions, replication = settings.kafka_topic_partitions, settings.kafka_topic_replication
    wanted = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication) for name in names or door_topics()
    ]
    try:
        futures = admin.create_topics(wanted, request_timeout=timeout_s, operation_timeout=timeout_s)
    except KafkaException as exc:
        log.warning("topics not created: %s", exc)
        return []
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                log.warning("topic %s not created: %s", name, exc.args[0].str())
        except FutureTimeout:
            log.warning("topic %s not created: no answer within %.0f s", name, timeout_s)
    if created:
        log.info("created %d topics with %d partitions", len(created), settings.kafka_topic_partitions)
    return created
