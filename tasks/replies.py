"""Where a task's final envelope goes besides the Celery result: the Kafka reply, when the request came over Kafka.

`meta["reply"]` is set by the Kafka relay: `{"topic", "key", "headers"}`. The reply is produced by the
worker (an idempotent producer) before the task is acknowledged, so a crash can only repeat it.
"""

from __future__ import annotations

from typing import Any


def deliver(envelope: dict[str, Any], meta: dict[str, Any]) -> None:
    """Send the envelope to where the request asked for its answer (nothing to do for REST)."""
    reply = meta.get("reply")
    if not reply:
        return
    from kafka_relay.replies import publish_reply  # only workers that serve Kafka load the producer

    publish_reply(envelope, meta)
