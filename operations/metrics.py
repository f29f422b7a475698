"""The operator's numbers as Prometheus reads them from the web: queue depth from the broker, and the operator
page's reading (operations/view.py) beside the gunicorn workers' own metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger("observability.metrics")

# Queue depth is read from the broker at most this often: a scrape (or many) costs no broker connection each.
QUEUE_DEPTH_TTL_S = 5.0
# RabbitMQ's answer to a passive declare of a queue nobody declared yet (it closes the channel).
AMQP_NOT_FOUND = 404


def queue_depths(connection: Any, queues: Iterable[str]) -> dict[str, int]:
    """Tasks waiting in each queue, asked as the broker can answer: LLEN of its lists on Redis, a passive declare
    on RabbitMQ. `connection` is a kombu Connection (Celery's)."""
    if connection.transport.driver_type == "redis":
        return _redis_depths(connection.default_channel, list(queues))
    return _amqp_depths(connection, list(queues))


def _redis_depths(channel: Any, queues: list[str]) -> dict[str, int]:
    # kombu's Redis transport refuses a passive declare of an empty queue (its list does not exist then), and keeps
    # a queue as one list per priority step (`name`, `name\x06\x163`, …: kombu's own naming, _q_for_pri).
    lists = {queue: [channel._q_for_pri(queue, step) for step in channel.priority_steps] for queue in queues}
    with channel.conn_or_acquire() as client, client.pipeline() as pipe:
        for names in lists.values():
            for name in names:
                pipe.llen(name)  # the client adds the transport's global_keyprefix, if one is set
        sizes = iter(pipe.execute())
    return {queue: sum(int(next(sizes)) for _ in names) for queue, names in lists.items()}


def _amqp_depths(connection: Any, queues: list[str]) -> dict[str, int]:
    depths: dict[str, int] = {}
    channel = connection.channel()
    try:
        for queue in queues:
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors as exc:
                if getattr(exc, "code", None) != AMQP_NOT_FOUND:
                    raise
                depths[queue] = 0  # not declared yet (no worker has started on it): nothing waits there
                channel = connection.channel()  # the refusal closed the channel
    finally:
        channel.close()
    return depths


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
                return queue_depths(conn, QUEUES)
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
