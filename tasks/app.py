"""The Celery application: `celery -A tasks.app worker -Q <queues>`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_init

from observability.logs import configure_logging
from settings import get_settings

app = Celery("vy-finance-payments")
app.config_from_object("celeryconfig")


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Our JSON, scrubbed handler instead of Celery's own.
    configure_logging(get_settings(), "worker")


@worker_init.connect
def _prepare_worker(**_: Any) -> None:
    """Bind the database and bring the schema up to date before the worker takes tasks."""
    from models import bind_database
    from models.schema import prepare_database
    from observability.metrics import serve_metrics
    from observability.sentry import init_sentry

    settings = get_settings()
    init_sentry(settings, "worker")
    bind_database(settings)
    prepare_database(settings.auto_seed)
    serve_metrics(settings.metrics_port)


@worker_process_init.connect
def _bind_child(**_: Any) -> None:
    # A prefork child binds its own pool: connections are never shared across fork.
    from models import bind_database

    bind_database(get_settings())


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
