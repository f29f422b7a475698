"""Stripe's rate limit as a pace: one budget per Stripe account, shared by every worker through the service's Redis.

Stripe refuses more than its limit per account (429): 100 calls/s in live mode, 25/s in test mode. Every call waits
here for its turn instead, so a burst of payments queues and goes out at the pace Stripe accepts. Two priorities:
a mutating call (POST: every call that moves money, and the steps before it) books the next free slot; a read
(status, sync, look-ups) only goes while the bucket holds more than a reserve, so reads never delay a payment.
Stripe also limits each endpoint (25/s by default, STRIPE_ENDPOINT_RATE_LIMIT): below the account's pace, a call
takes a slot in its resource's bucket too, in the same script.

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
import urllib.parse
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import redis

from errors import PaceExceeded
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

# KEYS: the account's schedule, then (if paced) the endpoint's: each a theoretical arrival time (µs, Redis's clock),
# when its bucket would be full again. ARGV: the caller's longest wait µs (0: only now), then per key its interval
# µs, burst (calls at once) and reserve (slots of the burst this caller may not use). The call goes at the latest
# time each bucket allows; each schedule then counts it at that time (GCRA). Returns {granted, wait µs}: granted,
# the caller starts after the wait; refused (nothing booked), the wait until it could go.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local tats, wait = {}, 0
for i, key in ipairs(KEYS) do
  local interval, burst, reserve = tonumber(ARGV[i * 3 - 1]), tonumber(ARGV[i * 3]), tonumber(ARGV[i * 3 + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local w = tat + interval - (burst - reserve) * interval - now
  if w > wait then wait = w end
end
if wait > max_wait then return {0, wait} end
for i, key in ipairs(KEYS) do
  local start = now + wait
  if tats[i] > start then start = tats[i] end
  local new_tat = start + tonumber(ARGV[i * 3 - 1])
  redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
end
return {1, wait}
"""


@dataclass(frozen=True)
class Bucket:
    """One budget: `interval_us` between calls at the sustained pace, `burst` calls at once, `reserve` of them
    kept from reads."""

    interval_us: float
    burst: int
    reserve: int

    @classmethod
    def of(cls, rate_per_s: float, burst: int | None = None, reserve: int | None = None) -> Bucket:
        burst = burst if burst is not None else max(1, math.floor(rate_per_s * BURST_SHARE))
        reserve = reserve if reserve is not None else math.floor(burst * READ_RESERVE_SHARE)
        return cls(1_000_000 / rate_per_s, burst, reserve)


def book(tats: list[float], now_us: float, buckets: list[Bucket], read: bool, max_wait_us: float) -> tuple:
    """The script's arithmetic for the process-local fallback: (granted, wait µs, new tats)."""
    tats = [max(tat, now_us) for tat in tats]
    wait = 0.0
    for tat, bucket in zip(tats, buckets, strict=True):
        reserve = bucket.reserve if read else 0
        wait = max(wait, tat + bucket.interval_us - (bucket.burst - reserve) * bucket.interval_us - now_us)
    if wait > max_wait_us:
        return False, wait, tats
    start = now_us + wait
    return True, wait, [max(tat, start) + bucket.interval_us for tat, bucket in zip(tats, buckets, strict=True)]


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
    """One account's pace (`account`), and each endpoint's within it (`endpoint`, None: not paced per endpoint)."""

    account: Bucket
    endpoint: Bucket | None
    key: str
    redis_client: redis.Redis | None
    max_wait_s: float

    def __post_init__(self) -> None:
        self._script = self.redis_client.register_script(_GCRA) if self.redis_client is not None else None
        self._local_tats: dict[str, float] = {}
        self._local_lock = threading.Lock()
        self._redis_down_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Pacer | None:
        """The process's pacer from STRIPE_RATE_LIMIT (None when 0) and STRIPE_ENDPOINT_RATE_LIMIT over the
        service's Redis (none: each process alone)."""
        rate = settings.stripe_calls_per_s
        if rate <= 0:
            return None
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
        per_endpoint = settings.stripe_endpoint_rate_limit
        return cls(
            account=Bucket.of(rate),
            # An endpoint at or above the account's pace never binds: only the account is paced.
            endpoint=Bucket.of(per_endpoint) if 0 < per_endpoint < rate else None,
            key=f"vyp-stripe-pace:{{{account}}}",  # a hash tag: the endpoint keys beside it share its cluster slot
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

    def book(self, priority: str, max_wait_s: float, endpoint: str | None = None) -> tuple[bool, float]:
        """Ask once for a slot: (granted, wait s). A mutating call books up to `max_wait_s` ahead; a read only now,
        and only above the reserve."""
        read = priority == READ
        max_wait_us = 0.0 if read else max_wait_s * 1_000_000
        keys, buckets = [self.key], [self.account]
        if self.endpoint is not None and endpoint:
            keys.append(f"{self.key}:{endpoint}")
            buckets.append(self.endpoint)
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            args: list[float] = [max_wait_us]
            for bucket in buckets:
                args += [bucket.interval_us, bucket.burst, bucket.reserve if read else 0]
            try:
                granted, wait_us = self._script(keys=keys, args=args)
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
            tats = [self._local_tats.get(key, 0.0) for key in keys]
            granted, wait_us, tats = book(tats, now_us, buckets, read, max_wait_us)
            self._local_tats.update(zip(keys, tats, strict=True))
        return granted, wait_us / 1_000_000

    def acquire(self, priority: str, endpoint: str | None = None) -> None:
        """Wait for this call's turn, within its budget; `PaceExceeded` past it (nothing was sent)."""
        started = time.monotonic()
        end = started + self._budget_s()
        while True:
            budget = max(0.0, end - time.monotonic())
            granted, wait_s = self.book(priority, budget, endpoint)
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


def endpoint_of(url: str) -> str:
    """The Stripe resource a call addresses (`/v1/payment_intents/pi_1/confirm` → `payment_intents`): Stripe's
    per-endpoint limit, counted per resource (the coarser reading of it, so never above Stripe's)."""
    parts = urllib.parse.urlsplit(url).path.strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0] in ("v1", "v2") else parts[0]


def pace(method: str, url: str) -> None:
    """Wait for a Stripe call's turn: `method` is its HTTP method (GET is a read, anything else mutates)."""
    current = pacer()
    if current is not None:
        current.acquire(READ if method.lower() == "get" else MUTATING, endpoint_of(url))
