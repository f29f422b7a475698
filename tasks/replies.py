"""Where a task's final envelope goes besides the Celery result: the REST door's reply channel, or the Kafka reply.

`meta["reply"]` is set by a door. The REST door's is `{"channel", "id"}` (api/dispatch.py); the Kafka relay's is
`{"topic", "key", "headers"}`, produced by the worker (an idempotent producer) before the task is acknowledged, so
a crash can only repeat it.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import redis

from settings import get_settings

log = logging.getLogger("tasks")


@functools.cache
def _rest_client() -> redis.Redis:
    """One Redis client (and connection pool) per worker process for the REST replies."""
    return redis.Redis.from_url(get_settings().result_backend, socket_keepalive=True)


def deliver(envelope: dict[str, Any], meta: dict[str, Any]) -> None:
    """Send the envelope to where the request asked for its answer."""
    reply = meta.get("reply")
    if not reply:
        return
    if "channel" in reply:
        _publish_rest(envelope, reply)
        return
    from kafka_relay.replies import publish_reply  # only workers that serve Kafka load the producer

    publish_reply(envelope, meta)


def _publish_rest(envelope: dict[str, Any], reply: dict[str, Any]) -> None:
    body = json.dumps({"id": reply["id"], "envelope": envelope})
    try:
        _rest_client().publish(reply["channel"], body)
    except redis.RedisError as exc:
        # The caller is answered 504 with its key and replays the stored outcome; retrying here cannot reach it.
        log.warning("REST reply not published (%s); the caller's retry replays it", type(exc).__name__)
