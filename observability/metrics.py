"""Prometheus metrics: per operation and door, counters and latency; in-flight gauges. A leaf: imports nothing of
the service (queue depth and the operator's numbers are operations/metrics.py)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

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
RETENTION_ROWS = Counter(
    "payments_retention_rows_total",
    "Rows retention moved out of the hot tables, by table and action (archived, or deleted without an archive).",
    ["table", "action"],
)

PAYMENT_ATTEMPTS = Counter(
    "payments_payment_attempts_total",
    "Payment attempts (a confirm or a capture) that ended, by operation and how: succeeded or failed (a decline "
    "included). Counted where the attempt is settled, once per attempt.",
    ["operation", "status"],
)
REFUNDS_ENDED = Counter(
    "payments_refunds_ended_total",
    "Refunds that reached an end, by status: succeeded, or failed or canceled (the money did not go back).",
    ["status"],
)
WEBHOOK_WAIT_SECONDS = Histogram(
    "payments_webhook_wait_seconds",
    "Time from a door receiving a Stripe event to a worker applying it (how long it waited in the queue).",
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
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
