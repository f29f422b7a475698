"""The Celery application: `celery -A tasks.app worker -Q <queues>`."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_init

from observability.logs import configure_logging
from settings import get_settings

log = logging.getLogger("tasks")

app = Celery("vy-finance-payments")
app.config_from_object("celeryconfig")


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Our JSON, scrubbed handler instead of Celery's own.
    configure_logging(get_settings(), "worker")


def warm_reply_producer() -> None:
    """Make this process's Kafka reply producer now rather than at its first reply.

    A new idempotent librdkafka producer sends nothing until it has a producer id, and it asks for one only on its
    PID timer (500 ms) once its first broker connection is up: made at the first reply, that reply and every one
    behind it waited about 500 ms, a tail that only a worker's first requests showed (issue 27). Made at start, the
    id is in long before the first task. A failure here is not the worker's: the first reply makes one again."""
    try:
        from messaging.producer import shared_producer

        shared_producer(get_settings())
    except Exception as exc:  # a bad KAFKA_*OPT_* option: the replies say so, the REST door's tasks still run
        log.warning("Kafka reply producer not made at start: %s: %s", type(exc).__name__, exc)


def _forks_children(worker: Any) -> bool:
    """The prefork pool runs tasks in children, each making its own producer (worker_process_init)."""
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool

    pool = get_implementation(getattr(worker, "pool_cls", None) or "prefork")
    return isinstance(pool, type) and issubclass(pool, TaskPool)


@worker_init.connect
def _prepare_worker(sender: Any = None, **_: Any) -> None:
    """Bind the database and bring the schema up to date before the worker takes tasks."""
    from models import bind_database
    from models.schema import prepare_database
    from observability.metrics import serve_metrics
    from observability.sentry import init_sentry

    settings = get_settings()
    init_sentry(settings, "worker")
    if not _forks_children(sender):
        # gevent, solo, threads: this process runs the tasks; its producer gets its id while the schema is checked.
        warm_reply_producer()
    bind_database(settings)
    prepare_database(settings.auto_seed)
    serve_metrics(settings.metrics_port)


@worker_process_init.connect
def _bind_child(**_: Any) -> None:
    # A prefork child binds its own pool: connections are never shared across fork.
    from models import bind_database

    bind_database(get_settings())
    warm_reply_producer()


def broker_ready(timeout_s: float = 2.0) -> bool:
    """The Celery broker accepts a connection."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout_s)
    return True


def workers_ready(timeout_s: float = 1.0) -> bool:
    """At least one worker answers a ping."""
    return bool(app.control.ping(timeout=timeout_s))


# Register the operation tasks and the periodic ones with the app (they import `app` from here).
import tasks.maintenance  # noqa: E402
import tasks.operations  # noqa: E402,F401
