"""Drain the payment events outbox to Kafka, in order per intent, at least once.

The outbox is split into shards by intent; a publisher leases shards (`outbox_lease`) and only the lease holder
publishes a shard, in the order its events were written, with the idempotent producer, marking published what the
broker acknowledged. Each type has its own topics (ours and the PRD's, EVENT_TOPIC_*), so an intent's next event is
produced only once the one before it was acknowledged on every topic: a later event never reaches Kafka before an
earlier one, whichever partition fails. A row acknowledged on some of its topics only stays unpublished and goes out
whole again (the same eventId). Kafka down:
nothing is acknowledged, the events wait and go out when it is back. A publisher that dies keeps its leases until
they lapse; another takes its shards and sends again what was not marked (the same eventId, so a consumer drops the
repeat). Publishers share the shards evenly: each sees the others (`outbox_publisher`) and keeps its fair share.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import signal
import socket
import time
import uuid
from types import FrameType

from peewee import fn

from domain.payment_events import payload_for
from messaging.config import ensure_topics, producer_config
from messaging.producer import Delivery, ReplyProducer
from messaging.wire import Record
from models import OutboxLease, PaymentEvent, PaymentIntent, unit_of_work, utcnow, write_transaction
from models.payment_events import OutboxPublisher
from observability import metrics
from settings import Settings

log = logging.getLogger("event_publisher")

LEASE = dt.timedelta(seconds=15)  # a publisher that stops renewing (it renews every pass) loses its shards after this
IDLE_S = 0.2  # between passes with nothing to send
RENEW_EVERY = dt.timedelta(seconds=2)  # leases are renewed (and the shares looked at) this often, not every pass
FAILED_PAUSE_S = 1.0  # after a pass Kafka did not acknowledge
BACKLOG_EVERY_S = 5.0  # how often the backlog gauges are measured


class Publisher:
    """One publisher process: its leases, its producer, its loop."""

    def __init__(self, settings: Settings, owner: str | None = None) -> None:
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.producer = ReplyProducer(producer_config(settings))
        self.stopping = False
        self._measured = 0.0
        self._shards: list[int] = []
        self._renewed: dt.datetime | None = None

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        log.info("stop requested (%s)", signal.Signals(signum).name)
        self.stopping = True

    # -- leases

    def take_shards(self, now: dt.datetime) -> list[int]:
        """Renew this publisher's leases, give back any beyond its fair share, take free ones up to it."""
        shards = self.settings.outbox_shards
        with write_transaction():
            OutboxLease.insert_many([{"shard": s} for s in range(shards)]).on_conflict_ignore().execute()
            if not OutboxPublisher.update(seen_at=now).where(OutboxPublisher.owner == self.owner).execute():
                OutboxPublisher.insert(owner=self.owner, seen_at=now).on_conflict_ignore().execute()
            live = OutboxPublisher.select().where(OutboxPublisher.seen_at > now - LEASE).count()
            share = math.ceil(shards / max(1, live))
            OutboxLease.update(until=now + LEASE).where(
                OutboxLease.owner == self.owner, OutboxLease.until > now
            ).execute()
            mine = [
                row.shard
                for row in OutboxLease.select(OutboxLease.shard)
                .where(OutboxLease.owner == self.owner, OutboxLease.until > now)
                .order_by(OutboxLease.shard)
            ]
            for extra in mine[share:]:
                # Between batches: nothing of this shard is in flight, the next owner starts where this one stopped.
                OutboxLease.update(owner=None, until=None).where(
                    OutboxLease.shard == extra, OutboxLease.owner == self.owner
                ).execute()
            mine = mine[:share]
            free = (
                OutboxLease.select(OutboxLease.shard)
                .where((OutboxLease.owner.is_null()) | (OutboxLease.until <= now))
                .order_by(OutboxLease.shard)
            )
            for row in free:
                if len(mine) >= share:
                    break
                taken = (
                    OutboxLease.update(owner=self.owner, until=now + LEASE)
                    .where(OutboxLease.shard == row.shard, (OutboxLease.owner.is_null()) | (OutboxLease.until <= now))
                    .execute()
                )
                if taken:
                    mine.append(row.shard)
        return sorted(mine)

    def release_shards(self) -> None:
        self._shards, self._renewed = [], None
        with unit_of_work(), write_transaction():
            OutboxLease.update(owner=None, until=None).where(OutboxLease.owner == self.owner).execute()
            # The ignore: types-peewee declares delete as a Self-typed class attribute.
            OutboxPublisher.delete().where(OutboxPublisher.owner == self.owner).execute()  # type: ignore[misc]

    def close(self) -> None:
        """Deliver what is queued (briefly), give the shards back, stop the producer."""
        self.producer.flush(min(5.0, self.settings.kafka_delivery_timeout_s))
        self.producer.close()
        self.release_shards()

    # -- publishing

    def _records(self, event: PaymentEvent, key: str) -> list[Record]:
        """One record per topic the event's type is published to (none when every one is turned off)."""
        headers = [
            ("eventId", event.event_id.encode()),
            ("type", event.type.encode()),
            # The order this service wrote its events in: across the types' topics, a consumer can restore an
            # intent's order with it (each topic keeps it by itself, keyed by the intent's order or the intent).
            ("sequence", str(event.id).encode()),
        ]
        if event.payload.get("traceId"):
            headers.append(("traceId", str(event.payload["traceId"]).encode()))
        return [
            Record(
                topic=topic,
                key=key.encode(),
                value=json.dumps(
                    payload_for(event.type, dialect, event.payload), separators=(",", ":"), ensure_ascii=False
                ).encode(),
                headers=headers,
            )
            for topic, dialect in self.settings.event_routes.get(event.type, ())
        ]

    def publish_shards(self, shards: list[int]) -> tuple[int, bool]:
        """Send one batch of the shards' unpublished events, oldest first; returns (how many were marked, all went).

        One query for every shard this publisher holds, not one per shard: a pass over 16 shards was 16 selects, so
        a light load paid for the shards' count rather than its events. An intent's events are all in one shard.

        Each type has its own topic and Kafka keeps order only within a partition, so an intent's events go out in
        waves: its next event is produced only once the one before it was acknowledged. An intent whose event is not
        acknowledged sends nothing after it in this pass (a later event never reaches Kafka before an earlier one,
        even when one partition fails while another takes its writes), and only acknowledged events are marked. An
        event with several topics counts as acknowledged only when every one of its records was."""
        events = list(
            PaymentEvent.select()
            .where(PaymentEvent.shard.in_(shards), PaymentEvent.published_at.is_null())
            .order_by(PaymentEvent.id)
            .limit(self.settings.outbox_batch)
        )
        if not events:
            return 0, True
        keys = _partition_keys(events)
        deadline = time.monotonic() + self.settings.kafka_delivery_timeout_s
        acknowledged: list[int] = []
        first_failure: tuple[PaymentEvent, Delivery] | None = None
        blocked: set[str] = set()  # intents with an event not acknowledged: nothing after it is sent
        for wave in _waves(events):
            sending = [event for event in wave if event.payment_intent_id not in blocked]
            if not sending or time.monotonic() >= deadline:
                break
            deliveries = [
                [
                    self.producer.produce(record, deadline)
                    for record in self._records(event, keys[event.payment_intent_id])
                ]
                for event in sending
            ]
            self.producer.wait([d for per_event in deliveries for d in per_event], deadline)
            for event, per_event in zip(sending, deliveries, strict=True):
                missed = next((d for d in per_event if not d.acknowledged), None)
                if missed is None:
                    acknowledged.append(event.id)
                    continue
                blocked.add(event.payment_intent_id)
                if first_failure is None or event.id < first_failure[0].id:
                    first_failure = (event, missed)
        if acknowledged:
            PaymentEvent.update(published_at=utcnow(), publish_attempts=PaymentEvent.publish_attempts + 1).where(
                PaymentEvent.id.in_(acknowledged)
            ).execute()
            metrics.EVENTS_PUBLISHED.inc(len(acknowledged))
        failed = len(acknowledged) < len(events)
        if failed:
            # The earliest event not acknowledged carries why (a pass cut short by its deadline: the first unsent).
            done = set(acknowledged)
            unsent = next(event for event in events if event.id not in done)
            event, reason = (
                (first_failure[0], first_failure[1].reason) if first_failure else (unsent, "no acknowledgement in time")
            )
            PaymentEvent.update(publish_attempts=PaymentEvent.publish_attempts + 1, last_error=reason[:1000]).where(
                PaymentEvent.id == event.id
            ).execute()
            log.warning("shard %d: %d of %d events published (%s)", event.shard, len(acknowledged), len(events), reason)
        if failed or self.producer.fatal_error is not None:
            # A fenced or timed-out idempotent producer may refuse every later send (Tansu): a new one takes over.
            self.producer.retire()
            self.producer = ReplyProducer(producer_config(self.settings))
        return len(acknowledged), not failed

    def _current_shards(self, now: dt.datetime) -> list[int]:
        """This publisher's shards, its leases renewed when due (well inside the lease)."""
        if self._renewed is None or now - self._renewed >= RENEW_EVERY:
            self._shards, self._renewed = self.take_shards(now), now
        return self._shards

    def run_once(self) -> tuple[int, bool]:
        """One pass over this publisher's shards; returns (events published, every send acknowledged)."""
        with unit_of_work():
            shards = self._current_shards(utcnow())
            sent, clean = self.publish_shards(shards) if shards else (0, True)
            self._measure()
        return sent, clean

    def _measure(self) -> None:
        if time.monotonic() - self._measured < BACKLOG_EVERY_S:
            return
        self._measured = time.monotonic()
        backlog, oldest = outbox_backlog()
        metrics.OUTBOX_BACKLOG.set(backlog)
        metrics.OUTBOX_OLDEST_SECONDS.set(oldest)

    def run(self) -> None:
        ensure_topics(self.settings, self.settings.published_event_topics)
        log.info("publishing payment events as %s", self.owner)
        try:
            while not self.stopping:
                try:
                    sent, clean = self.run_once()
                except Exception:
                    log.exception("publishing pass failed; trying again")
                    sent, clean = 0, False
                if not clean:
                    time.sleep(FAILED_PAUSE_S)
                    # A topic missing (Kafka was away at start, or an EVENT_TOPIC_* added) holds its rows back: a
                    # failed pass makes sure every topic exists before the next (creating one that exists is a no-op).
                    ensure_topics(self.settings, self.settings.published_event_topics, timeout_s=FAILED_PAUSE_S + 1)
                elif not sent:
                    time.sleep(IDLE_S)
        finally:
            self.close()
            log.info("publisher stopped")


def _partition_keys(events: list[PaymentEvent]) -> dict[str, str]:
    """Each intent's Kafka key, read from the intent (not from an event's payload, which a refund's lacks): its order
    where it has one, else its subscription, else the intent. Every event of an intent shares one key, so one
    partition of each topic, in order."""
    ids = {event.payment_intent_id for event in events}
    keys = {intent_id: intent_id for intent_id in ids}
    rows = PaymentIntent.select(PaymentIntent.id, PaymentIntent.order_id, PaymentIntent.subscription_id).where(
        PaymentIntent.id.in_(ids)
    )
    for row in rows:
        keys[row.id] = str(row.order_id or row.subscription_id or row.id)
    return keys


def _waves(events: list[PaymentEvent]) -> list[list[PaymentEvent]]:
    """A batch (in id order) as waves: the first wave holds each intent's first event, the second its second..."""
    waves: list[list[PaymentEvent]] = []
    seen: dict[str, int] = {}
    for event in events:
        position = seen.get(event.payment_intent_id, 0)
        seen[event.payment_intent_id] = position + 1
        if position == len(waves):
            waves.append([])
        waves[position].append(event)
    return waves


def outbox_backlog(now: dt.datetime | None = None) -> tuple[int, float]:
    """Events written and not yet published, and the age in seconds of the oldest of them."""
    now = now or utcnow()
    waiting = PaymentEvent.select().where(PaymentEvent.published_at.is_null())
    oldest = waiting.select(fn.MIN(PaymentEvent.occurred_at)).scalar()
    return waiting.count(), (now - oldest).total_seconds() if oldest else 0.0


def main() -> None:
    """`python -m event_publisher`: publish until SIGTERM or SIGINT."""
    from models import bind_database
    from models.schema import prepare_database
    from observability.logs import configure_logging
    from observability.metrics import serve_metrics
    from observability.sentry import init_sentry
    from settings import get_settings

    settings = get_settings()
    configure_logging(settings, "publisher")
    init_sentry(settings, "publisher")
    serve_metrics(settings.metrics_port)
    bind_database(settings)
    prepare_database(settings.auto_seed)
    publisher = Publisher(settings)
    signal.signal(signal.SIGTERM, publisher.request_stop)
    signal.signal(signal.SIGINT, publisher.request_stop)
    publisher.run()
