"""Periodic work run by Celery beat (Procfile `beat`): the janitor and the webhook sweeper."""

from __future__ import annotations

import logging
from typing import Any

from models import unit_of_work
from observability.logs import log_context, reset_log_context
from tasks.app import app

log = logging.getLogger("tasks.maintenance")

JANITOR = "payments.janitor"
SWEEPER = "payments.sweep-stripe-events"
PRUNER = "payments.prune-events"
STRIPE_PROBE = "payments.probe-stripe"


@app.task(name=JANITOR, acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def run_janitor() -> dict[str, Any]:
    """Resolve operations whose outcome is unknown (domain/janitor.py)."""
    from domain import janitor

    tokens = log_context(operation="janitor", door="beat")
    try:
        with unit_of_work():
            counts = janitor.run()
        log.info("janitor pass: %s", counts)
        return counts
    finally:
        reset_log_context(tokens)


@app.task(name=SWEEPER, acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def sweep_stripe_events() -> int:
    """Ingest Stripe events that no webhook delivered (domain/webhooks.py sweep_events)."""
    from domain.webhooks import sweep_events

    tokens = log_context(operation="sweep-stripe-events", door="beat")
    try:
        with unit_of_work():
            recovered = sweep_events()
        log.info("sweeper pass: %d events recovered", recovered)
        return recovered
    finally:
        reset_log_context(tokens)


@app.task(name=PRUNER, acks_late=True, ignore_result=True, soft_time_limit=600, time_limit=660)
def prune_events() -> int:
    """Delete published payment events past OUTBOX_RETENTION_DAYS (never one not yet published)."""
    from domain.payment_events import prune_published

    tokens = log_context(operation="prune-events", door="beat")
    try:
        with unit_of_work():
            pruned = prune_published()
        log.info("events pruned: %d", pruned)
        return pruned
    finally:
        reset_log_context(tokens)


@app.task(name=STRIPE_PROBE, acks_late=False, soft_time_limit=10, time_limit=15)
def probe_stripe() -> bool:
    """Stripe answers the service's key (a read of the balance): how the web door learns it without calling Stripe."""
    import stripe_client

    stripe_client.client().v1.balance.retrieve()
    return True
