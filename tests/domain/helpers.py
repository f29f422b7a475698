"""Call domain functions directly, as a task would, without Celery."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from domain import idempotency, schemas
from domain.context import OperationContext
from models import IdempotencyRecord, utcnow
from registry import OPERATIONS


def context(key: str | None = None, owner: str | None = None, final_attempt: bool = True) -> OperationContext:
    key = key or f"test:{uuid.uuid4()}"
    return OperationContext(
        trace_id="trace-test", scoped_key=key, owner=owner or f"owner-{uuid.uuid4()}", final_attempt=final_attempt
    )


REQUEST = {"amount": 100, "currency": "usd"}


def take(key: str, request: dict = REQUEST, owner: str = "task-a", ttl_s: int = 3600) -> idempotency.Claim:
    """Claim `key` for a create-refund request, as a task would."""
    return idempotency.claim("create-refund", key, request, owner, "refund", ttl_s, "trace")


def lapse(record_id: int) -> None:
    """What a SIGKILL leaves behind: nobody renews the execution's lease any more, and it runs out."""
    IdempotencyRecord.update(execution_until=utcnow() - dt.timedelta(seconds=1)).where(
        IdempotencyRecord.id == record_id
    ).execute()


class Killed(BaseException):
    """What a time limit or a kill raises in a gevent greenlet (gevent.Timeout, GreenletExit are BaseExceptions)."""


def call(operation: str, payload: dict[str, Any], ctx: OperationContext | None = None) -> Any:
    """The operation's domain function, as its task calls it (the registry names both)."""
    op = OPERATIONS[operation]
    return op.resolve_handler()(ctx or context(), schemas.parse_input(op.schema, payload))


def customer_with_card(stripe_api: Any, prefix: str, number: str = "4242424242424242") -> str:
    """A new customer whose default card is vaulted, as create-payment-method leaves it: ready to pay."""
    from tests.conftest import make_card

    customer_id = f"{prefix}-{uuid.uuid4().hex[:10]}"
    method = {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": True}
    call("create-payment-method", method)
    return customer_id
