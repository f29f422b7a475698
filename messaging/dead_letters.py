"""Dead letters (`<topic>-dlq`): read them, and send them back to their topic after a fix. The `payments dlq`
commands and the operator page's replay both use these functions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from messaging.config import common_config, dlq_topic, producer_config
from settings import get_settings

# How long a read or a send waits for Kafka, in seconds.
KAFKA_WAIT_S = 10
FLUSH_S = 30


def dead_letters(topic: str) -> list[Any]:
    """Every message of `<topic>-dlq`, read from the start without committing anything."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    settings = get_settings()
    name = dlq_topic(topic)
    consumer = Consumer(
        {**common_config(settings), "group.id": f"{settings.kafka_group}-cli", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(name, timeout=KAFKA_WAIT_S)
        partitions = metadata.topics[name].partitions if name in metadata.topics else {}
        found = []
        for partition in sorted(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=KAFKA_WAIT_S)
            if high <= low:
                continue
            consumer.assign([TopicPartition(name, partition, OFFSET_BEGINNING)])
            while True:
                message = consumer.poll(KAFKA_WAIT_S)
                if message is None or message.error():
                    break
                found.append(message)
                offset = message.offset()
                if offset is None or offset >= high - 1:  # None never comes with a message that is not an error
                    break
        return found
    finally:
        consumer.close()


def headers_of(message: Any) -> dict[str, bytes]:
    return {k: v for k, v in (message.headers() or [])}


def replay(topic: str, messages: Iterable[Any]) -> list[str]:
    """Send dead letters back to `topic` (their own headers less the dead-letter ones, and where they were replayed
    from); returns the `partition:offset` of each that could not be sent."""
    from confluent_kafka import Producer

    producer = Producer(producer_config(get_settings()))
    failed: list[str] = []
    for message in messages:
        # produce() takes the wider header type (a list is invariant), hence the annotation.
        headers: list[tuple[str, str | bytes | None]] = [
            (k, v) for k, v in headers_of(message).items() if not k.startswith(("dlq-", "kafka_dlt-"))
        ]
        headers.append(("dlq-replayed-from", f"{message.topic()}[{message.partition()}]@{message.offset()}".encode()))

        def delivered(err: Any, _msg: Any, where: str = f"{message.partition()}:{message.offset()}") -> None:
            if err is not None:
                failed.append(where)

        producer.produce(topic, value=message.value(), key=message.key(), headers=headers, on_delivery=delivered)
    unsent = producer.flush(FLUSH_S)
    if unsent:
        failed.append(f"{unsent} not delivered in {FLUSH_S} s")
    return failed


def replay_all(topic: str) -> tuple[int, list[str]]:
    """Every dead letter of `topic` sent back to it: (how many were read, those that failed)."""
    found = dead_letters(topic)
    return len(found), replay(topic, found)
