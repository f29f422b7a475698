"""A create is bound by its database round trips (bench/RESULTS.md): the statements it sends stay few."""

from __future__ import annotations

from typing import Any

import pytest

from models import PaymentAttempt, PaymentEvent
from tests.domain.helpers import call, customer_with_card

pytestmark = pytest.mark.integration


def _counting(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the database object sends from now on (peewee's queries and the compiled ones alike)."""
    sent: list[str] = []
    real = db.execute_sql

    def execute_sql(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        sent.append(sql)
        return real(sql, params, *args, **kwargs)

    monkeypatch.setattr(db, "execute_sql", execute_sql)
    return sent


def test_a_confirmed_create_sends_eleven_statements_and_writes_its_events_in_one_insert(
    domain_db, stripe_api, monkeypatch
):
    customer_id = customer_with_card(stripe_api, "dom-count")
    sent = _counting(domain_db, monkeypatch)
    intent = call(
        "create-payment-intent", {"customerId": customer_id, "amount": 1000, "currency": "usd", "confirm": True}
    )
    # claim; method, customer; write-ahead; intent, history, events seen, events, attempt, outcome; early events
    assert len(sent) == 11, "\n".join(s[:120] for s in sent)
    assert sum(s.replace('"', "`").startswith("INSERT INTO `payment_event`") for s in sent) == 1
    events = PaymentEvent.select().where(PaymentEvent.payment_intent_id == intent["id"]).order_by(PaymentEvent.id)
    assert [e.type for e in events] == ["created-payment-intent", "payment-status-changed", "succeeded-payment"]
    (attempt,) = PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == intent["id"])
    assert (attempt.attempt_number, attempt.status, attempt.error_code) == (1, "succeeded", None)
    assert intent["attempts"][0]["attemptId"] == attempt.id


def test_writing_the_same_events_again_writes_nothing(domain_db, stripe_api):
    from domain import payment_events
    from models import PaymentIntent

    customer_id = customer_with_card(stripe_api, "dom-count")
    created = call(
        "create-payment-intent", {"customerId": customer_id, "amount": 1000, "currency": "usd", "confirm": True}
    )
    intent = PaymentIntent.get_by_id(created["id"])
    events = payment_events.events_of_change(intent, None, created=True)
    assert payment_events.announce_all(intent, events) == 0
    assert PaymentEvent.select().where(PaymentEvent.payment_intent_id == intent.id).count() == 3
