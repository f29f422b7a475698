"""Stripe's rate limit as a pace: one budget per Stripe account, shared by every worker through the service's Redis.

Stripe refuses more than its limit per account (429): 100 calls/s in live mode, 25/s in test mode. Every call waits
here for its turn instead, so a burst of payments queues and goes out at the pace Stripe accepts. Two priorities:
a mutating call (POST: every call that moves money, and the steps before it) books the next free slot; a read
(status, sync, look-ups) only goes while the bucket holds more than a reserve, so reads never delay a payment.

Why not the `limits` package (already used by api/limits.py): it answers "may I, now?" (hit/test) but has no
blocking acquire and no priority, and polling it from a hundred greenlets makes a thundering herd. Here one Lua
script does GCRA with reservations: a mutating call is told when its slot is (and sleeps until then); a read is
told how long until the reserve is free. The script uses Redis's clock, so every host paces on one clock.

A wait is bounded (`budget`): by what a Stripe answer may take (STRIPE_TIMEOUT_S) and by the task's own deadline.
Past it `PaceExceeded` is raised, before anything was sent: the task goes back to the queue. Redis unreachable:
each process paces on its own clock meanwhile (logged), never blocking payments on the limiter.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import redis

from domain.errors import PaceExceeded
from observability.metrics import STRIPE_PACE_SECONDS
from settings import Settings, get_settings

log = logging.getLogger(__name__)

MUTATING = "mutating"
READ = "read"
# The bucket holds this share of a second's calls: the rest of Stripe's bucket absorbs the jitter between taking a
# slot and the request reaching Stripe (a slot taken at t may arrive after one taken later), and other users of the
# account (the Dashboard, other services).
BURST_SHARE = 0.8
# Of the bucket, the share reads leave to mutating calls.
READ_RESERVE_SHARE = 0.5
# After Redis failed, how long each process paces alone before asking Redis again (no timeout paid on every call).
REDIS_RETRY_S = 5.0
# A read polls again at least this often while mutating calls hold the bucket (they may drain sooner).
READ_POLL_S = 0.25

# KEYS[1]: the account's theoretical arrival time (µs, Redis's clock): when the bucket would be full again.
# ARGV: interval µs, burst (calls at once), reserve (slots of the burst the caller may not use), longest wait µs the
# caller books ahead (0: only now). Returns {granted, wait µs}: granted, the caller starts after the wait; refused,
# the wait until it could go.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local reserve = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - (burst - reserve) * interval - now
if wait < 0 then wait = 0 end
if wait > max_wait then return {0, wait} end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, wait}
"""


def book(tat_us: float, now_us: float, interval_us: float, burst: int, reserve: int, max_wait_us: float) -> tuple:
    """The script's arithmetic for the process-local fallback: (granted, wait µs, new tat)."""
    tat_us = max(tat_us, now_us)
    new_tat = tat_us + interval_us
    wait = max(0.0, new_tat - (burst - reserve) * interval_us - now_us)
    if wait > max_wait_us:
        return False, wait, tat_us
    return True, wait, new_tat


# When the current task must be done waiting (time.monotonic()); None outside a task.
_deadline: ContextVar[float | None] = ContextVar("stripe_pace_deadline", default=None)


@contextlib.contextmanager
def deadline(at_monotonic: float) -> Iterator[None]:
    """Stripe calls made inside wait for their turn at most until `at_monotonic` (the task's time budget)."""
    token = _deadline.set(at_monotonic)
    try:
        yield
    finally:
        _deadline.reset(token)


@dataclass
class Pacer:
    """One account's pace: `rate_per_s` calls a second, `burst` at once, `reserve` of them kept from reads."""

    rate_per_s: float
    burst: int
    reserve: int
    key: str
    redis_client: redis.Redis | None
    max_wait_s: float

    def __post_init__(self) -> None:
        self.interval_us = 1_000_000 / self.rate_per_s
        self._script = self.redis_client.register_script(_GCRA) if self.redis_client is not None else None
        self._local_tat = 0.0
        self._local_lock = threading.Lock()
        self._redis_down_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Pacer | None:
        """The process's pacer from STRIPE_RATE_LIMIT (None when 0) over the service's Redis (None: local)."""
        rate = settings.stripe_calls_per_s
        if rate <= 0:
            return None
        burst = max(1, math.floor(rate * BURST_SHARE))
        url = settings.redis_url
        client = (
            redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0, health_check_interval=30)
            if url
            else None
        )
        if client is None:
            log.warning("Stripe pacing: no Redis configured, each process paces its own calls")
        # The account is its key (at its address): hashed, so the key itself is never written to Redis.
        account = hashlib.sha256(f"{settings.stripe_api_url}\0{settings.stripe_api_key}".encode()).hexdigest()[:24]
        return cls(
            rate_per_s=rate,
            burst=burst,
            reserve=math.floor(burst * READ_RESERVE_SHARE),
            key=f"vyp-stripe-pace:{account}",
            redis_client=client,
            max_wait_s=settings.stripe_timeout_s,
        )

    def _budget_s(self) -> float:
        """How long this call may wait: at most what a Stripe answer may take, never past the task's deadline."""
        budget = self.max_wait_s
        at = _deadline.get()
        if at is not None:
            budget = min(budget, at - time.monotonic())
        return max(0.0, budget)

    def book(self, priority: str, max_wait_s: float) -> tuple[bool, float]:
        """Ask once for a slot: (granted, wait s). A mutating call books up to `max_wait_s` ahead; a read only now,
        and only above the reserve."""
        reserve = self.reserve if priority == READ else 0
        max_wait_us = max_wait_s * 1_000_000 if priority == MUTATING else 0.0
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            try:
                granted, wait_us = self._script(
                    keys=[self.key], args=[self.interval_us, self.burst, reserve, max_wait_us]
                )
                if self._redis_down_until:
                    log.info("Stripe pacing: Redis answers again, the budget is shared again")
                    self._redis_down_until = 0.0
                return bool(granted), float(wait_us) / 1_000_000
            except redis.RedisError as exc:
                if not self._redis_down_until:
                    log.warning("Stripe pacing: Redis unreachable (%s), this process paces alone", type(exc).__name__)
                self._redis_down_until = time.monotonic() + REDIS_RETRY_S
        with self._local_lock:
            now_us = time.monotonic() * 1_000_000
            granted, wait_us, self._local_tat = book(
                self._local_tat, now_us, self.interval_us, self.burst, reserve, max_wait_us
            )
        return granted, wait_us / 1_000_000

    def acquire(self, priority: str) -> None:
        """Wait for this call's turn, within its budget; `PaceExceeded` past it (nothing was sent)."""
        started = time.monotonic()
        end = started + self._budget_s()
        while True:
            budget = max(0.0, end - time.monotonic())
            granted, wait_s = self.book(priority, budget)
            if granted:
                if wait_s > 0:
                    time.sleep(wait_s)  # our booked slot; cooperative under gevent
                break
            if wait_s > budget:
                STRIPE_PACE_SECONDS.labels(priority).observe(time.monotonic() - started)
                raise PaceExceeded(wait_s)
            time.sleep(min(wait_s, READ_POLL_S) if wait_s > 0 else 0.01)  # a read: ask again once room may be free
        STRIPE_PACE_SECONDS.labels(priority).observe(time.monotonic() - started)


_lock = threading.Lock()
_pacer: Pacer | None = None
_made = False


def pacer() -> Pacer | None:
    """The process's pacer (None: not paced, STRIPE_RATE_LIMIT=0)."""
    global _pacer, _made
    if not _made:
        with _lock:
            if not _made:
                _pacer = Pacer.from_settings(get_settings())
                _made = True
    return _pacer


def reset() -> None:
    """Forget the pacer (tests change the settings)."""
    global _pacer, _made
    with _lock:
        _pacer, _made = None, False


def pace(method: str) -> None:
    """Wait for a Stripe call's turn: `method` is its HTTP method (GET is a read, anything else mutates)."""
    current = pacer()
    if current is not None:
        current.acquire(READ if method.lower() == "get" else MUTATING)
