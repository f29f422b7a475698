"""The relay: consume the request topics, hand each valid request to its Celery task, answer poison itself.

At-least-once, nothing lost: an offset is stored only once its message is handed over — the task's publish
confirmed by the Celery broker, or the poison message's error reply and dead-letter copy acknowledged by Kafka.
A failed hand-over rewinds its partition to that message. The relay never waits for a task: the worker that runs
it publishes the reply, so the relay's pace does not depend on Stripe's.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from doors.platform import translate
from kafka_relay.handover import BatchHandOver
from messaging import wire
from messaging.config import consumer_config, ensure_topics, librdkafka_log, producer_config
from messaging.producer import Delivery, ReplyProducer
from observability import metrics
from observability.logs import log_context, reset_log_context
from registry import OPERATIONS
from settings import Settings
from tasks.app import app as celery_app
from tasks.operations import TASKS

log = logging.getLogger("kafka_relay")

POLL_TIMEOUT_S = 0.2  # how long a stop request may wait for the consumer to come back
REWIND_PAUSE_S = 1.0  # after a failed hand-over, before its partition is read again


class HandOverFailed(Exception):
    """A request could not be handed over (Celery broker down, reply queue full): it will be read again."""


@dataclass
class PartitionProgress:
    """What a batch did with one partition's messages, in offset order."""

    handled: list[tuple[int, list[Delivery]]] = field(default_factory=list)
    failed_at: int | None = None  # first offset not handed over; nothing after it counts
    published: list[tuple[int, int]] = field(default_factory=list)  # (offset, delivery tag) awaiting the confirm

    def unconfirmed(self, refused: set[int]) -> None:
        """The broker did not confirm these tags: the partition is handed over again from the first of them."""
        for offset, tag in self.published:
            if tag in refused:
                self.failed_at = offset if self.failed_at is None else min(self.failed_at, offset)
                return

    def settle(self) -> tuple[int | None, int | None]:
        """(offset to store, offset to rewind to): stored only past messages handed over without a gap."""
        next_offset, failed_at = None, self.failed_at
        for offset, deliveries in self.handled:
            if failed_at is not None and offset >= failed_at:
                break  # handed over after one that was not (its publish unconfirmed): read again with it
            if any(d.failed for d in deliveries):
                failed_at = offset
                break
            for delivery in deliveries:
                if delivery.undeliverable:
                    log.error("%s refused for good, not retried: %s", delivery.record.topic, delivery.reason)
            next_offset = offset + 1
        return next_offset, failed_at


class Relay:
    """One consumer in the KAFKA_GROUP group, with its producer for the error replies it writes itself."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = list(OPERATIONS)
        self.consumer = Consumer(consumer_config(settings), logger=librdkafka_log)
        self.producer = ReplyProducer(producer_config(settings))
        self.handover = BatchHandOver(celery_app, settings.kafka_delivery_timeout_s)
        self.stopping = False

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Signal handler: finish the message at hand, then stop."""
        log.info("stop requested (%s)", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> None:
        """Consume until a stop is requested, then close cleanly."""
        ensure_topics(self.settings)
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("relay consuming %d topics as group %s", len(self.topics), self.settings.kafka_group)
        try:
            while not self.stopping:
                # consume() waits out its timeout until the batch fills: wait for one, then take what is there.
                first = self.consumer.poll(POLL_TIMEOUT_S)
                messages = [first] if first is not None else []
                if first is not None and self.settings.kafka_consume_batch > 1:
                    messages += self.consumer.consume(self.settings.kafka_consume_batch - 1, 0)
                if messages:
                    self.handle_batch(messages)
        finally:
            self.close()

    def close(self) -> None:
        """Flush what is queued, then leave the group; closing commits the stored offsets."""
        left = self.producer.flush(self.settings.kafka_delivery_timeout_s)
        self.handover.close()
        self.consumer.close()
        log.info("relay stopped (%d messages left unflushed)", left)

    def handle_batch(self, messages: list[Message]) -> None:
        """Hand over each message, then store offsets up to the first one that was not handed over."""
        progress: dict[tuple[str, int], PartitionProgress] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._log_consumer_error(error)
                continue
            if self.stopping:
                break  # the rest is read again by whoever consumes next
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                # librdkafka sets all three on every message that is not an error: none to hand over or store.
                log.error("consumer: a message without topic, partition or offset, skipped")
                continue
            state = progress.setdefault((topic, partition), PartitionProgress())
            if state.failed_at is not None:
                continue
            try:
                state.handled.append((offset, self.handle(message, state, offset)))
            except HandOverFailed:
                state.failed_at = offset
        # The batch's publishes are confirmed together: a request counts as handed over only once confirmed.
        refused = self.handover.confirm()
        for (topic, partition), state in progress.items():
            state.unconfirmed(refused)
            for offset, _tag in state.published:
                if state.failed_at is None or offset < state.failed_at:
                    log.debug("request %s[%d]@%d handed over", topic, partition, offset)
        deliveries = [d for state in progress.values() for _, ds in state.handled for d in ds]
        self.producer.wait(deliveries, time.monotonic() + self.settings.kafka_delivery_timeout_s)
        self._store_and_rewind(progress)
        if self.producer.fatal_error is not None:
            # A fenced or failed idempotent producer refuses every later send: the rewound messages need a new one.
            self.producer.retire()
            self.producer = ReplyProducer(producer_config(self.settings))

    def _store_and_rewind(self, progress: dict[tuple[str, int], PartitionProgress]) -> None:
        to_store, to_rewind = [], []
        for (topic, partition), state in progress.items():
            next_offset, failed_at = state.settle()
            if next_offset is not None:
                to_store.append(TopicPartition(topic, partition, next_offset))
            if failed_at is not None:
                to_rewind.append(TopicPartition(topic, partition, failed_at))
        try:
            if to_store:
                self.consumer.store_offsets(offsets=to_store)
            for position in to_rewind:
                self.consumer.seek(position)
        except KafkaException as exc:
            # Partitions taken away meanwhile: their next owner reads from the last commit.
            log.warning("offsets not stored or rewound: %s", exc)
        if to_rewind and not self.stopping:
            log.warning("rewound %d partitions to messages not handed over", len(to_rewind))
            time.sleep(REWIND_PAUSE_S)

    def _platform_dialect(self, raw_key: bytes | None, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        # The message key tells the platform's own services apart (they key every message in one shape).
        key = raw_key.decode("utf-8", "replace") if raw_key else None
        return translate(topic, payload, self.settings, message_key=key)

    def handle(self, message: Message, state: PartitionProgress, offset: int) -> list[Delivery]:
        """Hand one message over: a request to its task, poison to its error reply and dead-letter copy."""
        try:
            request = wire.decode_request(message, functools.partial(self._platform_dialect, message.key()))
        except wire.PoisonMessage as poison:
            return self._dead_letter(message, poison)
        tokens = log_context(trace_id=request.trace_id, operation=request.operation)
        task = TASKS[request.operation]
        try:
            # The broker confirms the publish (confirm_publish), for the whole batch at once (handle_batch).
            # The reply goes over Kafka: no result is stored, and the relay subscribes to none.
            with metrics.track(request.operation, "kafka", "door"):
                tag = self.handover.publish(
                    lambda producer, retry: task.apply_async(
                        args=[request.payload, request.meta], ignore_result=True, producer=producer, retry=retry
                    )
                )
            if tag is None:
                log.debug("request %s[%d]@%d handed over", message.topic(), message.partition(), offset)
            else:
                state.published.append((offset, tag))
            return []
        except Exception as exc:
            log.error("request not handed over to the Celery broker: %s: %s", type(exc).__name__, exc)
            raise HandOverFailed from exc
        finally:
            reset_log_context(tokens)

    def _dead_letter(self, message: Message, poison: wire.PoisonMessage) -> list[Delivery]:
        tokens = log_context(trace_id=poison.trace_id, operation=message.topic())
        try:
            log.warning(
                "poison message %s[%d]@%d (%s): %s",
                message.topic(),
                message.partition(),
                message.offset(),
                poison.reason,
                poison.error.message,
            )
            deadline = time.monotonic() + self.settings.kafka_delivery_timeout_s
            records = [wire.dlq_record(message, poison)]
            if poison.reply is not None:
                envelope = {"error": poison.error.to_error()}
                records.append(wire.reply_record(envelope, poison.reply, poison.trace_id, raw_key=message.key()))
            deliveries = [self.producer.produce(record, deadline) for record in records]
            metrics.OPERATIONS.labels(message.topic(), "kafka", poison.error.code).inc()
            if any(d.done and d.failed for d in deliveries):
                raise HandOverFailed
            return deliveries
        finally:
            reset_log_context(tokens)

    def _log_consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            log.info("consumer: %s", error.str())  # a request topic not created yet: nothing to read there
        elif error.fatal():
            raise KafkaException(error)
        else:
            log.warning("consumer: %s", error.str())

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked: %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions))


def main() -> None:
    """`python -m kafka_relay`: run the relay until SIGTERM or SIGINT."""
    from observability.logs import configure_logging
    from observability.metrics import serve_metrics
    from observability.sentry import init_sentry
    from settings import get_settings

    settings = get_settings()
    configure_logging(settings, "relay")
    init_sentry(settings, "relay")
    serve_metrics(settings.metrics_port)
    log_context(door="kafka")
    relay = Relay(settings)
    signal.signal(signal.SIGTERM, relay.request_stop)
    signal.signal(signal.SIGINT, relay.request_stop)
    relay.run()
