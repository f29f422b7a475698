"""The per-caller rate limits, shared by the REST door (flask-limiter) and the socket door: where they are counted,
and which limit a caller has.

Scoped by kind of caller (issue 27): a server (an API key, an OAuth2 client) is one calling service that may carry
the whole platform's traffic — RATE_LIMIT_SERVER, sized to the PRD, or its own entry of RATE_LIMIT_CALLERS by its
API_KEYS name; a customer token is one browser — RATE_LIMIT_CUSTOMER, tight. Stripe's webhooks have theirs
(RATE_LIMIT_WEBHOOKS, api/limits.py).
"""

from __future__ import annotations

from settings import Settings

NAMED_CALLER = "n:"  # doors/auth.py's id of a named API_KEYS entry (`name:key`)


def storage_uri(settings: Settings) -> str:
    """RATE_LIMIT_STORAGE, else the service's Redis (result store, or broker), else each process's memory."""
    return settings.rate_limit_storage or settings.redis_url or "memory://"


def server_limit(caller_id: str | None, settings: Settings) -> str:
    """A server caller's limit: its RATE_LIMIT_CALLERS entry by API_KEYS name, else RATE_LIMIT_SERVER; '' is none."""
    if caller_id and caller_id.startswith(NAMED_CALLER):
        own = settings.rate_limit_callers.get(caller_id[len(NAMED_CALLER) :])
        if own is not None:
            return own
    return settings.rate_limit_server


def any_caller_limited(settings: Settings) -> bool:
    """Whether some server caller has a limit (the default, or an entry of its own)."""
    return bool(settings.rate_limit_server) or any(settings.rate_limit_callers.values())
