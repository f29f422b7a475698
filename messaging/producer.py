"""The door's idempotent producer: one per process, produce with a delivery report, wait without blocking gevent.

Every call into the librdkafka handle (produce, poll, flush) holds one lock, and only one poller per producer serves
its delivery reports. The binding keeps the state of a call into a handle per OS thread: under Celery's gevent pool
all greenlets share one thread, so two greenlets inside poll() at once (one parked in a callback that yielded)
abort the worker (`CallState_get: Assertion cs != NULL failed`). The poller is a thread, which monkey patching
makes a greenlet; waiters sleep on their Delivery's event (gevent's under monkey patching, so others run meanwhile).
Callbacks never yield: they only set fields and events and queue log lines, written once the call is over.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from messaging.config import librdkafka_log, producer_config
from messaging.wire import Record
from settings import Settings

log = logging.getLogger("kafka_relay")

POLL_INTERVAL_S = 0.001  # between polls while messages are outstanding
IDLE_POLL_S = 1.0  # between polls with nothing outstanding: errors and log lines still get served
POLL_FAILED_PAUSE_S = 0.1
WAIT_SLICE_S = 1.0  # how often a waiter makes sure a poller is serving
LOG_BACKLOG = 10_000  # queued log lines kept at most (the oldest go first) should writing them ever stall
# Errors that no retry of the same record can cure; any other failure is worth sending again.
UNDELIVERABLE = {
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._INVALID_ARG,
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
}
# The broker no longer accepts this producer's id, epoch or sequence, and librdkafka does not always raise a fatal
# error for it (Tansu answers PRODUCER_FENCED to every send after librdkafka bumped the epoch on a message
# timeout): a delivery failing with one of these makes the producer be replaced, as a fatal error does.
PRODUCER_STATE_LOST = {
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError.INVALID_PRODUCER_ID_MAPPING,
    KafkaError._FENCED,
}

LogLine = tuple[logging.Logger, int, str, tuple[Any, ...]]
# produce()'s partition when the record names none: librdkafka's partitioner chooses (RD_KAFKA_PARTITION_UA).
ANY_PARTITION = -1


class Delivery:
    """The broker's answer for one produced record (its on_delivery callback)."""

    __slots__ = ("_answered", "done", "error", "record")

    def __init__(self, record: Record) -> None:
        self.record = record
        self.done = False
        self.error: KafkaError | None = None
        # Looked up now, not at import: under `celery -P gevent` it is gevent's Event, and waiting on it yields.
        self._answered = threading.Event()

    def __call__(self, error: KafkaError | None, _message: Message | None = None) -> None:
        # Runs inside poll(): sets fields and wakes the waiter, nothing that could switch greenlets.
        self.error, self.done = error, True
        self._answered.set()

    def wait_until(self, deadline: float) -> bool:
        """Block (yielding, under gevent) until the answer is in or `deadline` passes; True if it is in."""
        return self.done or self._answered.wait(max(0.0, deadline - time.monotonic()))

    @property
    def acknowledged(self) -> bool:
        return self.done and self.error is None

    @property
    def undeliverable(self) -> bool:
        """Refused for good (no such partition, too large): sending it again cannot help."""
        return self.error is not None and self.error.code() in UNDELIVERABLE

    @property
    def reason(self) -> str:
        """Why it is not acknowledged, as librdkafka says it, or that no answer came in time."""
        return self.error.str() if self.error is not None else "no acknowledgement in time"

    @property
    def failed(self) -> bool:
        """Not acknowledged, for a reason a later attempt may not have."""
        return not self.acknowledged and not self.undeliverable


class _QueuedLog:
    """librdkafka's `logger`, called inside poll(): it queues each line, written once the call is over."""

    __slots__ = ("_lines", "_logger")

    def __init__(self, logger: logging.Logger, lines: deque[LogLine]) -> None:
        self._logger, self._lines = logger, lines

    def log(self, level: int, msg: str, *args: Any) -> None:
        # deque.append never yields; a logging call could (a contended handler lock, Sentry's HTTP).
        self._lines.append((self._logger, level, msg, args))


class ReplyProducer:
    """An idempotent producer whose sends are confirmed one by one, cooperatively, by one poller."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.fatal_error: KafkaError | None = None
        # Held around every call into the handle: the binding's per-OS-thread call state allows one at a time.
        self._lock = threading.Lock()
        self._log_lines: deque[LogLine] = deque(maxlen=LOG_BACKLOG)
        self._wake = threading.Event()
        self._poller: threading.Thread | None = None
        self._poller_guard = threading.Lock()  # starting the poller, and its leaving once retired
        self._retired = False
        self._closed = False
        self._producer = Producer(
            {**config, "error_cb": self._on_error}, logger=_QueuedLog(librdkafka_log, self._log_lines)
        )

    def _on_error(self, error: KafkaError) -> None:
        # Runs inside poll(): note the error, log it once the call is over.
        if error.fatal():
            # The idempotent producer cannot go on (e.g. its sequence was lost): the next send makes a new one.
            self.fatal_error = error
            self._log_lines.append((log, logging.ERROR, "Kafka producer failed for good: %s", (error.str(),)))
        else:
            self._log_lines.append((log, logging.WARNING, "Kafka producer: %s", (error.str(),)))

    def _write_log_lines(self) -> None:
        """Write what the callbacks queued, outside any call into librdkafka (writing may switch greenlets)."""
        while self._log_lines:
            try:
                logger, level, msg, args = self._log_lines.popleft()
            except IndexError:  # another writer took the last one
                return
            logger.log(level, msg, *args)

    def _serve(self) -> int:
        """Serve what librdkafka has for us (reports, errors, log lines); returns how many messages are left."""
        with self._lock:
            self._producer.poll(0)
            outstanding = len(self._producer)
        self._write_log_lines()
        return outstanding

    def _run_poller(self) -> None:
        while not self._closed:
            self._wake.clear()  # before serving: a kick from now on is seen by the wait below
            try:
                outstanding = self._serve()
            except Exception:
                log.exception("Kafka producer poll failed")
                self._wake.wait(POLL_FAILED_PAUSE_S)
                continue
            if outstanding:
                time.sleep(POLL_INTERVAL_S)
            elif self._retired:
                with self._poller_guard:
                    if not self._wake.is_set():  # a late send on this producer kicked us: serve it first
                        self._poller = None
                        return
            else:
                self._wake.wait(IDLE_POLL_S)

    def _kick(self) -> None:
        """Have the poller serve now; start it if there is none (first use, or it left once retired)."""
        self._wake.set()  # before the check: a retired poller seeing it stays (see _run_poller)
        with self._poller_guard:
            if self._closed or (self._poller is not None and self._poller.is_alive()):
                return
            # A thread, and so a greenlet of its own under gevent's monkey patching.
            self._poller = threading.Thread(target=self._run_poller, name="kafka-reply-poller", daemon=True)
            self._poller.start()

    def produce(self, record: Record, deadline: float) -> Delivery:
        """Queue a record; while librdkafka's queue is full, let the poller make room until `deadline`."""
        delivery = Delivery(record)
        partition = ANY_PARTITION if record.partition is None else record.partition
        # produce() takes the wider header type (a list is invariant): the same pairs, in a list of that type.
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        queue_was_full = False
        while True:
            try:
                with self._lock:
                    self._producer.produce(
                        record.topic,
                        value=record.value,
                        key=record.key,
                        headers=headers,
                        on_delivery=delivery,
                        partition=partition,
                    )
                self._kick()
                return delivery
            except BufferError:
                if not queue_was_full:
                    queue_was_full = True
                    log.debug("producer queue full: serving delivery reports to make room")
                if time.monotonic() >= deadline:
                    delivery(KafkaError(KafkaError._QUEUE_FULL))
                    return delivery
                self._kick()
                time.sleep(POLL_INTERVAL_S)
            except KafkaException as exc:
                delivery(exc.args[0])
                return delivery

    def wait(self, deliveries: Iterable[Delivery], deadline: float) -> bool:
        """Wait until every report is in or `deadline` passes; True if all are in."""
        deliveries = list(deliveries)
        try:
            pending = [d for d in deliveries if not d.done]
            if pending:
                self._kick()
            for delivery in pending:
                while not delivery.wait_until(min(deadline, time.monotonic() + WAIT_SLICE_S)):
                    if time.monotonic() >= deadline:
                        return all(d.done for d in pending)
                    self._kick()  # a poller killed meanwhile (an exception from a signal handler) is started again
            return True
        finally:
            self._note_lost_state(deliveries)

    def _note_lost_state(self, deliveries: list[Delivery]) -> None:
        errors = (d.error for d in deliveries if d.error is not None)
        lost = next((e for e in errors if e.code() in PRODUCER_STATE_LOST), None)
        if lost is not None and self.fatal_error is None:
            self.fatal_error = lost
            log.error("Kafka producer state lost (%s): a new producer takes over", lost.str())

    def deliver(self, record: Record, timeout_s: float) -> Delivery:
        """Produce one record and wait for the broker's acknowledgement, at most `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        delivery = self.produce(record, deadline)
        self.wait([delivery], deadline)
        return delivery

    def flush(self, timeout_s: float) -> int:
        """Deliver everything queued (blocking: for the relay's shutdown); returns how many are left."""
        with self._lock:
            left = self._producer.flush(timeout_s)
        self._write_log_lines()
        return left

    def retire(self) -> None:
        """This process has a new producer: keep serving this one's outstanding reports, then let it go."""
        self._retired = True
        self._kick()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the poller (flush first to deliver what is queued); reports still due are never served."""
        with self._poller_guard:
            self._closed = True
            poller = self._poller
        self._wake.set()
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout_s)


_lock = threading.Lock()
_shared: dict[int, ReplyProducer] = {}


def shared_producer(settings: Settings) -> ReplyProducer:
    """This process's producer, made on first use (a forked child makes its own)."""
    pid = os.getpid()
    with _lock:
        producer = _shared.get(pid)
        if producer is None or producer.fatal_error is not None:
            if producer is not None:
                # Its own poller drains it and stops; the new one has its own handle, lock and poller.
                producer.retire()
            # A parent's entry stays: destroying a librdkafka handle copied by fork() may hang on its threads.
            producer = _shared[pid] = ReplyProducer(producer_config(settings))
        return producer
