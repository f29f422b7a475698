"""Prometheus metrics: per operation and door, counters and latency; queue depth and in-flight gauges."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Stripe takes hundreds of milliseconds; buckets reach past REST_TIMEOUT.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60)

OPERATIONS = Counter(
    "payments_operations_total",
    "Operations finished, by outcome (ok or an error code).",
    ["operation", "door", "outcome"],
)
OPERATION_SECONDS = Histogram(
    "payments_operation_seconds",
    "Time to finish an operation, as seen where it is measured.",
    ["operation", "door", "stage"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "payments_in_flight",
    "Operations started and not finished.",
    ["operation", "door", "stage"],
    multiprocess_mode="livesum",
)
STRIPE_CALLS = Counter("payments_stripe_calls_total", "Calls to Stripe, by outcome.", ["call", "outcome"])
STRIPE_PACE_SECONDS = Histogram(
    "payments_stripe_pace_seconds",
    "Time a Stripe call waited for its turn in the account's shared rate budget (STRIPE_RATE_LIMIT).",
    ["priority"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 45),
)
EVENTS_PUBLISHED = Counter("payments_events_published_total", "Payment events the broker acknowledged.")
OUTBOX_BACKLOG = Gauge(
    "payments_outbox_backlog", "Payment events written and not yet published.", multiprocess_mode="max"
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "payments_outbox_oldest_seconds",
    "Age of the oldest payment event not yet published (0: none waiting).",
    multiprocess_mode="max",
)
SOCKET_CONNECTIONS = Gauge(
    "payments_socket_connections",
    "Sockets connected to the Socket.IO door, by kind (customer token or server API key).",
    ["kind"],
    multiprocess_mode="livesum",
)
SOCKET_REFUSED = Counter("payments_socket_refused_total", "Socket.IO handshakes refused, by reason.", ["reason"])
SOCKET_PUSHES = Counter(
    "payments_socket_pushes_total",
    "payment-status-update pushes sent from the payment events this process consumed.",
)
JANITOR_ITEMS = Counter(
    "payments_janitor_items_total",
    "Items the janitor handled (abandoned claims, pending refunds, unmatched events), by outcome; `failed` ones are "
    "retried next pass.",
    ["kind", "outcome"],
)


HTTP_REQUESTS = Counter(
    "payments_http_requests_total",
    "REST requests answered, by route (its template), method and status (4xx and 5xx included).",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "payments_http_request_seconds",
    "Time to answer a REST request, by route and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)

# Queue depth is read from the broker at most this often: a scrape (or many) costs no broker connection each.
QUEUE_DEPTH_TTL_S = 5.0


class QueueDepthCollector(Collector):
    """Messages waiting in each Celery queue, read from the broker and kept QUEUE_DEPTH_TTL_S seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._depths: dict[str, int] | None = None
        self.broker_reads = 0

    def depths(self) -> dict[str, int] | None:
        """Each queue's depth, from the broker when the last reading is older than QUEUE_DEPTH_TTL_S."""
        with self._lock:
            if time.monotonic() - self._read_at < QUEUE_DEPTH_TTL_S:
                return self._depths
            self._read_at = time.monotonic()
            self._depths = self._read()
            return self._depths

    def _read(self) -> dict[str, int] | None:
        from registry import QUEUES
        from tasks.app import app

        self.broker_reads += 1
        try:
            with app.connection_for_read() as conn:
                channel = conn.default_channel
                return {q: channel.queue_declare(queue=q, passive=True).message_count for q in QUEUES}
        except Exception as exc:  # a scrape must not fail because the broker is away
            log.warning("queue depth unavailable: %s", type(exc).__name__)
            return None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depths = self.depths()
        if depths is None:
            return
        family = GaugeMetricFamily("payments_queue_depth", "Tasks waiting in a Celery queue.", labels=["queue"])
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family


QUEUE_DEPTH = QueueDepthCollector()


def api_registry() -> CollectorRegistry:
    """The web's registry: gunicorn workers' metrics merged (multiprocess mode), plus queue depth."""
    registry = CollectorRegistry()
    try:
        # prometheus_client finds the directory gunicorn.conf.py gave it (PROMETHEUS_MULTIPROC_DIR).
        MultiProcessCollector(registry)
    except ValueError:
        registry = REGISTRY  # one process (tests, the Flask dev server): its own metrics are all there is
    registry.register(QUEUE_DEPTH)
    from observability.ops import OpsCollector

    registry.register(OpsCollector())  # the operator page's numbers
    return registry


def serve_metrics(port: int) -> bool:
    """A metrics port for a worker or relay process; 0 means none."""
    if port <= 0:
        return False
    start_http_server(port, addr="0.0.0.0")  # noqa: S104 (scraped from outside the container)
    return True


def track(operation: str, door: str, stage: str) -> Any:
    """Context manager: in-flight gauge and latency histogram for one operation."""
    return _Tracked(operation, door, stage)


class _Tracked:
    def __init__(self, operation: str, door: str, stage: str) -> None:
        self.labels = (operation, door, stage)

    def __enter__(self) -> _Tracked:
        IN_FLIGHT.labels(*self.labels).inc()
        self.timer = OPERATION_SECONDS.labels(*self.labels).time()
        self.timer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.__exit__(*exc)
        IN_FLIGHT.labels(*self.labels).dec()
