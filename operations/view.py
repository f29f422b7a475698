"""What an operator needs to see, read once and shown twice: on the operator page (/ops/) and as Prometheus metrics.

`snapshot()` reads each dependency's readiness, the Celery queues, the idempotency claims in flight and abandoned
(the janitor's backlog), the webhook events by status and the last one's arrival, the dead-letter topics and the
payment events outbox. It is kept OPS_TTL_S seconds: a page refreshing itself and Prometheus scraping cost one
reading between them. `intent_timeline()` is one payment intent's story from its ztracking snapshots.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from messaging.config import off_the_hub
from settings import get_settings

log = logging.getLogger("ops")

OPS_TTL_S = 10.0
# A scrape must answer well within Prometheus's 10 s: Kafka gets this long, and is not asked again when away.
KAFKA_TIMEOUT_S = 2.0
# How long the page waits for a worker's answer from Stripe.
STRIPE_PROBE_S = 5.0
# What becomes of a stored Stripe event (domain/webhooks.py): each shown, at 0 too.
WEBHOOK_STATUSES = ("received", "processed", "unmatched", "ignored", "stale")
# Stored events not applied yet: the webhook backlog.
WEBHOOK_WAITING = ("received", "unmatched")
# Fields whose change a timeline shows, in this order (the payload's names).
TIMELINE_FIELDS = (
    "status",
    "amount",
    "amountCapturable",
    "amountReceived",
    "amountRefunded",
    "paymentMethodId",
    "captureBefore",
    "cancellationReason",
    "lastPaymentError",
    "orderId",
)


def dependency_checks(stripe_directly: bool = False) -> dict[str, Callable[[], object]]:
    """Each dependency and how to ask it whether it answers (raising or falsy: it does not). Stripe is asked by a
    worker (a door never calls Stripe); the `payments` command, run by an operator, may ask it directly."""
    from models.base import database_ready
    from tasks.app import broker_ready, workers_ready

    def stripe_ready() -> bool:
        if stripe_directly:
            import stripe_client

            stripe_client.client().v1.balance.retrieve()
            return True
        from tasks.maintenance import probe_stripe

        result = probe_stripe.apply_async()
        try:
            return bool(result.get(timeout=STRIPE_PROBE_S))
        finally:
            result.forget()

    def kafka_ready() -> bool:
        from confluent_kafka.admin import AdminClient

        from messaging.config import common_config

        admin = AdminClient(common_config(get_settings()))
        off_the_hub(lambda: admin.list_topics(timeout=KAFKA_TIMEOUT_S))
        return True

    return {
        "database": database_ready,
        "broker": broker_ready,
        "worker": workers_ready,
        "stripe": stripe_ready,
        "kafka": kafka_ready,
    }


def readiness(stripe_directly: bool = False) -> dict[str, dict[str, Any]]:
    """{dependency: {"ok": bool, "detail": str}}; every dependency is asked, whatever the others answer."""
    answers = {}
    for name, probe in dependency_checks(stripe_directly).items():
        try:
            ok = bool(probe())
            detail = "" if ok else "no answer"
        except Exception as exc:  # each failure is reported, none stops the others
            ok, detail = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        answers[name] = {"ok": ok, "detail": detail}
    return answers


def _age_s(moment: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if moment is None else max(0.0, (now - moment).total_seconds())


def claims(now: dt.datetime, shown: int = 20) -> dict[str, Any]:
    """Idempotency claims being run now, and those nobody is finishing (the janitor's backlog), with their age."""
    from domain.janitor import nobody_finishing
    from models import IdempotencyRecord

    live = (IdempotencyRecord.state == "in_flight") & (IdempotencyRecord.locked_until >= now)
    abandoned = nobody_finishing(now)
    summary: dict[str, Any] = {}
    for name, condition in (("in_flight", live), ("abandoned", abandoned)):
        query = IdempotencyRecord.select().where(condition)
        rows = list(query.order_by(IdempotencyRecord.created_at).limit(shown))
        summary[name] = {
            "count": query.count(),
            "oldest_s": _age_s(rows[0].created_at if rows else None, now),  # oldest first
            "rows": [
                {
                    "operation": r.operation,
                    "resourceId": r.resource_id,
                    "state": r.state,
                    "attempts": r.attempts,
                    "age_s": _age_s(r.created_at, now),
                    "stripeCalled": r.stripe_started_at is not None,
                }
                for r in rows
            ],
        }
    return summary


def webhooks(now: dt.datetime) -> dict[str, Any]:
    """Stored Stripe events by status, and when the last one arrived (a dead endpoint shows as a growing age)."""
    from peewee import fn

    from models import WebhookEvent

    by_status = dict.fromkeys(WEBHOOK_STATUSES, 0)
    counts = WebhookEvent.select(WebhookEvent.status, fn.COUNT(WebhookEvent.id)).group_by(WebhookEvent.status)
    # tuples() yields (status, count) rows; types-peewee types it as yielding the model.
    by_status |= dict(cast(Iterable[tuple[str, int]], counts.tuples()))
    last = _moment(WebhookEvent.select(fn.MAX(WebhookEvent.received_at)).scalar())
    # Stored and not applied yet: the backlog the janitor works through (unmatched: their intent not here yet).
    waiting = WebhookEvent.status.in_(WEBHOOK_WAITING)
    oldest = _moment(WebhookEvent.select(fn.MIN(WebhookEvent.received_at)).where(waiting).scalar())
    return {
        "by_status": by_status,
        "last_received_at": last,
        "last_received_age_s": _age_s(last, now),
        "backlog_oldest_s": _age_s(oldest, now),
    }


def _moment(value: dt.datetime | str | None) -> dt.datetime | None:
    # SQLite answers an aggregate of a datetime column as text.
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def dead_letters() -> dict[str, int] | None:
    """Messages in each request topic's dead-letter topic (`<topic>-dlq`); None when Kafka cannot be asked."""
    from confluent_kafka import Consumer, TopicPartition

    from messaging.config import common_config, dlq_topic
    from registry import OPERATIONS

    settings = get_settings()
    consumer = Consumer({**common_config(settings), "group.id": f"{settings.kafka_group}-ops", "log_level": 3})
    try:
        metadata = off_the_hub(lambda: consumer.list_topics(timeout=KAFKA_TIMEOUT_S))
        counts: dict[str, int] = {}
        for topic in OPERATIONS:
            name = dlq_topic(topic)
            partitions = metadata.topics.get(name)
            if partitions is None or partitions.error is not None:
                counts[name] = 0  # never created: nothing was ever dead-lettered there
                continue
            total = 0
            for partition in partitions.partitions:
                where = TopicPartition(name, partition)
                low, high = off_the_hub(lambda w=where: consumer.get_watermark_offsets(w, timeout=KAFKA_TIMEOUT_S))
                total += max(0, high - low)
            counts[name] = total
        return counts
    except Exception as exc:  # Kafka away: the page and the metric say "unknown", never fail
        log.warning("dead-letter counts unavailable: %s", type(exc).__name__)
        return None
    finally:
        off_the_hub(consumer.close)


def outbox(now: dt.datetime) -> dict[str, Any]:
    from event_publisher.publisher import outbox_backlog

    backlog, oldest = outbox_backlog(now)
    return {"backlog": backlog, "oldest_s": oldest}


def recent_intents(limit: int) -> list[dict[str, Any]]:
    """The newest payment intents, newest first (their attempts left out: the list shows none)."""
    from models import PaymentIntent

    rows = PaymentIntent.select().order_by(PaymentIntent.id.desc()).limit(limit)
    return [row.to_payload([]) for row in rows]


def record(kind: str, record_id: str) -> Any:
    """One payment intent, attempt or outbox event by its id (the operator's forms name them), or None."""
    from models import PaymentAttempt, PaymentEvent, PaymentIntent, unit_of_work

    key = {"intent": PaymentIntent.id, "attempt": PaymentAttempt.id, "event": PaymentEvent.event_id}[kind]
    if not record_id:
        return None
    with unit_of_work():
        return key.model.get_or_none(key == record_id)


def recent_events(limit: int = 20) -> list[dict[str, Any]]:
    """The newest payment events of the outbox, published or waiting, each of which an operator may re-publish."""
    from models import PaymentEvent
    from models.base import iso

    rows = PaymentEvent.select().order_by(PaymentEvent.id.desc()).limit(limit)
    return [
        {
            "eventId": row.event_id,
            "type": row.type,
            "paymentIntentId": row.payment_intent_id,
            "occurredAt": iso(row.occurred_at),
            "publishedAt": iso(row.published_at),
            "attempts": row.publish_attempts,
        }
        for row in rows
    ]


def _read() -> dict[str, Any]:
    from models import utcnow
    from operations.metrics import QUEUE_DEPTH

    now = utcnow()
    reading: dict[str, Any] = {"read_at": now, "readiness": readiness()}
    parts: dict[str, Callable[[], Any]] = {
        "queues": QUEUE_DEPTH.depths,
        "claims": lambda: claims(now),
        "webhooks": lambda: webhooks(now),
        "dead_letters": dead_letters if reading["readiness"]["kafka"]["ok"] else lambda: None,
        "outbox": lambda: outbox(now),
    }
    for name, read in parts.items():
        try:
            reading[name] = read()
        except Exception as exc:  # one part unreadable (the database away) leaves the others
            log.warning("operator view: %s unavailable (%s)", name, type(exc).__name__)
            reading[name] = None
    return reading


_lock = threading.Lock()
_cached: tuple[float, dict[str, Any]] | None = None


def snapshot(fresh: bool = False) -> dict[str, Any]:
    """The operator's view, read at most every OPS_TTL_S seconds (`fresh`: now)."""
    global _cached
    with _lock:
        if fresh or _cached is None or time.monotonic() - _cached[0] >= OPS_TTL_S:
            _cached = (time.monotonic(), _read())
        return _cached[1]


def _changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    if before is None:
        return [(name, None, after.get(name)) for name in TIMELINE_FIELDS if after.get(name) is not None]
    return [
        (name, before.get(name), after.get(name)) for name in TIMELINE_FIELDS if before.get(name) != after.get(name)
    ]


def intent_timeline(payment_intent_id: str) -> dict[str, Any] | None:
    """The intent now, each ztracking version with its cause and what it changed, its refunds and attempts."""
    from models import PaymentIntent, Refund, ZtrackingPaymentIntent
    from models.payment_attempts import attempts_of

    intent = PaymentIntent.get_or_none(PaymentIntent.id == payment_intent_id)
    if intent is None:
        return None
    versions, before = [], None
    snapshots = ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == payment_intent_id)
    for row in snapshots.order_by(ZtrackingPaymentIntent.ztracking_version):
        payload = row.to_payload()
        versions.append(
            {
                "version": payload["ztrackingVersion"],
                "at": payload["versionDate"],
                "cause": payload["cause"],
                "changes": _changes(before, payload),
            }
        )
        before = payload
    refunds = Refund.select().where(Refund.payment_intent_id == payment_intent_id).order_by(Refund.id)
    return {
        "intent": intent.to_payload(),
        "versions": versions,
        "refunds": [r.to_payload() for r in refunds],
        "attempts": attempts_of(payment_intent_id),
    }


class OpsCollector(Collector):
    """Every number of the operator page as a metric (the same reading, so the two never disagree)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        view = snapshot()
        up = GaugeMetricFamily("payments_dependency_up", "1 when the dependency answers.", labels=["dependency"])
        for name, answer in view["readiness"].items():
            up.add_metric([name], 1.0 if answer["ok"] else 0.0)
        yield up
        if view.get("claims") is not None:
            count = GaugeMetricFamily("payments_claims", "Idempotency claims by state.", labels=["state"])
            oldest = GaugeMetricFamily(
                "payments_claims_oldest_seconds", "Age of the oldest claim in the state (0: none).", labels=["state"]
            )
            for state, part in view["claims"].items():
                count.add_metric([state], part["count"])
                oldest.add_metric([state], part["oldest_s"] or 0.0)
            yield count
            yield oldest
        if view.get("webhooks") is not None:
            events = GaugeMetricFamily("payments_webhook_events", "Stored Stripe events by status.", labels=["status"])
            for status, n in view["webhooks"]["by_status"].items():
                events.add_metric([status], n)
            yield events
            yield GaugeMetricFamily(
                "payments_webhook_backlog_oldest_seconds",
                "Age of the oldest stored Stripe event not applied yet (received or unmatched; 0: none).",
                value=view["webhooks"].get("backlog_oldest_s") or 0.0,
            )
            age = view["webhooks"]["last_received_age_s"]
            if age is not None:
                yield GaugeMetricFamily(
                    "payments_webhook_last_received_seconds", "Seconds since the last Stripe event arrived.", value=age
                )
        if view.get("dead_letters") is not None:
            dlq = GaugeMetricFamily("payments_dlq_messages", "Messages in a dead-letter topic.", labels=["topic"])
            for topic, n in view["dead_letters"].items():
                dlq.add_metric([topic], n)
            yield dlq
        if view.get("outbox") is not None:
            yield GaugeMetricFamily(
                "payments_outbox_waiting",
                "Payment events not yet published, read from the outbox.",
                value=view["outbox"]["backlog"],
            )
            yield GaugeMetricFamily(
                "payments_outbox_waiting_oldest_seconds",
                "Age of the oldest payment event not yet published, read from the outbox (0: none).",
                value=view["outbox"]["oldest_s"] or 0.0,
            )
