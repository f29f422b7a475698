"""Who is calling: bearer API keys from API_KEYS (compared in constant time), and the short-lived customer tokens
of the Socket.IO door (POST /socket-tokens), signed like Stripe's ephemeral keys are scoped: one customer each."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
import uuid

import jwt
from flask import request

from settings import Settings

TOKEN_AUDIENCE = "vy-finance-payments:socket"  # noqa: S105 (a name, not a secret)
TOKEN_ALGORITHM = "HS256"  # noqa: S105


# A named entry of API_KEYS is `name:key`; anything else is a bare key, its own caller.
CALLER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


@functools.lru_cache(maxsize=8)
def api_callers(entries: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(caller id, key) of each API_KEYS entry. A named caller's id is its name, so the idempotency keys it used
    with an old key still replay once it has a new one; a bare key's id is its hash (as before names existed)."""
    callers = []
    for entry in entries:
        name, sep, key = entry.partition(":")
        if sep and key and CALLER_NAME.fullmatch(name):
            callers.append((f"n:{name}", key))
        else:
            callers.append((hashlib.sha256(entry.encode()).hexdigest()[:16], entry))
    return tuple(callers)


def key_id(presented: str, keys: tuple[str, ...]) -> str | None:
    """The id of the caller whose API key is presented (it scopes idempotency keys), or None when it is not one of
    ours. `keys` are API_KEYS' entries."""
    try:
        presented_bytes = presented.strip().encode()
    except UnicodeError:  # a lone surrogate: no key of ours
        return None
    if not presented_bytes:
        return None
    matched = None
    for caller, key in api_callers(keys):
        # Compare with every key, never stopping early: timing says nothing about which matched.
        if hmac.compare_digest(key.encode(), presented_bytes):
            matched = caller
    return matched


def bearer(header: str) -> str:
    """The credential of an `Authorization: Bearer …` header, or ''."""
    scheme, _, presented = header.partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def caller_key_id(keys: tuple[str, ...]) -> str | None:
    """The REST caller's id from its Authorization header — `Bearer <key>`, or HTTP Basic with the key as the user
    name (as Stripe takes it) or as the password (what a browser's prompt makes easy) — or None."""
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        return key_id(bearer(header), keys)
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return key_id(user, keys) or key_id(password, keys)


def _token_secret(settings: Settings) -> bytes | None:
    """SOCKET_TOKEN_SECRET, else one derived from the API keys; None without either: then no token is made or
    accepted (a secret anyone could compute from the source would let them sign tokens for any customer)."""
    return _secret_of(settings.socket_token_secret, settings.api_keys)


@functools.lru_cache(maxsize=8)
def _secret_of(configured: str, api_keys: tuple[str, ...]) -> bytes | None:
    if configured:
        return configured.encode()
    keys = sorted(key for _, key in api_callers(api_keys))
    if not keys:
        return None
    return hashlib.sha256("\n".join(["vyp-socket-token-secret", *keys]).encode()).digest()


def issue_socket_token(customer_id: str, settings: Settings) -> tuple[str, int]:
    """A signed token letting a browser act for `customer_id` only, and its expiry (epoch seconds)."""
    secret = _token_secret(settings)
    if secret is None:
        raise ValueError("no SOCKET_TOKEN_SECRET and no API_KEYS: customer tokens cannot be signed")
    now = int(time.time())
    expires = now + settings.socket_token_ttl_s
    claims = {"sub": customer_id, "aud": TOKEN_AUDIENCE, "iat": now, "exp": expires, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM), expires


def socket_token_claims(token: str, settings: Settings) -> tuple[str, int] | None:
    """(customer id, expiry) of a valid token; None for an expired, forged or malformed one."""
    secret = _token_secret(settings)
    if secret is None:
        return None
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],  # never "none", never a key type the header picks
            audience=TOKEN_AUDIENCE,
            options={"require": ["sub", "exp", "aud"]},
        )
    except (jwt.PyJWTError, ValueError, UnicodeError):  # forged, expired, or not even text
        return None
    customer, expires = claims.get("sub"), claims.get("exp")
    if not isinstance(customer, str) or not customer or not isinstance(expires, int):
        return None
    return customer, expires
