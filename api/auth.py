"""Bearer API keys from API_KEYS, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from flask import request


def caller_key_id(keys: tuple[str, ...]) -> str | None:
    """A short stable id of the caller's API key (scopes idempotency keys), or None when not authorised."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    presented_bytes = presented.strip().encode()
    matched = None
    for key in keys:
        # Compare with every key, never stopping early: timing says nothing about which matched.
        if hmac.compare_digest(key.encode(), presented_bytes):
            matched = key
    if matched is None:
        return None
    return hashlib.sha256(matched.encode()).hexdigest()[:16]
