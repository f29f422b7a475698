"""Hand a batch of requests to their Celery tasks, then wait once for the broker's confirms of all of them.

With `confirm_publish` kombu waits for RabbitMQ's confirm of each message before it sends the next: a round trip
per request. The relay publishes a whole batch on a channel of its own in confirm mode, then reads the confirms
together (RabbitMQ acknowledges many delivery tags in one frame). A request counts as handed over only once its
confirm arrived; one nacked, unconfirmed by the deadline, or on a connection that failed is handed over again
(the relay rewinds its partition to it), as a failed publish always was. Brokers without publisher confirms
(Redis) are sent to one message at a time, as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kombu import Connection, Producer

log = logging.getLogger("kafka_relay")

# Publishes one task message with the producer given (None: Celery's own pool); kombu retries if True.
Send = Callable[[Producer | None, bool], Any]


class HandOverError(Exception):
    """The message could not be published: it is not handed over."""


class BatchHandOver:
    """One AMQP connection and channel in confirm mode, owned by the relay's single thread."""

    def __init__(self, app: Any, confirm_timeout_s: float) -> None:
        self.app = app
        self.confirm_timeout_s = confirm_timeout_s
        self.confirmed_publishing = bool(app.conf.broker_transport_options.get("confirm_publish")) and (
            app.connection_for_write().transport.driver_type == "amqp"  # lazy: nothing is connected here
        )
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._next_tag = 1  # RabbitMQ numbers a confirm-mode channel's publishes 1, 2, … (delivery tags)
        self._base = 0  # publishes on earlier connections: a tag here is this plus the channel's delivery tag
        self._pending: set[int] = set()
        self._refused: set[int] = set()
        self._broken = False

    def publish(self, send: Send) -> int | None:
        """Publish one message; its delivery tag to confirm (None when the broker confirms nothing)."""
        if not self.confirmed_publishing:
            send(None, True)  # as Celery publishes: kombu retries and returns once the broker took it
            return None
        if self._broken:
            raise HandOverError("the broker connection of this batch failed")
        try:
            # No kombu retry: a reconnect would renumber the channel's delivery tags under the batch.
            send(self._confirming_producer(), False)
        except Exception as exc:
            self._broken = True
            if self._pending:
                raise HandOverError(f"{type(exc).__name__}: {exc}") from exc
            # Nothing of this batch is waiting on the old connection (it may have died idle): one fresh try.
            log.info("broker connection replaced after %s: %s", type(exc).__name__, exc)
            self.reset()
            try:
                send(self._confirming_producer(), False)
            except Exception as again:
                self._broken = True
                raise HandOverError(f"{type(again).__name__}: {again}") from again
        tag = self._base + self._next_tag
        self._next_tag += 1
        self._pending.add(tag)
        return tag

    def confirm(self) -> set[int]:
        """Wait (bounded) for the confirms of everything published since the last call; the tags not confirmed."""
        deadline = time.monotonic() + self.confirm_timeout_s
        while self._pending and not self._broken:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("%d publishes not confirmed within %.1f s", len(self._pending), self.confirm_timeout_s)
                self._broken = True  # a late confirm must not be counted against the next batch's tags
                break
            try:
                assert self._connection is not None
                self._connection.drain_events(timeout=left)
            except TimeoutError:
                continue
            except Exception as exc:
                log.error("broker connection lost while waiting for confirms: %s: %s", type(exc).__name__, exc)
                self._broken = True
        failed = self._refused | self._pending
        self._pending, self._refused = set(), set()
        if self._broken:
            self.reset()
        return failed

    def reset(self, graceful: bool = False) -> None:
        """Drop the connection (a new one, its delivery tags from 1 again, is made on the next publish). Not
        gracefully unless asked: AMQP's close handshake waits without a bound on a broker that stopped answering."""
        connection, self._connection, self._producer = self._connection, None, None
        self._base += self._next_tag - 1  # tags stay unique across connections: a batch may span two
        self._next_tag, self._broken = 1, False
        if connection is not None:
            try:
                connection.close() if graceful else connection.collect()
            except Exception as exc:  # already gone: nothing to release
                log.debug("closing the old broker connection: %s", exc)

    def close(self) -> None:
        """The relay stops: close a healthy connection properly."""
        self.reset(graceful=not self._broken)

    def _confirming_producer(self) -> Producer:
        if self._producer is None:
            # A connection of its own, without kombu's wait after each publish (confirm mode is set here instead).
            connection = self.app.connection_for_write(transport_options={"confirm_publish": False})
            try:
                channel = connection.default_channel
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
            except Exception:
                connection.collect()  # never stored: released here
                raise
            self._connection, self._producer = connection, Producer(channel)
        return self._producer

    def _settled(self, delivery_tag: int, multiple: bool) -> set[int]:
        tag = self._base + delivery_tag
        done = {t for t in self._pending if self._base < t <= tag} if multiple else {tag} & self._pending
        self._pending -= done
        return done

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settled(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        refused = self._settled(delivery_tag, multiple)
        log.error("the broker refused %d published requests", len(refused))
        self._refused |= refused
