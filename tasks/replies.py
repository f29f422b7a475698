"""Where a task's final envelope goes besides the Celery result: the REST door's reply channel, or the Kafka reply.

`meta["reply"]` is set by a door. The REST door's is `{"channel", "id"}` (doors/dispatch.py); the Kafka relay's is
`{"topic", "key", "headers"}`, produced by the worker (an idempotent producer) before the task is acknowledged, so
a crash can only repeat it.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

import redis

from domain.answers import widen_envelope
from settings import get_settings

log = logging.getLogger("tasks")


@functools.cache
def _rest_client() -> redis.Redis:
    """One Redis client (and connection pool) per worker process for the REST replies."""
    return redis.Redis.from_url(get_settings().result_backend, socket_keepalive=True)


def deliver(envelope: dict[str, Any], meta: dict[str, Any], operation: str | None = None) -> None:
    """Send the envelope to where the request asked for its answer (`operation`'s, named for its Kafka reply)."""
    reply = meta.get("reply")
    if not reply:
        return
    if "channel" in reply:
        _publish_rest(envelope, reply)  # the web process's door answers it in the platform's names too
        return
    from messaging.replies import publish_reply  # only workers that serve Kafka load the producer

    # The Kafka door's answer is written here: with the platform's field names beside ours.
    publish_reply(widen_envelope(operation, envelope) if operation else envelope, meta)


REST_RETRY_PAUSE_S = (0.05, 1.0)


def _publish_rest(envelope: dict[str, Any], reply: dict[str, Any]) -> None:
    """Publish until the waiting web process has it (one subscriber received it) or its caller gave up."""
    body = json.dumps({"id": reply["id"], "envelope": envelope})
    until = float(reply.get("until") or 0)
    pause = REST_RETRY_PAUSE_S[0]
    while True:
        try:
            # Pub/sub keeps nothing: 0 receivers means the web process is between subscriptions (Redis restarted).
            if _rest_client().publish(reply["channel"], body) > 0:
                return
            reason = "no subscriber"
        except Exception as exc:  # a Redis outage, or a misconfigured URL: never a task retried forever
            reason = type(exc).__name__
        if time.time() + pause >= until:
            # The caller has been answered 504 with its key; its retry replays the stored outcome.
            log.warning("REST reply not delivered (%s); the caller's retry replays it", reason)
            return
        time.sleep(pause)  # cooperative under the worker's gevent pool
        pause = min(REST_RETRY_PAUSE_S[1], pause * 2)
