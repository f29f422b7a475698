"""A Stripe call lasts hundreds of ms: outside a transaction the task lends its pooled connection back meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

import stripe_client
from models import PaymentIntent, unit_of_work
from tests.domain.helpers import Killed

pytestmark = pytest.mark.integration


def _watching(db: Any, seen: dict[str, Any]) -> Any:
    def fake_stripe_method(*, params: dict[str, Any], options: dict[str, Any]) -> stripe.StripeObject:
        seen["closed"], seen["in_use"] = db.is_closed(), len(db._in_use)
        return stripe.StripeObject.construct_from({"id": "pi_fake"}, "sk_test_fake")

    return fake_stripe_method


def test_a_stripe_call_outside_a_transaction_gives_the_pooled_connection_back(mariadb):
    seen: dict[str, Any] = {}
    with unit_of_work():
        PaymentIntent.select().count()
        held = len(mariadb._in_use)
        assert not mariadb.is_closed() and held >= 1
        assert stripe_client._call(_watching(mariadb, seen), params={}) == {"id": "pi_fake"}
        assert seen == {"closed": True, "in_use": held - 1}
        PaymentIntent.select().count()  # the next query takes a pooled connection again by itself
        assert not mariadb.is_closed()


def test_a_stripe_call_inside_a_transaction_keeps_its_connection(mariadb):
    seen: dict[str, Any] = {}
    with unit_of_work(), mariadb.atomic():
        PaymentIntent.select().count()
        held = len(mariadb._in_use)
        stripe_client._call(_watching(mariadb, seen), params={})
        assert seen == {"closed": False, "in_use": held}


def _pooled(db: Any) -> list[Any]:
    return [conn for *_, conn in db._connections]


def test_a_killed_unit_of_work_never_gives_its_connection_back_to_the_pool(mariadb):
    with pytest.raises(Killed), unit_of_work():
        PaymentIntent.select().count()
        conn = mariadb.connection()
        raise Killed()  # may have landed mid-read: what is left on the socket belongs to no one
    assert mariadb.is_closed()
    assert all(c is not conn for c in _pooled(mariadb)) and not conn.open


def test_a_failed_unit_of_work_gives_its_healthy_connection_back_to_the_pool(mariadb):
    with pytest.raises(ValueError), unit_of_work():
        PaymentIntent.select().count()
        conn = mariadb.connection()
        raise ValueError("an ordinary failure: the connection itself is fine")
    assert any(c is conn for c in _pooled(mariadb)) and conn.open


def _round_trips(conn: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the pool itself sends on this connection: pings and rollbacks."""
    sent: list[str] = []
    monkeypatch.setattr(conn, "ping", lambda *a, **k: sent.append("ping"), raising=False)
    real_rollback = conn.rollback
    monkeypatch.setattr(conn, "rollback", lambda: (sent.append("rollback"), real_rollback())[1], raising=False)
    return sent


def test_a_connection_handed_back_without_a_transaction_is_neither_rolled_back_nor_pinged_when_reused(
    mariadb, monkeypatch
):
    with unit_of_work():
        PaymentIntent.select().count()
        conn = mariadb.connection()
    sent = _round_trips(conn, monkeypatch)
    with unit_of_work():
        assert mariadb.connection() is conn  # the same pooled connection, used a moment ago
        PaymentIntent.select().count()
    assert sent == []


def test_a_connection_handed_back_inside_a_transaction_is_rolled_back(mariadb, monkeypatch):
    with unit_of_work():
        conn = mariadb.connection()
    sent = _round_trips(conn, monkeypatch)
    with unit_of_work():
        assert mariadb.connection() is conn
        conn.begin()  # left open underneath peewee, as a bug or a failure might leave it
    assert sent == ["rollback"]
    assert any(c is conn for c in _pooled(mariadb))


def test_a_connection_idle_in_the_pool_is_pinged_before_it_is_handed_out(mariadb, monkeypatch):
    import models.base

    with unit_of_work():
        conn = mariadb.connection()
    sent = _round_trips(conn, monkeypatch)
    monkeypatch.setattr(models.base, "PING_AFTER_IDLE_S", 0.0)
    with unit_of_work():
        assert mariadb.connection() is conn
    assert sent == ["ping"]
