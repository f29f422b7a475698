"""The one function a route calls: hand the operation to its Celery task and wait for the envelope."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery.exceptions import TimeoutError as ResultTimeout
from kombu.exceptions import OperationalError as BrokerUnavailable

from domain.errors import OperationError
from registry import Operation
from settings import get_settings

log = logging.getLogger("api")


def run_operation(
    operation: Operation, payload: Any, *, trace_id: str, idempotency_key: str | None, caller_key: str | None = None
) -> dict[str, Any]:
    """The task's envelope, or OperationError('timeout' | 'service_unavailable')."""
    from tasks.operations import TASKS

    meta = {"traceId": trace_id, "idempotencyKey": idempotency_key, "door": "rest"}
    try:
        result = TASKS[operation.name].apply_async(args=[payload, meta])
    except BrokerUnavailable:
        log.error("Celery broker unavailable; request not accepted")
        raise OperationError("service_unavailable", "The service cannot accept requests right now.") from None
    try:
        return result.get(timeout=get_settings().rest_timeout_ms / 1000, propagate=True)
    except ResultTimeout:
        details = {"idempotencyKey": caller_key} if caller_key else {}
        raise OperationError(
            "timeout", "No result in time; the request goes on. Retry with the same Idempotency-Key.", details
        ) from None
    finally:
        # Results can hold a client secret: delete it from the result store as soon as it is read.
        result.forget()
        # Stop listening for it now, in this greenlet, rather than in a finaliser at shutdown.
        with contextlib.suppress(Exception):
            result.backend.remove_pending_result(result)

