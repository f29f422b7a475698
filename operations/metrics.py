"""The operator's numbers as Prometheus reads them from the web: queue depth from the broker, and the operator
page's reading (operations/view.py) beside the gunicorn workers' own metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger("observability.metrics")

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
    from operations.view import OpsCollector

    registry.register(OpsCollector())  # the operator page's numbers
    return registry
