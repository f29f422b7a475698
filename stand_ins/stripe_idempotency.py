"""Stripe API v1's documented idempotency, emulated once for every Stripe stand-in in the tree.

https://docs.stripe.com/api/idempotent_requests — what this keeps:
- A key is scoped by the account (the `Authorization` header) and honoured on POST only.
- The first request with a key executes; its saved result (status, body, headers) is replayed for 24 h to every
  request with the same key and the same parameters, with `Idempotent-Replayed: true`, 5xx answers included.
- A result is saved only when the endpoint began executing: 2xx, 402 (card errors), and a 5xx after acting.
  Validation failures (400/401/403/404…), 409, 429 and a 5xx before executing are not saved: the key is free again.
- The same key with other parameters: 400 `idempotency_error` (not saved). The same key while the first request
  still executes: 409 `idempotency_key_in_use` (not saved).
- `Stripe-Should-Retry` on a 5xx: `false` when Stripe acted (a retry would only replay it), `true` when it did not.

Use: `begin()` answers at once (a replay or a refusal) or hands out an `Execution`; run the request, then settle
it with `finish()` (or `abandon()` when it never ran). Thread-safe; the clock is injectable for tests.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_TTL_S = 24 * 3600.0
JSON = {"Content-Type": "application/json"}
REPLAYED = "Idempotent-Replayed"
SHOULD_RETRY = "Stripe-Should-Retry"

Scope = tuple[str, str]  # (Authorization header, Idempotency-Key)
Fingerprint = tuple[str, str, tuple[tuple[str, str], ...]]  # (method, path, sorted form parameters)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as Stripe sends it."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))

    def json(self) -> dict:
        return json.loads(self.body or b"{}")


@dataclass(frozen=True)
class Execution:
    """Leave to execute one request; `scope` is None when no key applies (nothing will be saved)."""

    scope: Scope | None
    fingerprint: Fingerprint
    started_at: float


@dataclass(frozen=True)
class _Saved:
    fingerprint: Fingerprint
    answer: Answer
    started_at: float


def stripe_error(status: int, error_type: str, message: str, **extra: str) -> Answer:
    """A Stripe error answer: `{"error": {"type", "message", ...}}`."""
    return Answer(status, json.dumps({"error": {"type": error_type, "message": message, **extra}}).encode())


def fingerprint(method: str, path: str, body: bytes) -> Fingerprint:
    """What Stripe compares: the endpoint and the form parameters, in any order."""
    params = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return (method.upper(), path, tuple(sorted(params)))


def endpoint_acted(status: int) -> bool:
    """Whether an endpoint's own answer shows it acted: a success, or a card error (the attempt is recorded)."""
    return 200 <= status < 300 or status == 402


def is_saved(status: int, acted_before: bool) -> bool:
    """Whether Stripe saves an answer under its key: only what began executing."""
    return endpoint_acted(status) or (status >= 500 and acted_before)


class StripeIdempotency:
    """Saved answers per (Authorization, Idempotency-Key), replayed for `ttl_s` seconds."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._executing: dict[Scope, Fingerprint] = {}
        self._saved: OrderedDict[Scope, _Saved] = OrderedDict()  # oldest first, so expiry stops at the first live one

    def begin(
        self, method: str, path: str, body: bytes, *, authorization: str = "", key: str | None = None
    ) -> Answer | Execution:
        """An answer without executing (replay, 400 `idempotency_error`, 409 in use), or leave to execute."""
        now = self._clock()
        fp = fingerprint(method, path, body)
        if not key or method.upper() != "POST":
            return Execution(None, fp, now)  # Stripe ignores keys on GET and DELETE
        scope = (authorization, key)
        with self._lock:
            self._expire(now, scope)
            if scope in self._executing:
                return _in_use(key)
            saved = self._saved.get(scope)
            if saved is None:
                self._executing[scope] = fp
                return Execution(scope, fp, now)
        if saved.fingerprint != fp:
            return _reused(key, saved.fingerprint, fp)
        return Answer(saved.answer.status, saved.answer.body, {**saved.answer.headers, REPLAYED: "true"})

    def finish(self, execution: Execution, answer: Answer, *, acted: bool = True) -> Answer:
        """Settle an execution with its answer: saved when Stripe saves it; the answer to send is returned.
        `acted` says whether the endpoint began executing (it only matters for a 5xx)."""
        if answer.status >= 500:
            # Stripe's hint to its SDKs: retrying a saved 5xx only replays it; one that did not act may be retried.
            answer = Answer(answer.status, answer.body, {**answer.headers, SHOULD_RETRY: "false" if acted else "true"})
        if execution.scope is None:
            return answer
        with self._lock:
            self._executing.pop(execution.scope, None)
            if is_saved(answer.status, acted):
                self._saved[execution.scope] = _Saved(execution.fingerprint, answer, execution.started_at)
                self._saved.move_to_end(execution.scope)
        return answer

    def abandon(self, execution: Execution) -> None:
        """The request never ran (or its client left before it did): the key is free again."""
        if execution.scope is not None:
            with self._lock:
                self._executing.pop(execution.scope, None)

    def handle(
        self,
        method: str,
        path: str,
        body: bytes,
        execute: Callable[[], Answer],
        *,
        authorization: str = "",
        key: str | None = None,
    ) -> Answer:
        """begin, execute, finish in one call (synchronous callers); an exception frees the key."""
        started = self.begin(method, path, body, authorization=authorization, key=key)
        if isinstance(started, Answer):
            return started
        try:
            answer = execute()
        except BaseException:
            self.abandon(started)
            raise
        return self.finish(started, answer)

    def clear(self) -> None:
        """Forget every key (saved and executing)."""
        with self._lock:
            self._executing.clear()
            self._saved.clear()

    def _expire(self, now: float, scope: Scope) -> None:
        # Stripe forgets a key once it is 24 h old: the same key then starts afresh.
        while self._saved:
            oldest, saved = next(iter(self._saved.items()))
            if now - saved.started_at < self.ttl_s:
                break
            del self._saved[oldest]
        late = self._saved.get(scope)
        if late is not None and now - late.started_at >= self.ttl_s:  # saved out of start order (a slow one)
            del self._saved[scope]


def _in_use(key: str) -> Answer:
    return stripe_error(
        409,
        "invalid_request_error",
        "There is currently another in-progress request using this Idempotent Key (that probably means you "
        f"submitted twice, and the other request is still going through): {key}. Please try again later.",
        code="idempotency_key_in_use",
    )


def _reused(key: str, first: Fingerprint, now: Fingerprint) -> Answer:
    if first[:2] != now[:2]:
        return stripe_error(
            400,
            "idempotency_error",
            "Keys for idempotent requests can only be used for the same endpoint they were first used for "
            f"('{first[0]} {first[1]}' vs '{now[0]} {now[1]}'). Try using a key other than '{key}' if you meant "
            "to execute a different request.",
        )
    return stripe_error(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        f"Try using a key other than '{key}' if you meant to execute a different request.",
    )
