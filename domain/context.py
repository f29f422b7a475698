"""What every operation knows about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass

from settings import get_settings


@dataclass(frozen=True)
class OperationContext:
    trace_id: str
    # The caller's idempotency key scoped by door ("rest:<api key id>:<key>", "kafka:<topic>:<key>"),
    # or the Celery task id when the caller sent none: a redelivery still cannot act twice.
    scoped_key: str
    owner: str  # the Celery task id (the same on redelivery and retry)
    final_attempt: bool = True  # no retry left: a transient failure gives the key back
    received_at: float | None = None  # epoch seconds a door received the request (a webhook's signature age)

    @property
    def idempotency_ttl_s(self) -> int:
        return get_settings().idempotency_ttl_s
