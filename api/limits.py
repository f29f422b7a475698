"""Per-caller rate limits (flask-limiter, counted in the service's Redis so every web process shares them).

Every REST caller is a server (an API key or an OAuth2 client): RATE_LIMIT_SERVER each, or its own RATE_LIMIT_CALLERS
entry (doors/limits.py), counted by its name or key as idempotency scopes it; Stripe's webhooks have their own,
RATE_LIMIT_WEBHOOKS, per source address. Over a limit: 429 `rate_limited` with `Retry-After` and the RateLimit-*
headers. Health, readiness, metrics and the documents are never limited. Redis away: the limits fail open (a
payment is never refused because the counter is unreachable) and each process counts in memory meanwhile.
"""

from __future__ import annotations

from flask import Flask, Response, g, request
from flask_limiter import HeaderNames, Limiter, RequestLimit
from flask_limiter.util import get_remote_address

from api.errors import error_response
from doors.limits import any_caller_limited, server_limit, storage_uri
from settings import Settings

WEBHOOK_ENDPOINT = "webhooks.process-stripe-webhook"
NEVER_LIMITED = {"system.healthz", "system.readyz", "system.metrics", "system.openapi_json", "system.asyncapi_json"}


def _caller() -> str:
    # Set by the authentication hook, which runs first; an unauthenticated request never gets this far.
    return f"caller:{g.get('caller_key_id') or get_remote_address()}"


def _webhook_source() -> str:
    return f"webhook:{get_remote_address()}"


def _breached(limit: RequestLimit) -> Response:
    return error_response(
        "rate_limited",
        f"Too many requests: at most {limit.limit}. Retry after the time in Retry-After.",
        {"limit": str(limit.limit)},
    )


def install_limits(app: Flask, settings: Settings) -> Limiter | None:
    """Limit every route but the public ones; call after the authentication hook is registered."""
    callers_limited = any_caller_limited(settings)
    if not callers_limited and not settings.rate_limit_webhooks:
        return None

    def caller_limit() -> str:
        # Read per request: a caller named in RATE_LIMIT_CALLERS has its own limit (an empty one: none).
        return server_limit(g.get("caller_key_id"), settings)

    limiter = Limiter(
        _caller,
        app=app,
        default_limits=[caller_limit] if callers_limited else [],
        default_limits_exempt_when=lambda: not caller_limit(),
        storage_uri=storage_uri(settings),
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 1},
        strategy="moving-window",
        headers_enabled=True,
        header_name_mapping={
            HeaderNames.LIMIT: "RateLimit-Limit",
            HeaderNames.REMAINING: "RateLimit-Remaining",
            HeaderNames.RESET: "RateLimit-Reset",
            HeaderNames.RETRY_AFTER: "Retry-After",
        },
        retry_after="delta-seconds",
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        key_prefix=f"vyp-limits:{settings.kafka_group}",
        on_breach=_breached,
    )

    @limiter.request_filter
    def _not_limited() -> bool:
        endpoint = request.endpoint or ""
        return endpoint in NEVER_LIMITED or endpoint.startswith("docs.")

    if settings.rate_limit_webhooks:
        view = app.view_functions[WEBHOOK_ENDPOINT]
        # The wrapper checks the limit: it must be what the route calls.
        # Only events whose signature checked out count: a forged flood (refused 400 at once) cannot use up the
        # budget of Stripe's real deliveries, which behind a balancer all come from one address.
        # The ignore: Flask-Limiter's decorator is Callable[P, R] -> Callable[P, R], and given Flask's union of a sync
        # and an async view mypy joins R into a type that Flask's view mapping refuses.
        app.view_functions[WEBHOOK_ENDPOINT] = limiter.limit(  # type: ignore[assignment]
            settings.rate_limit_webhooks, key_func=_webhook_source, deduct_when=lambda r: r.status_code != 400
        )(view)
    elif callers_limited:
        limiter.exempt(app.view_functions[WEBHOOK_ENDPOINT])
    return limiter
