"""The base Task every operation runs in: unit of work, trace context, retry rules, envelope."""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import Any

import celery
from peewee import InterfaceError, OperationalError
from playhouse.pool import MaxConnectionsExceeded

import stripe_pacing
from domain.context import OperationContext
from domain.idempotency import IN_USE
from domain.schemas import parse_input
from errors import OperationError, PaceExceeded, TransientError
from execution import (
    begin_execution,
    end_execution,
    note_stripe_may_have_acted,
    stripe_may_have_acted,
    was_replayed,
)
from models import unit_of_work
from observability import metrics
from observability.logs import log_context, reset_log_context
from registry import Operation
from settings import get_settings
from tasks import replies
from tasks.scope import check_scope

log = logging.getLogger("tasks")

# Celery's max_retries=None means "the task's default", not "no limit".
UNBOUNDED = 10**9
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
# How often a task polls while another execution of its request runs (its own redelivery, or Stripe still busy
# with the key): waiting costs no retry.
BUSY_PAUSE_S = (0.5, 1.0)
# Deliveries spent waiting before answering "in use" (retry with the same key): far past any execution's time limit.
MAX_BUSY_RETRIES = 10
# Pause between attempts while the database is away (riding out an outage costs no failure retry).
OUTAGE_PAUSE_S = (0.5, 1.5)


def backoff_with_jitter(retries: int) -> float:
    """Exponential backoff with full jitter: retries of many tasks do not arrive together."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2**retries)))


class OperationTask(celery.Task):
    """Runs one registry operation: validate, call the domain function, answer an envelope.

    The envelope is the Kafka contract's: `{"response": …}` or `{"error": {code, message, status, details}}`.
    Bad input and expected failures are answers; only transient failures are retried.
    """

    abstract = True
    operation: Operation
    acks_late = True
    reject_on_worker_lost = True

    @property
    def resultrepr_maxsize(self) -> int:
        """Celery formats every result for its success line whether it logs it or not (0.6 ms of a create's CPU
        for an envelope): ours logs it only from DebugHeavy on, so otherwise a few characters are formatted."""
        return 1024 if logging.getLogger("celery.app.trace").isEnabledFor(logging.INFO) else 8

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """Celery's, with a fixed repr of the request in the message's headers: building one (saferepr of the
        payload) cost a tenth of a REST read's CPU in the door, and the payload need not travel twice."""
        options.setdefault("argsrepr", f"({self.name} request)")
        options.setdefault("kwargsrepr", "{}")
        return super().apply_async(args, kwargs, **options)

    def run(self, payload: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        meta = meta or {}
        trace_id = str(meta.get("traceId") or uuid.uuid4())
        task_id = self.request.id or str(uuid.uuid4())
        busy = int(meta.get("busyRetries") or 0)  # retries spent waiting for a sibling execution, not on failures
        received_at = meta.get("receivedAt")
        ctx = OperationContext(
            trace_id=trace_id,
            scoped_key=str(meta.get("idempotencyKey") or f"task:{task_id}"),
            owner=task_id,
            final_attempt=self.request.retries - busy >= self.max_retries,
            received_at=float(received_at) if isinstance(received_at, (int, float)) else None,
        )
        # Only the operator page's door names an actor (no other door copies a caller's fields into meta).
        actor = meta.get("actor") if meta.get("door") == "ops" else None
        begin_execution(actor if isinstance(actor, str) and actor else None)
        if meta.get("stripeMayHaveActed"):
            note_stripe_may_have_acted()  # an earlier attempt of this task sent Stripe a mutating request
        door = str(meta.get("door") or "unknown")
        tokens = log_context(trace_id=trace_id, operation=self.operation.name, door=door)
        started = time.monotonic()
        try:
            wait_until = started + self._wait_budget_s()
            # A Stripe call waits for its turn in the shared rate budget no longer than this delivery may wait.
            with metrics.track(self.operation.name, door, "task"), stripe_pacing.deadline(wait_until):
                envelope = self._execute_alone(ctx, payload, meta, busy, wait_until)
            if was_replayed():
                envelope = {**envelope, "replayed": True}  # the stored outcome of an earlier request: say so
            if self._should_wait_for_first_attempt(envelope, meta):
                # Kafka has no caller to retry a 409: wait (as long as the gateway would) for the first
                # attempt, then replay its result.
                waiting = {
                    **meta,
                    "waitUntil": meta.get("waitUntil") or time.time() + get_settings().rest_timeout_ms / 1000,
                    "busyRetries": busy + 1,  # a wait is not a failure: it spends none of the retry budget
                }
                raise self.retry(args=[payload, waiting], countdown=random.uniform(0.5, 1.0), max_retries=UNBOUNDED)
            try:
                replies.deliver(envelope, {**meta, "traceId": trace_id}, self.operation.name)
            except Exception as exc:
                # An accepted request must end in a reply: try again (the outcome replays) until it goes out.
                log.warning("reply not delivered, retrying: %s", type(exc).__name__)
                raise self.retry(
                    countdown=backoff_with_jitter(min(self.request.retries, 5)), max_retries=UNBOUNDED
                ) from exc
            outcome = envelope["error"]["code"] if "error" in envelope else "ok"
            metrics.OPERATIONS.labels(self.operation.name, door, outcome).inc()
            log.info("operation finished: %s in %.0f ms", outcome, (time.monotonic() - started) * 1000)
        finally:
            end_execution()
            reset_log_context(tokens)
        return envelope

    @staticmethod
    def _should_wait_for_first_attempt(envelope: dict[str, Any], meta: dict[str, Any]) -> bool:
        in_use = envelope.get("error", {}).get("code") == "idempotency_key_in_use"
        deadline = meta.get("waitUntil")
        return in_use and bool(meta.get("waitInFlight")) and (deadline is None or time.time() < float(deadline))

    @staticmethod
    def _first_attempt_at(meta: dict[str, Any]) -> float:
        first = meta.get("firstAttemptAt")
        return float(first) if isinstance(first, (int, float)) else time.time()

    def _riding_out_an_outage(self, meta: dict[str, Any]) -> bool:
        """Whether a database outage is still worth waiting out: as long as the gateway waits for an answer."""
        return time.time() - self._first_attempt_at(meta) < get_settings().rest_timeout_ms / 1000

    def _wait_budget_s(self) -> float:
        """Half the soft time limit: what runs after the wait keeps the other half (and the hard limit's margin)
        for its own Stripe call, so a waiting delivery is never killed with a failure stored for the task id."""
        limit = self.soft_time_limit or self.app.conf.task_soft_time_limit or self.app.conf.task_time_limit or 60
        return float(limit) / 2

    def _execute_alone(
        self, ctx: OperationContext, payload: Any, meta: dict[str, Any], busy: int, deadline: float
    ) -> dict[str, Any]:
        """`_execute`, waiting while another execution of the same request runs, then running again: that replays
        its outcome, or takes the claim over if its lease lapsed. A redelivery of a running task shares its task id,
        and so its result: it must answer what the first answers, never an error of its own."""
        waited = False
        while True:
            try:
                return self._execute(ctx, payload, meta, busy)
            except TransientError as exc:
                if exc.code != IN_USE:
                    raise
                # Another execution holds the claim, or Stripe still runs our key: it will answer.
                pause = random.uniform(*BUSY_PAUSE_S)
                if not waited:
                    log.info("another execution of this request is running: waiting for it")
                    waited = True
                if time.monotonic() + pause >= deadline:
                    if busy >= MAX_BUSY_RETRIES:
                        log.error("another execution of this request never finished: answering in use")
                        still = OperationError(IN_USE, "Still being processed; retry with the same key.")
                        return {"error": still.to_error()}
                    # Past this delivery's time budget: go on waiting in a later one, without spending a retry.
                    raise self.retry(
                        args=[payload, {**meta, "busyRetries": busy + 1}], countdown=pause, max_retries=UNBOUNDED
                    ) from None
                time.sleep(pause)  # cooperative under gevent

    def _execute(self, ctx: OperationContext, payload: Any, meta: dict[str, Any], busy: int = 0) -> dict[str, Any]:
        try:
            inp = parse_input(self.operation.schema, payload)
            with unit_of_work():
                scope = meta.get("customerScope")
                if scope is not None:
                    # A browser's token: only its own customer's records, before anything reaches Stripe.
                    check_scope(self.operation.name, inp, str(scope))
                return {"response": self.operation.resolve_handler()(ctx, inp)}
        except OperationError as exc:
            return {"error": exc.to_error()}
        # A pool that stayed full (MaxConnectionsExceeded, a ValueError) is as transient as a database gone away:
        # after a Stripe call it must end in a retry that replays Stripe under the same key, never in a 500.
        except (TransientError, OperationalError, InterfaceError, MaxConnectionsExceeded) as exc:
            if isinstance(exc, TransientError) and exc.code == IN_USE:
                raise  # a sibling execution will answer: _execute_alone waits for it
            # The next attempt must know that this one may have reached Stripe, whatever it fails on.
            retry_meta = {**meta, "firstAttemptAt": self._first_attempt_at(meta)}
            if stripe_may_have_acted():
                retry_meta["stripeMayHaveActed"] = True
            if isinstance(exc, PaceExceeded) and self._riding_out_an_outage(meta):
                # Stripe's rate budget is booked beyond this delivery's wait: back to the queue, nothing sent, no
                # failure retry spent (a burst is a pace, not an error), while the caller still waits.
                log.info("Stripe's rate budget is booked for %.1f s: the task waits in the queue", exc.retry_after_s)
                pause = min(exc.retry_after_s, BACKOFF_CAP_S) * random.uniform(0.5, 1.0)
                raise self.retry(
                    args=[payload, {**retry_meta, "busyRetries": busy + 1}],
                    countdown=max(pause, 0.05),
                    max_retries=UNBOUNDED,
                ) from None
            if not isinstance(exc, TransientError) and self._riding_out_an_outage(meta):
                # The database is away: ride it out while the caller still waits, spending no failure retry (an
                # outage that outlasts a few quick retries must not strand a claim its caller cannot retry).
                log.warning("database unavailable, waiting for it: %s", type(exc).__name__)
                waiting = {**retry_meta, "busyRetries": busy + 1}
                raise self.retry(
                    args=[payload, waiting], countdown=random.uniform(*OUTAGE_PAUSE_S), max_retries=UNBOUNDED
                ) from None
            if not ctx.final_attempt:
                log.warning("transient failure, retrying: %s", type(exc).__name__)
                raise self.retry(
                    args=[payload, retry_meta],
                    countdown=backoff_with_jitter(self.request.retries - busy),
                    exc=exc,
                    max_retries=self.max_retries + busy,
                ) from None
            log.error("transient failure, retries exhausted: %s", type(exc).__name__)
            if stripe_may_have_acted():
                return {"error": outcome_unknown()}
            code = exc.code if isinstance(exc, TransientError) else "service_unavailable"
            return {"error": OperationError(code, "A dependency is unavailable; retry with the same key.").to_error()}
        except celery.exceptions.SoftTimeLimitExceeded:
            if stripe_may_have_acted():
                return {"error": outcome_unknown()}
            return {
                "error": OperationError("timeout", "The operation took too long; retry with the same key.").to_error()
            }
        except Exception:
            log.exception("operation failed unexpectedly")
            # internal_error means nothing was sent to Stripe: a caller may read it as "nothing happened".
            return {"error": outcome_unknown() if stripe_may_have_acted() else internal_error()}


def outcome_unknown() -> dict[str, Any]:
    """The answer when Stripe may have acted and the service cannot tell: the caller must retry with the same key
    (which replays or finishes the work), never send the request again under a new one."""
    return OperationError(
        "outcome_unknown",
        "Stripe may have acted on this request and its outcome is not known yet. Retry with the same idempotency "
        "key (never a new one): the retry answers what happened.",
    ).to_error()


def internal_error() -> dict[str, Any]:
    return OperationError("internal_error", "Internal error; nothing was sent to Stripe.").to_error()


def max_retries() -> int:
    return get_settings().task_max_retries
