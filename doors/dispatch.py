"""The one function a route calls: hand the operation to its Celery task and wait for the envelope.

With a Redis result store, the worker publishes the envelope on this web process's own Redis channel
(tasks/replies.py) and one subscriber per process hands it to the request waiting for it: no Celery result is
stored (nothing holding a client secret is left in Redis) and no request opens its own subscription. Without Redis
(an `rpc://` result backend) the door waits on the Celery result instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from typing import Any

import redis
from celery.exceptions import TimeoutError as ResultTimeout
from kombu.exceptions import OperationalError as BrokerUnavailable

from errors import OperationError
from registry import Operation
from settings import get_settings

log = logging.getLogger("api")

CHANNEL_PREFIX = "vyp-rest-replies"
# How long the subscriber blocks per read; a hung connection is found by the health check within this.
LISTEN_TIMEOUT_S = 1.0
RESUBSCRIBE_BACKOFF_S = (0.05, 2.0)
# A request dispatched before the subscription is confirmed could miss its reply: wait this long for it first.
READY_WAIT_S = 2.0


class _Waiter:
    __slots__ = ("envelope", "event")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.envelope: dict[str, Any] | None = None


class RestReplies:
    """This process's reply channel and its one subscriber (a greenlet under gunicorn's gevent workers)."""

    def __init__(self, url: str) -> None:
        self.channel = f"{CHANNEL_PREFIX}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.waiting: dict[str, _Waiter] = {}
        self.ready = threading.Event()
        self._closed = threading.Event()
        # Named, so an operator (and the tests) can tell the reply subscribers among Redis's clients.
        self._client = redis.Redis.from_url(
            url, health_check_interval=10, socket_keepalive=True, client_name=CHANNEL_PREFIX
        )
        threading.Thread(target=self._listen, name="rest-replies", daemon=True).start()

    def _listen(self) -> None:
        backoff = RESUBSCRIBE_BACKOFF_S[0]
        pubsub = self._client.pubsub()  # connects on its first command
        while not self._closed.is_set():
            try:
                if not pubsub.channels:  # never subscribed yet: a first SUBSCRIBE that failed left it empty
                    pubsub.subscribe(self.channel)
                message = pubsub.get_message(timeout=LISTEN_TIMEOUT_S)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self.ready.set()
                    backoff = RESUBSCRIBE_BACKOFF_S[0]
                elif message["type"] == "message":
                    self._hand_over(message["data"])
            except Exception as exc:  # the subscriber must outlive any Redis failure
                # On a dropped connection redis-py has already reconnected this pubsub and subscribed it again (or
                # will on the next read): keep reading it, since replacing it would leave that subscription unread
                # and its replies lost. Anything else: a new pubsub, the old one closed before the pause.
                if not isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                    _close(pubsub)
                    pubsub = self._client.pubsub()
                self._lost(exc, backoff)
                backoff = min(RESUBSCRIBE_BACKOFF_S[1], backoff * 2)
        _close(pubsub)

    def close(self) -> None:
        """Stop listening (within LISTEN_TIMEOUT_S); a web process keeps its channel for its lifetime."""
        self._closed.set()
        self.ready.clear()

    def _lost(self, exc: Exception, pause: float) -> None:
        self.ready.clear()
        # A reply Redis had not written out before the drop is lost: its caller gets 504 and replays with its key.
        log.warning("REST reply channel lost (%s); subscribing again", type(exc).__name__)
        self._closed.wait(pause)

    def _hand_over(self, data: bytes) -> None:
        try:
            body = json.loads(data)
            waiter = self.waiting.pop(body["id"], None)
        except (ValueError, KeyError, TypeError):
            log.error("malformed message on the REST reply channel ignored")
            return
        if waiter is not None:
            waiter.envelope = body.get("envelope")
            waiter.event.set()

    def expect(self) -> tuple[str, _Waiter]:
        """Register a request before it is dispatched, so its reply cannot arrive before anyone waits."""
        request_id = uuid.uuid4().hex
        waiter = self.waiting[request_id] = _Waiter()
        return request_id, waiter


def _close(pubsub: redis.client.PubSub) -> None:
    with contextlib.suppress(Exception):
        pubsub.close()


_replies: dict[int, RestReplies] = {}
_lock = threading.Lock()


def rest_replies() -> RestReplies | None:
    """This process's reply channel (a forked gunicorn worker makes its own), or None without a Redis store."""
    url = get_settings().result_backend
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    with _lock:
        replies = _replies.get(os.getpid())
        if replies is None:
            _replies.clear()
            replies = _replies[os.getpid()] = RestReplies(url)
    return replies


def _unavailable(why: str) -> OperationError:
    log.error("%s; request not accepted", why)
    return OperationError("service_unavailable", "The service cannot accept requests right now.")


def _timed_out(operation: Operation, caller_key: str | None) -> OperationError:
    details = {"idempotencyKey": caller_key} if caller_key else {}
    if operation.mutating:
        # The task may be calling Stripe right now: the caller cannot know whether money moved.
        return OperationError(
            "outcome_unknown",
            "No result in time and Stripe may have acted; the request goes on. Retry with the same Idempotency-Key "
            "(never a new one): the retry answers what happened.",
            details,
        )
    return OperationError("timeout", "No result in time. Retry the request.", details)


def run_operation(
    operation: Operation,
    payload: Any,
    *,
    trace_id: str,
    idempotency_key: str | None,
    caller_key: str | None = None,
    received_at: float | None = None,
    door: str = "rest",
    customer_scope: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """The task's envelope, or OperationError('timeout' | 'outcome_unknown' | 'service_unavailable').

    Any door of a web process uses it (REST, Socket.IO, the operator page); `customer_scope` limits the task to one
    customer's records; `actor` (the operator page's) names the operator in the ztracking causes the task writes.
    """
    from tasks.operations import TASKS

    timeout_s = get_settings().rest_timeout_ms / 1000
    meta: dict[str, Any] = {"traceId": trace_id, "idempotencyKey": idempotency_key, "door": door}
    if customer_scope is not None:
        meta["customerScope"] = customer_scope
    if actor is not None:
        meta["actor"] = actor
    if received_at is not None:
        meta["receivedAt"] = received_at
    replies = rest_replies()
    if replies is None:
        return _via_result_backend(operation, TASKS[operation.name], payload, meta, timeout_s, caller_key)
    deadline = time.monotonic() + timeout_s
    if not replies.ready.wait(min(READY_WAIT_S, timeout_s)):
        # Its answer could not reach this process: refuse before anything runs rather than charge and answer 504.
        raise _unavailable("REST reply channel not subscribed (Redis unreachable)")
    request_id, waiter = replies.expect()
    # `until` (epoch seconds): how long the worker keeps trying to reach this process with the answer.
    meta["reply"] = {"channel": replies.channel, "id": request_id, "until": time.time() + timeout_s}
    try:
        try:
            TASKS[operation.name].apply_async(args=[payload, meta], ignore_result=True)
        except BrokerUnavailable:
            raise _unavailable("Celery broker unavailable") from None
        if waiter.event.wait(max(0.0, deadline - time.monotonic())) and waiter.envelope is not None:
            return waiter.envelope
        raise _timed_out(operation, caller_key)
    finally:
        replies.waiting.pop(request_id, None)


def _via_result_backend(
    operation: Operation, task: Any, payload: Any, meta: dict[str, Any], timeout_s: float, caller_key: str | None
) -> dict[str, Any]:
    try:
        result = task.apply_async(args=[payload, meta])
    except BrokerUnavailable:
        raise _unavailable("Celery broker unavailable") from None
    try:
        return result.get(timeout=timeout_s, propagate=True)
    except ResultTimeout:
        raise _timed_out(operation, caller_key) from None
    finally:
        # Results can hold a client secret: delete it from the result store as soon as it is read.
        result.forget()
        # Stop listening for it now, in this greenlet, rather than in a finaliser at shutdown.
        with contextlib.suppress(Exception):
            result.backend.remove_pending_result(result)
