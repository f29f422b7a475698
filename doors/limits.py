"""Where the per-caller rate limits are counted, shared by the REST door (flask-limiter) and the socket door."""

from __future__ import annotations

from settings import Settings


def storage_uri(settings: Settings) -> str:
    """RATE_LIMIT_STORAGE, else the service's Redis (result store, or broker), else each process's memory."""
    return settings.rate_limit_storage or settings.redis_url or "memory://"
