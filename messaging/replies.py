"""The reply of a task that came over Kafka, published by the worker that ran it (tasks/replies.py calls it)."""

from __future__ import annotations

import logging
from typing import Any

from messaging.producer import shared_producer
from messaging.wire import reply_record
from settings import get_settings

log = logging.getLogger("kafka_relay")


class ReplyNotDelivered(Exception):
    """The broker did not acknowledge the reply in time: the task retries and its outcome replays."""


def publish_reply(envelope: dict[str, Any], meta: dict[str, Any]) -> None:
    """Publish the envelope to the request's reply destination; raise unless the broker acknowledged it."""
    settings = get_settings()
    record = reply_record(envelope, meta["reply"], str(meta.get("traceId") or ""))
    delivery = shared_producer(settings).deliver(record, settings.kafka_delivery_timeout_s)
    if delivery.undeliverable:
        # Retrying a record the broker refuses for good would retry forever; say so loudly instead.
        log.error("reply to %s can never be delivered: %s", record.topic, delivery.reason)
        return
    if delivery.failed:
        raise ReplyNotDelivered(f"reply to {record.topic} not delivered: {delivery.reason}")
    log.debug("reply published to %s", record.topic)
