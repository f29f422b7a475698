"""OAuth2 bearer tokens (JWT) of the REST door, beside the API keys: RS256 with the identity provider's keys (a JWKS
URL or file, by `kid`) or HS256 with a shared secret; `iss`, `aud` and `exp` required and checked. Each token's
client is a caller of its own (idempotency scopes, rate limits); its scopes say which operations it may run."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import jwt

from doors.auth import TOKEN_AUDIENCE
from registry import Operation
from settings import Settings

log = logging.getLogger("doors.oauth")

SCOPE_READ = "payments:read"
SCOPE_WRITE = "payments:write"
SCOPE_REFUND = "payments:refund"
SCOPES = (SCOPE_READ, SCOPE_WRITE, SCOPE_REFUND)

# Three base64url parts; the last may be empty (alg "none"), which is refused below with a clear reason.
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
MAX_TOKEN_CHARS = 16384
# RFC 7518 §3.2: an HS256 key is at least as long as the hash (256 bits).
MIN_HS256_SECRET_BYTES = 32
CLIENT_CLAIMS = ("client_id", "azp", "sub")
SAFE_CLIENT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
JWKS_TIMEOUT_S = 5.0
JWKS_LIFESPAN_S = 300.0
# An unknown kid fetches the JWKS again at most this often: forged kids cannot make us flood the provider.
JWKS_REFRESH_COOLDOWN_S = 30.0


class TokenRefused(Exception):
    """The token is not one of ours (401 invalid_token); the reason is safe to answer and log (no token in it)."""


class KeysUnavailable(Exception):
    """The identity provider's keys cannot be read now (503): the token may be fine."""


# What PyJWT's errors are told as: the first entry whose error matches (a subclass before its base).
_DECODE_ERRORS: tuple[tuple[type[Exception], type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, TokenRefused, "the token has expired"),
    (jwt.InvalidAudienceError, TokenRefused, "the token is not for this API (aud)"),
    (jwt.InvalidIssuerError, TokenRefused, "the token is from another issuer (iss)"),
    (jwt.InvalidSignatureError, TokenRefused, "the token's signature is not valid"),
    (Exception, TokenRefused, "the token is not valid"),
)
_JWKS_ERRORS: tuple[tuple[type[Exception], type[Exception], str], ...] = (
    (jwt.PyJWKClientConnectionError, KeysUnavailable, "the identity provider's JWKS cannot be fetched"),
    (jwt.PyJWKSetError, KeysUnavailable, "the identity provider's JWKS has no usable key"),
    (jwt.PyJWKClientError, TokenRefused, "the token's key (kid) is not the identity provider's"),
)


def _told_as(error: Exception, table: tuple[tuple[type[Exception], type[Exception], str], ...]) -> Exception:
    """The refusal `table` gives for `error` (the error itself when no entry matches)."""
    return next((told(message) for kind, told, message in table if isinstance(error, kind)), error)


@dataclass(frozen=True)
class TokenCaller:
    caller_id: str  # `oauth:<issuer hash>:<client>`: scopes idempotency keys and rate limits
    scopes: frozenset[str]


def looks_like_jwt(credential: str) -> bool:
    """A bearer shaped as a JWT (three dot-separated base64url parts) goes through the token checks."""
    return len(credential) <= MAX_TOKEN_CHARS and JWT_SHAPE.fullmatch(credential) is not None


def required_scope(operation: Operation) -> str:
    """The scope a token needs for an operation: reads `payments:read`, giving money back `payments:refund`,
    every other change (capture and cancel included) `payments:write`."""
    if operation.name == "create-refund":
        return SCOPE_REFUND
    if operation.method == "GET":
        return SCOPE_READ
    return SCOPE_WRITE


def caller_id(issuer: str, client: str) -> str:
    """The caller a token's client is: bounded, safe characters; a client id that is not (an e-mail address as
    `sub`, a URL, anything long) is named by its hash, marked `#` so that it never equals a plain name."""
    issuer_hash = hashlib.sha256(issuer.encode()).hexdigest()[:8]
    name = client if SAFE_CLIENT.fullmatch(client) else "#" + hashlib.sha256(client.encode()).hexdigest()[:32]
    return f"oauth:{issuer_hash}:{name}"


def granted_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """`scope` (RFC 9068: space-separated) or `scp` (a list, or a string, as some providers write it)."""
    scopes: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            scopes.update(value.split())
        elif isinstance(value, list):
            scopes.update(item for item in value if isinstance(item, str))
    return frozenset(scopes)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _JwksFile:
    """A JWKS read from a file, read again when a token names a kid it lacks and the file changed (a rotation)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime, self._keys = self._read()

    def _read(self) -> tuple[float, jwt.PyJWKSet]:
        try:
            mtime = os.stat(self.path).st_mtime
            with open(self.path, encoding="utf-8") as handle:
                document = json.load(handle)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            return mtime, jwt.PyJWKSet.from_dict(document)
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"OAUTH_JWKS_FILE {self.path!r} is not a readable JWKS: {exc}") from None

    def key(self, kid: str) -> jwt.PyJWK | None:
        found = _by_kid(self._keys, kid)
        if found is not None:
            return found
        with self._lock:
            try:
                if os.stat(self.path).st_mtime != self._mtime:
                    self._mtime, self._keys = self._read()
            except (OSError, ValueError):  # mid-rewrite or gone: keep the keys we have
                log.warning("OAUTH_JWKS_FILE could not be read again; keeping the keys read before")
        return _by_kid(self._keys, kid)


def _by_kid(keys: jwt.PyJWKSet, kid: str) -> jwt.PyJWK | None:
    try:
        return keys[kid]
    except KeyError:
        return None


class JwtVerifier:
    """Checks a bearer JWT and names its caller. The key is picked by the token's algorithm — RS256 only from the
    JWKS, HS256 only with the configured secret — so a public key can never be taken as an HMAC secret."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str = "",
        jwks_file: str = "",
        hs256_secret: str = "",
        leeway_s: int = 30,
        refresh_cooldown_s: float = JWKS_REFRESH_COOLDOWN_S,
    ) -> None:
        if not (jwks_url or jwks_file or hs256_secret):
            raise ValueError("OAuth2 tokens need OAUTH_JWKS_URL, OAUTH_JWKS_FILE or OAUTH_HS256_SECRET")
        if not issuer or not audience:
            raise ValueError("OAuth2 tokens need OAUTH_ISSUER and OAUTH_AUDIENCE (both are checked in every token)")
        if audience == TOKEN_AUDIENCE:
            raise ValueError(f"OAUTH_AUDIENCE cannot be {TOKEN_AUDIENCE!r}: that is the Socket.IO customer tokens'")
        if jwks_url and jwks_file:
            raise ValueError("set OAUTH_JWKS_URL or OAUTH_JWKS_FILE, not both")
        if hs256_secret and len(hs256_secret.encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"OAUTH_HS256_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes")
        if leeway_s < 0:
            raise ValueError("OAUTH_LEEWAY_S cannot be negative")
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self._secret = hs256_secret.encode() if hs256_secret else None
        self._file = _JwksFile(jwks_file) if jwks_file else None
        self._client: jwt.PyJWKClient | None = None
        if jwks_url:
            url = urlparse(jwks_url)
            # Keys fetched in the clear could be swapped on the way: https, but for a provider on this host.
            if url.scheme != "https" and not (url.scheme == "http" and _loopback(url.hostname or "")):
                raise ValueError("OAUTH_JWKS_URL must be https (plain http only to localhost)")
            self._client = jwt.PyJWKClient(
                jwks_url,
                cache_jwk_set=True,
                lifespan=JWKS_LIFESPAN_S,
                timeout=JWKS_TIMEOUT_S,
                cooldown_duration=refresh_cooldown_s,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """The verifier the settings describe, None while no key source is set (tokens off); a partial or unsafe
        configuration raises ValueError, so the door does not start half-configured."""
        if not (settings.oauth_jwks_url or settings.oauth_jwks_file or settings.oauth_hs256_secret):
            if settings.oauth_issuer or settings.oauth_audience:
                raise ValueError("OAUTH_ISSUER/OAUTH_AUDIENCE set without OAUTH_JWKS_URL, _FILE or OAUTH_HS256_SECRET")
            return None
        return cls(
            issuer=settings.oauth_issuer,
            audience=settings.oauth_audience,
            jwks_url=settings.oauth_jwks_url,
            jwks_file=settings.oauth_jwks_file,
            hs256_secret=settings.oauth_hs256_secret,
            leeway_s=settings.oauth_leeway_s,
        )

    def verify(self, token: str) -> TokenCaller:
        """The caller of a valid token; TokenRefused (401) or KeysUnavailable (503) otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("the token is malformed") from None
        algorithm = header.get("alg")
        key: Any
        if algorithm == "RS256":
            key = self._rsa_key(header.get("kid"))
        elif algorithm == "HS256" and self._secret is not None:
            key = self._secret
        else:
            raise TokenRefused("the token's algorithm is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],  # the one the key was picked for
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.MissingRequiredClaimError as missing:
            raise TokenRefused(f"the token has no {missing.claim!r} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError) as invalid:
            raise _told_as(invalid, _DECODE_ERRORS) from None
        client = next((v for v in (claims.get(c) for c in CLIENT_CLAIMS) if isinstance(v, str) and v), None)
        if client is None:
            raise TokenRefused("the token names no client (client_id, azp or sub)")
        return TokenCaller(caller_id(self.issuer, client), granted_scopes(claims))

    def _rsa_key(self, kid: Any) -> Any:
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("the token names no key (kid)")
        if self._client is not None:
            try:
                jwk = self._client.get_signing_key(kid)
            except (jwt.PyJWKClientError, jwt.PyJWKSetError) as failed:
                raise _told_as(failed, _JWKS_ERRORS) from None
        elif self._file is not None:
            found = self._file.key(kid)
            if found is None:
                raise TokenRefused("the token's key (kid) is not the identity provider's")
            jwk = found
        else:
            raise TokenRefused("the token's algorithm is not accepted")
        # A kid of the set that is not an RSA key for RS256 (an `oct` or EC key, or one meant for PS256) is refused.
        if jwk.key_type != "RSA" or jwk.algorithm_name != "RS256" or jwk.public_key_use not in ("sig", None):
            raise TokenRefused("the token's key (kid) is not an RS256 signing key")
        # A set that carries a private key by mistake: verify with its public half.
        return jwk.key.public_key() if hasattr(jwk.key, "public_key") else jwk.key
