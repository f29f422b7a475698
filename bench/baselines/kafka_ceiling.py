"""The Kafka rig's own ceiling: a trivial responder answering every request topic straight from its consumer loop.

`python -m bench.baselines.kafka_ceiling` — the relay's librdkafka settings (settings.py, KAFKA_*OPT_*), no
validation, no Celery, no database: `{"kafkaResponseKey", "traceId", "response": {"ok": true}}` under the
request's key. What the broker and the clients cost per round trip, for W2 and R2 to be compared with.
"""

from __future__ import annotations

import json
import signal
from types import FrameType

from confluent_kafka import Consumer, Producer, TopicPartition

from messaging.config import consumer_config, ensure_topics, producer_config
from registry import OPERATIONS
from settings import get_settings

_stopping = False


def _stop(_signum: int, _frame: FrameType | None) -> None:
    global _stopping
    _stopping = True


def _assigned(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    # The orchestrator waits for this line before it sends anything.
    print(f"partitions assigned: {len(partitions)}", flush=True)


def main() -> None:
    settings = get_settings()
    ensure_topics(settings)
    consumer = Consumer({**consumer_config(settings), "enable.auto.offset.store": True})
    producer = Producer(producer_config(settings))
    consumer.subscribe(list(OPERATIONS), on_assign=_assigned)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not _stopping:
            for message in consumer.consume(settings.kafka_consume_batch, 0.2):
                if message.error() or message.key() is None:
                    continue
                try:
                    trace_id = json.loads(message.value()).get("traceId")
                except (ValueError, AttributeError):
                    trace_id = None
                body = {"kafkaResponseKey": message.key().decode(), "traceId": trace_id, "response": {"ok": True}}
                producer.produce(f"{message.topic()}-response", json.dumps(body).encode(), message.key())
                producer.poll(0)
            producer.poll(0)
    finally:
        producer.flush(10)
        consumer.close()


if __name__ == "__main__":
    main()
