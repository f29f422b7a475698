"""Stripe's idempotency semantics, on the claim itself."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from domain import idempotency
from errors import OperationError
from models import IdempotencyRecord
from tests.domain.helpers import REQUEST, take

pytestmark = pytest.mark.integration


def test_a_completed_key_replays_its_outcome(domain_db):
    key = str(uuid.uuid4())
    first = take(key)
    idempotency.complete(first, {"response": {"id": first.resource_id}})
    again = take(key, owner="task-b")
    assert again.replay == {"response": {"id": first.resource_id}}


def test_another_request_under_the_same_key_is_reused(domain_db):
    key = str(uuid.uuid4())
    take(key)
    with pytest.raises(OperationError) as refused:
        take(key, {"amount": 101, "currency": "usd"}, owner="task-b")
    assert refused.value.code == "idempotency_key_reused"


def test_the_same_key_on_another_operation_is_reused(domain_db):
    key = str(uuid.uuid4())
    take(key)
    with pytest.raises(OperationError) as refused:
        idempotency.claim("create-payment-intent", key, REQUEST, "task-b", "payment_intent", 3600, "t")
    assert refused.value.code == "idempotency_key_reused"


def test_a_key_in_flight_is_in_use_for_others_but_resumable_by_its_owner(domain_db):
    key = str(uuid.uuid4())
    first = take(key, owner="task-a")
    with pytest.raises(OperationError) as busy:
        take(key, owner="task-b")
    assert busy.value.code == "idempotency_key_in_use"
    idempotency.step_down(first)  # the first execution ended without an outcome: its task retries
    resumed = take(key, owner="task-a")
    assert resumed.resumed and resumed.resource_id == first.resource_id
    with pytest.raises(OperationError):
        take(key, owner="task-b")  # still the owner's, between its retries


def test_a_released_key_can_be_retried_and_keeps_its_resource_id(domain_db):
    key = str(uuid.uuid4())
    first = take(key, owner="task-a")
    idempotency.release(first)
    retry = take(key, owner="task-b")
    assert retry.resumed and retry.resource_id == first.resource_id and retry.replay is None


def test_an_expired_key_starts_afresh(domain_db):
    key = str(uuid.uuid4())
    first = take(key)
    idempotency.complete(first, {"response": {"id": first.resource_id}})
    IdempotencyRecord.update(expires_at=dt.datetime(2000, 1, 1)).where(
        IdempotencyRecord.id == first.record_id
    ).execute()
    fresh = take(key, {"amount": 5, "currency": "usd"}, owner="task-b")
    assert fresh.replay is None and fresh.resource_id != first.resource_id


def test_derived_stripe_keys_are_stable_and_distinct_per_step():
    k1, k2 = idempotency.key_hash("rest:k1"), idempotency.key_hash("rest:k2")
    one = idempotency.stripe_key("create-refund", k1, "refund")
    assert one == idempotency.stripe_key("create-refund", k1, "refund")
    assert one != idempotency.stripe_key("create-refund", k2, "refund")
    assert one != idempotency.stripe_key("create-refund", k1, "other")
    assert len(one) <= 255
