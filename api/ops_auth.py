"""Who opens the operator page, and what they may do there.

Two kinds of operator: a person of OPS_USERS (`name:<password hash>:act|read`, the hash werkzeug's
`generate_password_hash`, given in the browser's Basic prompt), and an API caller (its key as the bearer token, or as
the Basic user name or password, as before OPS_USERS existed). A person's role is their entry's last field; a caller's
scopes come from OPS_KEY_SCOPES (`<caller name>=ops:act`): a caller not listed keeps what every key had, `ops:read`.
`ops:act` (refunds, captures, replays) includes `ops:read`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass

from werkzeug.security import check_password_hash, generate_password_hash

from doors.auth import CALLER_NAME, api_callers, bearer, key_id
from settings import Settings

log = logging.getLogger("api.auth")

READ = "ops:read"
ACT = "ops:act"
ROLES = {"read": frozenset({READ}), "act": frozenset({READ, ACT})}
SCOPES = {READ: ROLES["read"], ACT: ROLES["act"]}
# A caller id of a named API key is `n:<name>` (doors/auth.py); an operator is named `key:<name>` in the audit trail.
NAMED_CALLER = re.compile(r"^n:(.+)$")


@dataclass(frozen=True)
class Operator:
    name: str  # in the audit trail, the idempotency scope and the ztracking cause: never a secret
    scopes: frozenset[str]
    caller_id: str  # what the rate limits and the access log count by

    @property
    def can_act(self) -> bool:
        return ACT in self.scopes


@functools.lru_cache(maxsize=8)
def ops_users(entries: tuple[str, ...]) -> dict[str, tuple[str, frozenset[str]]]:
    """{name: (password hash, scopes)} of OPS_USERS; a malformed entry is skipped with a warning (never logged)."""
    users = {}
    for entry in entries:
        name, _, rest = entry.partition(":")
        password_hash, _, role = rest.rpartition(":")
        if not CALLER_NAME.fullmatch(name) or not password_hash or role not in ROLES:
            log.warning("OPS_USERS entry %d ignored: expected name:<password hash>:act|read", entries.index(entry))
            continue
        users[name] = (password_hash, ROLES[role])
    return users


@functools.lru_cache(maxsize=8)
def key_scopes(entries: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """{caller name: scopes} of OPS_KEY_SCOPES (`name=ops:act` or `name=ops:read`)."""
    scopes: dict[str, frozenset[str]] = {}
    for entry in entries:
        name, _, scope = entry.partition("=")
        if scope.strip() in SCOPES:
            scopes[name.strip()] = scopes.get(name.strip(), frozenset()) | SCOPES[scope.strip()]
        else:
            log.warning("OPS_KEY_SCOPES entry %r ignored: expected <caller name>=ops:act|ops:read", name.strip())
    return scopes


@functools.cache
def _dummy_hash() -> str:
    return generate_password_hash("not a password of anyone")


# A browser sends the password with every request: a check that passed is remembered this long, by a digest under a
# key of this process only (never the password), so that a page costs one scrypt a minute, not one per request.
VERIFIED_FOR_S = 60.0
_process_key = secrets.token_bytes(32)
_verified: dict[bytes, float] = {}


def _password_ok(name: str, password: str, password_hash: str) -> bool:
    digest = hmac.new(_process_key, "\0".join((name, password, password_hash)).encode(), hashlib.sha256).digest()
    now = time.monotonic()
    if _verified.get(digest, 0.0) > now:
        return True
    if not check_password_hash(password_hash, password):
        return False
    if len(_verified) > 1000:  # a bound, whoever logs in
        _verified.clear()
    _verified[digest] = now + VERIFIED_FOR_S
    return True


def _person(name: str, password: str, settings: Settings) -> Operator | None:
    known = ops_users(settings.ops_users).get(name)
    if known is None:
        check_password_hash(_dummy_hash(), password)  # an unknown name costs a check too: timing names nobody
        return None
    if not _password_ok(name, password, known[0]):
        return None
    return Operator(name=name, scopes=known[1], caller_id=f"ops-user:{name}")


def _caller(caller_id: str, settings: Settings) -> Operator:
    named = NAMED_CALLER.fullmatch(caller_id)
    label = named.group(1) if named else caller_id
    scopes = key_scopes(settings.ops_key_scopes).get(label, ROLES["read"]) if named else ROLES["read"]
    return Operator(name=f"key:{label}", scopes=scopes, caller_id=caller_id)


def operator_of(header: str, settings: Settings) -> Operator | None:
    """The operator an Authorization header names, or None: OPS_USERS first for Basic, then an API key (bearer, or
    the Basic user name or password)."""
    keys = settings.api_keys
    if header[:6].lower() != "basic ":
        caller = key_id(bearer(header), keys)
        return _caller(caller, settings) if caller else None
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    if user in ops_users(settings.ops_users):
        return _person(user, password, settings)
    caller = key_id(user, keys) or key_id(password, keys)
    return _caller(caller, settings) if caller else None


def session_secret(settings: Settings) -> str:
    """OPS_SECRET, else one derived from the API keys and OPS_USERS (the same in every web process, different from
    anything else derived from them); empty when there is nothing to derive it from (then nobody can log in)."""
    if settings.ops_secret:
        return settings.ops_secret
    material = sorted(key for _, key in api_callers(settings.api_keys)) + sorted(settings.ops_users)
    if not material:
        return ""
    return hashlib.sha256("\n".join(["vyp-ops-session-secret", *material]).encode()).hexdigest()
