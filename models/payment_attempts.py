"""Payment attempts: every confirm and capture of an intent (and a create that confirms), numbered per intent."""

from __future__ import annotations

from typing import Any

from peewee import BigIntegerField, CharField, IntegerField

from models import statements
from models.base import BaseModel, UTCDateTimeField, utcnow


class PaymentAttempt(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    payment_intent_id = CharField(max_length=40)
    attempt_number = IntegerField()  # 1, 2, … per intent, in the order the attempts were made
    operation = CharField(max_length=16)  # confirm | capture
    status = CharField(max_length=16)  # processing | requires_action | succeeded | failed
    payment_method_id = CharField(max_length=40, null=True)  # ours: the card a confirm charged
    amount = BigIntegerField(null=True)  # what a capture asked for
    error_code = CharField(max_length=64, null=True)
    error_message = CharField(max_length=500, null=True)
    retry_of = CharField(max_length=40, null=True)  # the failed attempt this one re-runs
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("payment_intent_id", "attempt_number"), True),)

    def to_payload(self) -> dict[str, Any]:
        return {
            "attemptId": self.id,
            **self.columns_as_payload(
                "attempt_number",
                "operation",
                "status",
                "payment_method_id",
                "amount",
                "error_code",
                "error_message",
                "retry_of",
                "created_at",
                "updated_at",
            ),
        }


def attempts_of(payment_intent_id: str) -> list[dict[str, Any]]:
    """An intent's attempts, first first."""
    rows = statements.select("attempts-of-intent", _attempts_of, payment_intent_id)
    return [row.to_payload() for row in rows]


def _attempts_of(payment_intent_id: str) -> Any:
    query = PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == payment_intent_id)
    return query.order_by(PaymentAttempt.attempt_number)


def attempts_by_intent(payment_intent_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The attempts of several intents in one query (a list page)."""
    found: dict[str, list[dict[str, Any]]] = {intent_id: [] for intent_id in payment_intent_ids}
    if not payment_intent_ids:
        return found
    rows = (
        PaymentAttempt.select()
        .where(PaymentAttempt.payment_intent_id.in_(payment_intent_ids))
        .order_by(PaymentAttempt.payment_intent_id, PaymentAttempt.attempt_number)
    )
    for row in rows:
        found[row.payment_intent_id].append(row.to_payload())
    return found
