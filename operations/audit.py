"""The operator page's audit trail: a row written before a support action runs, finished with its answer.

The row's idempotency key (`ops:<operator>:<form key>`) is unique: a second submit of the same form finds the first
row instead of writing another, so the trail holds one row per action whatever the clicks.
"""

from __future__ import annotations

from typing import Any

from peewee import IntegrityError

from models import OpsAudit, unit_of_work, utcnow
from models.base import write_transaction

SHOWN = 200
# Fields of an operation's answer kept in the trail: what it did, never a client secret or personal data.
ANSWER_FIELDS = (
    "id",
    "status",
    "amount",
    "currency",
    "amountReceived",
    "amountRefunded",
    "amountCapturable",
    "attemptId",
    "reason",
)


def begin(
    *,
    operator: str,
    action: str,
    target: str,
    payment_intent_id: str | None,
    params: dict[str, Any],
    idempotency_key: str,
    trace_id: str,
) -> tuple[OpsAudit, bool]:
    """(the action's row, whether this call wrote it): False when the same form was submitted before."""
    with unit_of_work():
        try:
            with write_transaction():
                row = OpsAudit.create(
                    operator=operator,
                    action=action,
                    target=target[:255],
                    payment_intent_id=payment_intent_id,
                    params=params,
                    idempotency_key=idempotency_key,
                    outcome="pending",
                    trace_id=trace_id[:128],
                )
            return row, True
        except IntegrityError:
            return OpsAudit.get(OpsAudit.idempotency_key == idempotency_key), False


def finish(row: OpsAudit, outcome: str, answer: dict[str, Any]) -> None:
    """Write the action's answer (`ok` or the error's code) into its row."""
    with unit_of_work(), write_transaction():
        OpsAudit.update(outcome=outcome[:40], answer=answer, finished_at=utcnow()).where(
            OpsAudit.id == row.id
        ).execute()
    row.outcome, row.answer = outcome, answer


def summary(envelope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(outcome, answer) of a task's envelope, as the trail keeps it."""
    if "error" in envelope:
        error = envelope["error"]
        return str(error.get("code") or "error"), {"message": str(error.get("message") or "")[:500]}
    response = envelope.get("response") or {}
    kept = {name: response[name] for name in ANSWER_FIELDS if name in response}
    if envelope.get("replayed"):
        kept["replayed"] = True
    return "ok", kept


def entries(payment_intent_id: str | None = None, limit: int = SHOWN) -> list[dict[str, Any]]:
    """The newest rows first: all of them, or one intent's."""
    with unit_of_work():
        query = OpsAudit.select()
        if payment_intent_id is not None:
            query = query.where(OpsAudit.payment_intent_id == payment_intent_id)
        return [row.to_payload() for row in query.order_by(OpsAudit.id.desc()).limit(limit)]


def entry(audit_id: int) -> dict[str, Any] | None:
    with unit_of_work():
        row = OpsAudit.get_or_none(OpsAudit.id == audit_id)
        return row.to_payload() if row else None
