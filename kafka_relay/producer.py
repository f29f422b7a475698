"""The door's idempotent producer: one per process, produce with a delivery report, wait without blocking gevent.

Waits poll librdkafka without blocking (`poll(0)`) and sleep 1 ms between polls: under Celery's gevent pool
`time.sleep` is gevent's (monkey-patched), so the other greenlets of the worker run meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kafka_relay.config import librdkafka_log, producer_config
from kafka_relay.wire import Record
from settings import Settings

log = logging.getLogger("kafka_relay")

POLL_INTERVAL_S = 0.001
# Errors that no retry of the same record can cure; any other failure is worth sending again.
UNDELIVERABLE = {
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._INVALID_ARG,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
}


class Delivery:
    """The broker's answer for one produced record (its on_delivery callback)."""

    __slots__ = ("done", "error", "record")

    def __init__(self, record: Record) -> None:
        self.record = record
        self.done = False
        self.error: KafkaError | None = None

    def __call__(self, error: KafkaError | None, _message: Message | None = None) -> None:
        self.error, self.done = error, True

    @property
    def acknowledged(self) -> bool:
        return self.done and self.error is None

    @property
    def undeliverable(self) -> bool:
        """Refused for good (no such partition, too large): sending it again cannot help."""
        return self.error is not None and self.error.code() in UNDELIVERABLE

    @property
    def failed(self) -> bool:
        """Not acknowledged, for a reason a later attempt may not have."""
        return not self.acknowledged and not self.undeliverable


class ReplyProducer:
    """An idempotent producer whose sends are confirmed one by one, cooperatively."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.fatal_error: KafkaError | None = None
        self._producer = Producer({**config, "error_cb": self._on_error}, logger=librdkafka_log)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            # The idempotent producer cannot go on (e.g. its sequence was lost): the next send makes a new one.
            self.fatal_error = error
            log.error("Kafka producer failed for good: %s", error.str())
        else:
            log.warning("Kafka producer: %s", error.str())

    def _pause(self) -> None:
        self._producer.poll(0)
        time.sleep(POLL_INTERVAL_S)

    def produce(self, record: Record, deadline: float) -> Delivery:
        """Queue a record; while librdkafka's queue is full, serve delivery reports until `deadline`."""
        delivery = Delivery(record)
        extra = {} if record.partition is None else {"partition": record.partition}
        queue_was_full = False
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=delivery,
                    **extra,
                )
                return delivery
            except BufferError:
                if not queue_was_full:
                    queue_was_full = True
                    log.debug("producer queue full: serving delivery reports to make room")
                if time.monotonic() >= deadline:
                    delivery(KafkaError(KafkaError._QUEUE_FULL))
                    return delivery
                self._pause()
            except KafkaException as exc:
                delivery(exc.args[0])
                return delivery

    def wait(self, deliveries: Iterable[Delivery], deadline: float) -> bool:
        """Serve delivery reports until every one is in or `deadline` passes; True if all are in."""
        pending = [d for d in deliveries if not d.done]
        while pending:
            if time.monotonic() >= deadline:
                return False
            self._pause()
            pending = [d for d in pending if not d.done]
        return True

    def deliver(self, record: Record, timeout_s: float) -> Delivery:
        """Produce one record and wait for the broker's acknowledgement, at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        delivery = self.produce(record, deadline)
        self.wait([delivery], deadline)
        return delivery

    def flush(self, timeout_s: float) -> int:
        """Deliver everything queued (blocking: for the relay's shutdown); returns how many are left."""
        return self._producer.flush(timeout_s)


_lock = threading.Lock()
_shared: dict[int, ReplyProducer] = {}


def shared_producer(settings: Settings) -> ReplyProducer:
    """This process's producer, made on first use (a forked child makes its own)."""
    pid = os.getpid()
    with _lock:
        producer = _shared.get(pid)
        if producer is None or producer.fatal_error is not None:
            _shared.clear()
            producer = _shared[pid] = ReplyProducer(producer_config(settings))
        return producer
