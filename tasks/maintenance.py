"""Periodic work run by Celery beat (Procfile `beat`): the janitor, the webhook sweeper, the events pruner and
retention."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from models import unit_of_work
from observability.logs import log_context, reset_log_context
from settings import get_settings
from tasks.app import app

log = logging.getLogger("tasks.maintenance")

JANITOR = "payments.janitor"
SWEEPER = "payments.sweep-stripe-events"
PRUNER = "payments.prune-events"
STRIPE_PROBE = "payments.probe-stripe"
RETENTION = "payments.retention"

T = TypeVar("T")


def _beat_pass(operation: str, work: Callable[[], T], said: str) -> T:
    """One periodic pass in its own unit of work and log context, its result logged with `said`."""
    tokens = log_context(operation=operation, door="beat")
    try:
        with unit_of_work():
            result = work()
        log.info(said, result)
        return result
    finally:
        reset_log_context(tokens)


@app.task(name=JANITOR, acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def run_janitor() -> dict[str, Any]:
    """Resolve operations whose outcome is unknown (domain/janitor.py)."""
    from domain import janitor

    return _beat_pass("janitor", janitor.run, "janitor pass: %s")


@app.task(name=SWEEPER, acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def sweep_stripe_events() -> int:
    """Ingest Stripe events that no webhook delivered (domain/webhooks.py sweep_events)."""
    from domain.webhooks import sweep_events

    return _beat_pass("sweep-stripe-events", sweep_events, "sweeper pass: %d events recovered")


@app.task(name=PRUNER, acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def prune_events() -> int:
    """Delete published payment events past OUTBOX_RETENTION_DAYS (never one not yet published)."""
    from domain.payment_events import prune_published

    return _beat_pass("prune-events", prune_published, "events pruned: %d")


# Past its time budget a run stops between batches; the limits only catch one stuck on the database.
_RETENTION_LIMIT_S = get_settings().retention_time_budget_s + 300


@app.task(
    name=RETENTION,
    acks_late=True,
    ignore_result=True,
    soft_time_limit=_RETENTION_LIMIT_S,
    time_limit=_RETENTION_LIMIT_S + 60,
)
def run_retention() -> dict[str, Any]:
    """Archive and delete what the PRD's retention says is old enough (domain/retention.py), when RETENTION_ENABLED."""
    from domain import retention

    return _beat_pass("retention", lambda: retention.run().as_dict(), "retention pass: %s")


@app.task(name=STRIPE_PROBE, acks_late=False, soft_time_limit=10, time_limit=15)
def probe_stripe() -> bool:
    """Stripe answers the service's key (a read of the balance): how the web door learns it without calling Stripe."""
    import stripe_client

    stripe_client.client().v1.balance.retrieve()
    return True
