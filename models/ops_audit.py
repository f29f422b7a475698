"""The operator page's audit trail: every support action (who, when, what, the answer, the trace id), one row each."""

from __future__ import annotations

from typing import Any

from peewee import AutoField, CharField

from models.base import BaseModel, JSONField, UTCDateTimeField, iso, utcnow


class OpsAudit(BaseModel):
    id = AutoField()
    at = UTCDateTimeField(default=utcnow)
    operator = CharField(max_length=80)  # an OPS_USERS name, or `key:<API caller>`
    action = CharField(max_length=40)  # refund, capture, cancel, retry, sync, replay-dead-letters, republish-event
    target = CharField(max_length=255)  # what it acted on: an intent, an attempt, a topic, an event
    payment_intent_id = CharField(max_length=40, null=True, index=True)  # shown on that intent's timeline
    params = JSONField(default=dict)  # what the operator confirmed (amounts in minor units, the reason)
    # `ops:<operator>:<form key>`: the form's one action, whatever the clicks and reloads.
    idempotency_key = CharField(max_length=255, unique=True)
    outcome = CharField(max_length=40, default="pending")  # pending, ok, or the answer's error code
    answer = JSONField(null=True)  # what came back (ids, statuses, amounts, an error's message): never a secret
    trace_id = CharField(max_length=128)
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "ops_audit"

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": iso(self.at),
            "operator": self.operator,
            "action": self.action,
            "target": self.target,
            "paymentIntentId": self.payment_intent_id,
            "params": self.params,
            "outcome": self.outcome,
            "answer": self.answer,
            "traceId": self.trace_id,
            "finishedAt": iso(self.finished_at),
        }
