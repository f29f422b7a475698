"""The push feed: the payment events' `payment-status-changed` topic, read by the Socket.IO processes as one
consumer group. Each event is consumed by one process and emitted through Socket.IO's Redis queue, so it reaches
the sockets of every process.

The group's offsets are committed only after the push was handed to the queue: a process that dies hands its
partitions over and the next one pushes what it had not (at least once; a repeat carries the same `version`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from messaging.config import common_config, ensure_topics, off_the_hub
from settings import Settings

log = logging.getLogger("socket_door")

# How long a poll waits when nothing is there; the feed runs on its own native thread (librdkafka blocks).
POLL_S = 0.2
# Versions remembered per intent, to drop a redelivered event (LRU).
REMEMBERED_INTENTS = 50_000


def status_push(event: dict[str, Any]) -> dict[str, Any]:
    """The gateway's `payment-status-update` body from a `payment-status-changed` event.

    `status` speaks the gateway's dialect ("failed" for an attempt that failed, as its front ends expect);
    `intentStatus` is Stripe's status of the intent itself.
    """
    status = event["status"]
    failed = status == "requires_payment_method" and bool(event.get("errorCode"))
    return {
        "paymentIntentId": event["paymentIntentId"],
        "orderId": event.get("orderId"),
        "subscriptionId": event.get("subscriptionId"),
        "status": "failed" if failed else status,
        "intentStatus": status,
        "previousStatus": event.get("previousStatus"),
        "errorCode": event.get("errorCode"),
        "errorMessage": event.get("errorMessage"),
        "version": event.get("version"),
        "occurredAt": event.get("occurredAt"),
    }


# The statuses the gateway's Stripe webhook handler reports (payment_intent.processing, .succeeded, .payment_failed).
RESULT_STATUSES = frozenset({"processing", "succeeded", "failed"})


def status_result(push: dict[str, Any]) -> dict[str, Any] | None:
    """The gateway's `payment-status-update-result` body for a push, or None for a change it does not report.

    The gateway emits it to the intent's room on those three webhooks, with what its payments service answered:
    `{paymentIntentId, status, error}` (`error`: Stripe's last payment error's message, on `failed`), and the push's
    fields besides. Not `sessionId` nor `customerEmail`: the gateway echoed them from Stripe's metadata and receipt
    address; this service has no session and pushes no e-mail address. Its `payment-status-update-error` reported
    the gateway failing to record a webhook at the payments service (an unknown intent, a timeout): it has no
    counterpart here, where a push is a change already committed, so a declined payment is a `-result` with
    `status: "failed"`, as the gateway sends it.
    """
    if push["status"] not in RESULT_STATUSES:
        return None
    return {**push, "error": push["errorMessage"] if push["status"] == "failed" else None}


class StatusFeed:
    """Consumes the status topic in the sockets' group and calls `push(customer_id, body)` once per new version."""

    def __init__(self, settings: Settings, push: Callable[[str, dict[str, Any]], None]) -> None:
        self.settings = settings
        self.topic = settings.event_topics["payment-status-changed"]
        self.push = push
        # Plain flags, not events: librdkafka's rebalance callbacks run on the pool's native thread.
        self.assigned = False
        self.stopping = False
        self._versions: OrderedDict[str, int] = OrderedDict()
        # Where a partition the group never committed on starts: a little before this process did.
        self.started_ms = int((time.time() - 5) * 1000)

    def _config(self) -> dict[str, Any]:
        return {
            **common_config(self.settings),
            "group.id": f"{self.settings.kafka_group}-sockets",
            # A new group starts at the present: a browser cares about what happens from now on.
            "auto.offset.reset": "latest",
            "enable.auto.commit": True,
            **self.settings.kafka_consumer_options,
            # Stored only once the push is handed to the queue: a crash pushes it again rather than never.
            "enable.auto.offset.store": False,
        }

    def run(self) -> None:
        """The feed's loop, in a greenlet."""
        off_the_hub(ensure_topics, self.settings, [self.topic])
        consumer = Consumer(self._config())
        try:
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            while not self.stopping:
                message = off_the_hub(consumer.poll, POLL_S)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("status feed: %s", message.error().str())
                    continue
                if self._pushed(message):
                    consumer.store_offsets(message)  # committed only once it reached the queue
        finally:
            self.assigned = False
            # Commits what was stored and leaves the group: its partitions move to another process at once.
            off_the_hub(consumer.close)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A partition the group never committed on starts where the group started, not at the broker's end: an
        event written while it moved between processes is still pushed."""
        try:
            committed = consumer.committed(partitions, timeout=5)
            fresh = [TopicPartition(p.topic, p.partition, self.started_ms) for p in committed if p.offset < 0]
            starts = {}
            if fresh:  # every partition committed on already: they resume where the group left them
                starts = {(p.topic, p.partition): p.offset for p in consumer.offsets_for_times(fresh, timeout=5)}
            for partition in partitions:
                start = starts.get((partition.topic, partition.partition))
                if start is not None:
                    partition.offset = start if start >= 0 else OFFSET_END
        except KafkaException as exc:
            log.warning("status feed: start offsets not resolved (%s); the broker's end is used", exc)
        consumer.assign(partitions)
        log.info("status feed assigned %d partition(s)", len(partitions))
        self.assigned = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("status feed gives back %d partition(s)", len(partitions))

    def _pushed(self, message: Message) -> bool:
        """Push the event (or skip it: malformed, or already pushed); False only when stopping before it went out.
        A queue that does not take it is retried: a change is never marked consumed without its push."""
        try:
            event = json.loads(message.value() or b"")  # no value: malformed, like any JSON that is not an event
            customer, intent, version = event["customerId"], event["paymentIntentId"], int(event["version"])
            body = status_push(event)
        except (ValueError, KeyError, TypeError):
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            log.error("status feed: malformed event skipped at %s", where)
            return True
        if self._versions.get(intent, -1) >= version:
            return True  # a redelivery (or an older change arriving late): already pushed
        pause = 0.5
        while True:
            try:
                self.push(customer, body)
                break
            except Exception as exc:  # the queue (Redis) away: wait for it rather than lose the push
                if self.stopping:
                    return False
                log.warning("status feed: push not queued (%s); retrying", type(exc).__name__)
                time.sleep(pause)
                pause = min(5.0, pause * 2)
        self._versions[intent] = version
        self._versions.move_to_end(intent)
        while len(self._versions) > REMEMBERED_INTENTS:
            self._versions.popitem(last=False)
        log.info("pushed %s version %d (%s)", intent, version, event.get("status"))
        return True

    def run_forever(self) -> None:
        """`run`, started again after an unexpected failure (Kafka away is not one: librdkafka reconnects)."""
        while not self.stopping:
            try:
                self.run()
            except Exception:
                log.exception("status feed failed; starting it again")
                time.sleep(1)
