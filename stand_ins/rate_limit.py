"""Stripe's per-account rate limit as the local stand-ins enforce it (localstripe_server, bench/fake_stripe)."""

from __future__ import annotations

import time
from collections.abc import Callable


class AccountRateLimit:
    """Stripe's per-account limit: a token bucket of `per_second` tokens refilled at `per_second` a second, one
    bucket per API key (0: no limit). Counts what it admitted and refused, and the most admitted in a second."""

    def __init__(self, per_second: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # account -> (tokens, when counted)
        self.admitted = 0
        self.refused = 0
        self._second = (0, 0)  # (a clock second, calls admitted in it)
        self.peak_per_second = 0  # the most admitted in one clock second: whether a burst reached the limit

    def admit(self, account: str) -> bool:
        now = self.clock()
        if self.per_second > 0:
            tokens, then = self.buckets.get(account, (float(self.per_second), now))
            tokens = min(float(self.per_second), tokens + (now - then) * self.per_second)
            if tokens < 1:
                self.buckets[account] = (tokens, now)
                self.refused += 1
                return False
            self.buckets[account] = (tokens - 1, now)
        self.admitted += 1
        second, count = self._second
        self._second = (int(now), count + 1 if second == int(now) else 1)
        self.peak_per_second = max(self.peak_per_second, self._second[1])
        return True

    def counts(self) -> dict[str, int]:
        return {
            "perSecond": self.per_second,
            "admitted": self.admitted,
            "refused": self.refused,
            "peakPerSecond": self.peak_per_second,
        }
