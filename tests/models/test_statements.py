"""Statements whose SQL is built once: they read and write exactly what peewee's own queries do, on both databases."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from domain.ids import new_id
from domain.payment_events import TYPES
from models import (
    IdempotencyRecord,
    PaymentAttempt,
    PaymentEvent,
    PaymentIntent,
    ZtrackingPaymentIntent,
    statements,
    utcnow,
)

pytestmark = pytest.mark.integration


def _intent(**changes: Any) -> PaymentIntent:
    fields: dict[str, Any] = {
        "id": new_id("payment_intent"),
        "customer_id": f"stmt-{uuid.uuid4().hex[:8]}",
        "stripe_customer_id": "cus_x",
        "amount": 1234,
        "currency": "usd",
        "status": "requires_capture",
        "capture_method": "manual",
        "metadata": {"order": "o-1", "nested": {"a": [1, 2]}},
        "last_payment_error": {"code": "card_declined", "message": "declined"},
        "capture_before": dt.datetime(2030, 1, 2, 3, 4, 5, 678000),
        "ztracking_version": 1,
    }
    return PaymentIntent(**{**fields, **changes})


def _stored(model: Any, key: Any) -> dict[str, Any]:
    return dict(model.get_by_id(key).__data__)


def _same_but(a: dict[str, Any], b: dict[str, Any], *differ: str) -> None:
    differ = (*differ, "created_at", "updated_at")  # each row's own time of making
    assert {k: v for k, v in a.items() if k not in differ} == {k: v for k, v in b.items() if k not in differ}


def test_an_inserted_intent_is_stored_as_peewee_saves_it(domain_db):
    ours, theirs = _intent(), _intent()
    statements.insert([ours])
    theirs.save(force_insert=True)
    _same_but(_stored(PaymentIntent, ours.id), _stored(PaymentIntent, theirs.id), "id", "customer_id")
    assert _stored(PaymentIntent, ours.id)["metadata"] == {"order": "o-1", "nested": {"a": [1, 2]}}
    assert not ours.is_dirty()


def test_an_auto_increment_row_gets_its_new_id_like_peewee_create(domain_db):
    now = utcnow()
    common = {
        "operation": "create-refund",
        "fingerprint": "f",
        "state": "in_flight",
        "owner": "o",
        "request": {"x": 1},
        "trace_id": "t",
        "locked_until": now,
    }
    ours = IdempotencyRecord(key_hash=uuid.uuid4().hex, resource_id=new_id("refund"), expires_at=now, **common)
    statements.insert([ours])
    theirs = IdempotencyRecord.create(key_hash=uuid.uuid4().hex, resource_id=new_id("refund"), expires_at=now, **common)
    assert isinstance(ours.id, int) and ours.id > 0
    _same_but(
        _stored(IdempotencyRecord, ours.id), _stored(IdempotencyRecord, theirs.id), "id", "key_hash", "resource_id"
    )
    from models.payment_intents import save_with_history

    intent = _intent()
    snapshot = save_with_history(intent, "test", create=True)  # the intent's insert, then its snapshot's
    assert isinstance(snapshot.id, int)
    assert ZtrackingPaymentIntent.get_by_id(snapshot.id).__data__ == snapshot.__data__


def test_a_duplicate_key_raises_the_integrity_error_the_claim_relies_on(domain_db):
    from peewee import IntegrityError

    intent = _intent()
    statements.insert([intent])
    with pytest.raises(IntegrityError):
        statements.insert([_intent(id=intent.id)])


def test_several_rows_go_in_one_statement_in_the_order_given(domain_db):
    intent_id = new_id("payment_intent")
    # Real types, already published: the suite's event publishers must never pick these up.
    kinds = TYPES[:3]
    events = [
        PaymentEvent(
            event_id=f"vyev_{uuid.uuid4().hex}",
            type=kinds[i],
            payment_intent_id=intent_id,
            shard=i,
            version=1,
            payload={"i": i},
            published_at=utcnow(),
        )
        for i in range(3)
    ]
    statements.insert(events)
    stored = list(PaymentEvent.select().where(PaymentEvent.payment_intent_id == intent_id).order_by(PaymentEvent.id))
    assert [(e.type, e.payload, e.publish_attempts) for e in stored] == [(kinds[i], {"i": i}, 0) for i in range(3)]
    with pytest.raises(ValueError, match="same columns"):
        statements.insert([events[0], PaymentEvent(event_id="x", type="t", payment_intent_id="p", shard=1, version=1)])


def test_a_compiled_select_reads_the_rows_peewee_reads_for_each_value(domain_db):
    intent = _intent()
    statements.insert([intent])
    for number in (2, 1):  # stored out of order: the statement's ORDER BY holds
        PaymentAttempt.create(
            id=new_id("payment_attempt"),
            payment_intent_id=intent.id,
            attempt_number=number,
            operation="confirm",
            status="failed",
        )

    def by_intent(intent_id: str) -> Any:
        query = PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == intent_id)
        return query.order_by(PaymentAttempt.attempt_number)

    for intent_id in (intent.id, "vypi_none", intent.id):
        ours = statements.select("test-attempts", by_intent, intent_id)
        assert [r.__data__ for r in ours] == [r.__data__ for r in by_intent(intent_id)]
    assert [a.attempt_number for a in statements.select("test-attempts", by_intent, intent.id)] == [1, 2]
    found = statements.first(
        "test-intent", lambda i: PaymentIntent.select().where(PaymentIntent.id == i).limit(1), intent.id
    )
    assert found is not None and found.__data__ == PaymentIntent.get_by_id(intent.id).__data__
    assert found.capture_before == dt.datetime(2030, 1, 2, 3, 4, 5, 678000)


def test_a_select_whose_value_is_not_among_its_parameters_is_refused(domain_db):
    with pytest.raises(ValueError, match="exactly once"):
        statements.select("test-constant", lambda _i: PaymentIntent.select().where(PaymentIntent.id == "fixed"), "x")


def test_a_select_that_transforms_its_value_is_refused_rather_than_cached_with_the_first_value(domain_db):
    with pytest.raises(ValueError, match="as it is"):
        statements.select(
            "test-contains",
            lambda i: PaymentIntent.select().where(PaymentIntent.id == i, PaymentIntent.customer_id.contains(i)),
            "x",
        )


def _record(owner: str, **changes: Any) -> IdempotencyRecord:
    now = dt.datetime(2030, 1, 2, 3, 4, 5)  # one time for every record, so that two compare equal
    fields: dict[str, Any] = {
        "key_hash": uuid.uuid4().hex,
        "resource_id": new_id("refund"),
        "operation": "create-refund",
        "fingerprint": "f",
        "state": "in_flight",
        "owner": owner,
        "request": {"x": 1},
        "trace_id": "t",
        "locked_until": now,
        "expires_at": now,
    }
    return IdempotencyRecord.create(**{**fields, **changes})


def _owned(record_id: Any, owner: Any) -> list[Any]:
    return [IdempotencyRecord.id == record_id, IdempotencyRecord.owner == owner]


def test_a_compiled_update_writes_what_peewee_update_writes_and_counts_the_rows(domain_db):
    ours, theirs = _record("o"), _record("o")
    values = {"state": "completed", "outcome": {"response": {"id": "vyre_1", "nested": [1, 2]}}, "updated_at": utcnow()}
    assert statements.update("owned", IdempotencyRecord, values, _owned, ours.id, "o") == 1
    IdempotencyRecord.update(**values).where(*_owned(theirs.id, "o")).execute()
    _same_but(
        _stored(IdempotencyRecord, ours.id), _stored(IdempotencyRecord, theirs.id), "id", "key_hash", "resource_id"
    )
    assert _stored(IdempotencyRecord, ours.id)["outcome"] == {"response": {"id": "vyre_1", "nested": [1, 2]}}
    # The same compiled shape with other values: another row's owner does not match, nothing changes.
    assert statements.update("owned", IdempotencyRecord, {**values, "state": "retryable"}, _owned, ours.id, "x") == 0
    assert _stored(IdempotencyRecord, ours.id)["state"] == "completed"


def test_an_if_unset_value_keeps_what_the_column_holds_already(domain_db):
    record, first, later = _record("o"), dt.datetime(2030, 1, 1, 0, 0, 0), dt.datetime(2031, 1, 1, 0, 0, 0)
    for when in (first, later):
        values = {"stripe_started_at": statements.IfUnset(when), "updated_at": when}
        assert statements.update("owned", IdempotencyRecord, values, _owned, record.id, "o") == 1
    stored = _stored(IdempotencyRecord, record.id)
    assert (stored["stripe_started_at"], stored["updated_at"]) == (first, later)


def test_a_compiled_update_refuses_a_value_the_database_computes(domain_db):
    from peewee import fn

    record = _record("o")
    computed = {"stripe_started_at": fn.COALESCE(IdempotencyRecord.stripe_started_at, utcnow())}
    with pytest.raises(ValueError, match="IfUnset"):
        statements.update("owned", IdempotencyRecord, computed, _owned, record.id, "o")
    assert _stored(IdempotencyRecord, record.id)["stripe_started_at"] is None
