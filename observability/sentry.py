"""Sentry from SENTRY_DNS, with card data, client secrets, keys and auth headers scrubbed before sending."""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.flask import FlaskIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint

from observability.logs import scrub, trace_id_var
from settings import Settings

# The SDK's default denylist knows no card fields: add them, and Stripe's secrets.
DENYLIST = [
    *DEFAULT_DENYLIST,
    "card",
    "card_number",
    "cardnumber",
    "number",
    "cvc",
    "cvv",
    "cvc2",
    "exp_month",
    "exp_year",
    "client_secret",
    "clientsecret",
    "clientSecret",
    "stripe_secret_key",
    "stripe_webhook_secret",
    "stripe-signature",
    "stripe_signature",
    "signature",
    "api_keys",
    "idempotency-key",
]


def _scrub_values(value: Any) -> Any:
    """Every string anywhere in the event, passed through the same patterns as the logs."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_values(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub_values(v) for v in value)
    return value


def before_send(event: Event, hint: Hint) -> Event | None:
    trace_id = trace_id_var.get()
    if trace_id:
        # The operation's trace: search Sentry by the traceId a caller was answered with.
        event.setdefault("tags", {})["traceId"] = trace_id
    return _scrub_values(event)


def before_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
    return _scrub_values(crumb)


def init_sentry(settings: Settings, process: str, **options: Any) -> bool:
    """Start Sentry in this process when SENTRY_DNS is set; True when it is on."""
    if not settings.sentry_dsn and "transport" not in options:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn or None,
        environment=settings.node_env,
        server_name=process,
        max_request_body_size="never",  # request bodies may hold payment data
        include_local_variables=False,  # frames hold keys, secrets and payloads
        event_scrubber=EventScrubber(denylist=DENYLIST, recursive=True),
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        # log.exception/log.error become events: the doors and tasks log every internal failure.
        integrations=[FlaskIntegration(), CeleryIntegration(), LoggingIntegration(event_level=logging.ERROR)],
        **options,
    )
    return True
