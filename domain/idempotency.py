"""One idempotency mechanism for every operation, with Stripe's semantics.

Same key + same request replays the stored outcome; same key + another request is
`idempotency_key_reused`; a key whose first request is still running is
`idempotency_key_in_use`. A Celery redelivery or retry (same task id) resumes its own claim, but only once no
other execution of it is running: RabbitMQ redelivers an unacked task after a connection loss while the first
delivery may still run, and two executions under one Stripe key race (Stripe answers the second 409). Each
execution holds the claim with its own token and a short lease that a heartbeat renews while it runs; a second
execution waits for the first (`ExecutionInProgress`) and replays its outcome, or takes over once the lease has
lapsed (its worker died). Only the holding execution may store an outcome, give the key back or step down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from peewee import Expression, IntegrityError

from domain.context import OperationContext
from domain.ids import new_id
from errors import OperationError, TransientError
from execution import note_replayed, note_stripe_may_have_acted
from models import IdempotencyRecord, Refund, database, statements, utcnow, write_transaction
from models.base import discard_connection, for_update
from models.refunds import HOLDING_STATUSES
from settings import get_settings

log = logging.getLogger(__name__)

# Long enough to cover a task's retries; past it, a lost claim may be taken over by another owner (or the janitor).
LEASE = dt.timedelta(minutes=5)
# How long a running execution holds the claim against its own redeliveries without a heartbeat: after a SIGKILL
# the redelivered task resumes within this. Several heartbeats long, so a slow database does not lose it.
EXECUTION_LEASE = dt.timedelta(seconds=15)
HEARTBEAT_S = 4.0
IN_USE = "idempotency_key_in_use"


class ExecutionInProgress(TransientError):
    """Another execution of this same request holds the claim (a redelivery of a task that still runs), or Stripe
    is still busy with its key: wait for it, then run again to replay its outcome. Never an answer."""

    def __init__(self, message: str = "Another execution of this request is in progress.") -> None:
        super().__init__(message, code=IN_USE)


class ClaimLost(ExecutionInProgress):
    """This execution's lease lapsed and another execution took the claim over: its writes are rolled back, and
    the holder's outcome is the answer."""

    def __init__(self) -> None:
        super().__init__("This execution's claim was taken over by another execution of the request.")


def key_hash(scoped_key: str) -> str:
    return hashlib.sha256(scoped_key.encode("utf-8")).hexdigest()


def fingerprint(operation: str, canonical_request: dict[str, Any]) -> str:
    """What makes two requests "the same": the operation and the request with defaults filled."""
    body = json.dumps([operation, canonical_request], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def stripe_key(operation: str, resource_id: str, step: str) -> str:
    """The Idempotency-Key sent to Stripe: derived from the claim's own resource id, so every retry of this
    request repeats it exactly, and a key reused after it expired here never meets the old one at Stripe."""
    return f"vy-{operation}-{resource_id}-{step}"


@dataclass(frozen=True)
class Claim:
    """The right to execute an operation once, for this key."""

    record_id: int
    resource_id: str  # our id for what the operation creates, fixed at first claim
    key_hash: str
    trace_id: str  # the first attempt's trace id, reused in every Stripe parameter
    owner: str  # who holds it: only the holder may complete or release it
    resumed: bool  # a previous attempt may have reached Stripe already
    replay: dict[str, Any] | None = None  # set instead when the outcome is already stored
    stripe_params: dict[str, Any] | None = None  # what the first attempt sent to Stripe, to send again
    execution: str | None = None  # this execution's token: the owner's other executions may not act on the claim
    stripe_started: bool = False  # a Stripe call that may move money began under this claim (committed before it)
    stripe_unknown: str | None = None  # why Stripe's last answer left the outcome unknown (resolved by a look-up)
    stripe_step: int = 1  # the round of derived keys; a new round only once the old key provably did not act
    created_at: dt.datetime | None = None  # when the key was first claimed: the window a look-up at Stripe searches

    def recorded_stripe_params(self) -> dict[str, Any]:
        """What the claim's Stripe call sends, recorded by `start_stripe_call` before any call: a claim without it
        started none, and reading it then is a bug in the caller, not a case to handle."""
        if self.stripe_params is None:
            raise RuntimeError(f"idempotency record {self.record_id}: no Stripe call was started")
        return self.stripe_params

    def stripe_key(self, operation: str, step: str) -> str:
        """The derived key of one Stripe call of this claim, in the claim's current round."""
        return stripe_key(operation, self.resource_id, step if self.stripe_step == 1 else f"{step}-s{self.stripe_step}")

    @classmethod
    def of(cls, record: IdempotencyRecord, owner: str) -> Claim:
        """The claim a record stands for, held by `owner` (the janitor resumes work from it)."""
        return cls(
            record.id,
            record.resource_id,
            record.key_hash,
            record.trace_id,
            owner,
            resumed=True,
            stripe_params=record.stripe_params,
            execution=record.execution_token,
            stripe_started=record.stripe_started_at is not None,
            stripe_unknown=record.stripe_unknown,
            stripe_step=record.stripe_step or 1,
            created_at=record.created_at,
        )


def claim(
    operation: str,
    scoped_key: str,
    canonical_request: dict[str, Any],
    owner: str,
    resource_kind: str,
    ttl_s: int,
    trace_id: str,
) -> Claim:
    """Take the key for this request, or say why not (raises OperationError)."""
    digest = key_hash(scoped_key)
    request_fp = fingerprint(operation, canonical_request)
    now = utcnow()
    token = uuid.uuid4().hex  # this execution's, fresh on every delivery and retry of the task
    try:
        with write_transaction():
            record = IdempotencyRecord(
                key_hash=digest,
                operation=operation,
                fingerprint=request_fp,
                request=canonical_request,
                state="in_flight",
                owner=owner,
                execution_token=token,
                execution_until=now + EXECUTION_LEASE,
                resource_id=new_id(resource_kind),
                trace_id=trace_id[:128],
                locked_until=now + LEASE,
                expires_at=now + dt.timedelta(seconds=ttl_s),
            )
            statements.insert([record])
        return Claim(
            record.id,
            record.resource_id,
            digest,
            record.trace_id,
            owner,
            resumed=False,
            execution=token,
            created_at=record.created_at,
        )
    except IntegrityError:
        pass
    with write_transaction():
        record = for_update(IdempotencyRecord.select().where(IdempotencyRecord.key_hash == digest)).get()
        if record.expires_at <= now and record.state == "completed":
            # Past Stripe's 24 h window a resolved key starts afresh, as at Stripe. An unresolved one never does: its
            # Stripe call may have acted, and a fresh resource id would send it again under a new key.
            record.fingerprint, record.operation, record.request = request_fp, operation, canonical_request
            record.state, record.outcome, record.attempts, record.stripe_params = "retryable", None, 0, None
            record.stripe_started_at, record.stripe_unknown, record.stripe_step = None, None, 1
            record.resource_id, record.trace_id = new_id(resource_kind), trace_id[:128]
            record.created_at, record.expires_at = now, now + dt.timedelta(seconds=ttl_s)
        if record.fingerprint != request_fp:
            raise OperationError(
                "idempotency_key_reused",
                "This idempotency key was already used with a different request.",
                {"operation": record.operation},
            )
        if record.state == "completed":
            return Claim(
                record.id, record.resource_id, digest, record.trace_id, owner, resumed=True, replay=record.outcome
            )
        running = record.state == "in_flight" and _execution_live(record, now)
        if record.state == "in_flight" and record.owner != owner and (record.locked_until > now or running):
            raise OperationError(
                "idempotency_key_in_use",
                "A request with this idempotency key is still being processed; retry it shortly.",
            )
        if running:
            # Our own task, delivered again while its first delivery still runs: never two at once.
            raise ExecutionInProgress()
        # Our own retry or redelivery whose execution ended or died, a released claim, or an abandoned one.
        record.state, record.owner = "in_flight", owner
        record.execution_token, record.execution_until = token, now + EXECUTION_LEASE
        record.locked_until = now + LEASE
        record.attempts += 1
        record.updated_at = now
        record.save()
        return Claim.of(record, owner)


def _execution_live(record: IdempotencyRecord, now: dt.datetime) -> bool:
    return record.execution_token is not None and record.execution_until is not None and record.execution_until > now


def _execution(record_id: Any, owner: Any, *token: Any) -> list[Expression]:
    """The record as an execution left it: same record, same owner, same execution token (none given: a claim
    taken over from a record without one). Values apart from a Claim, so that a compiled statement can take them."""
    execution = IdempotencyRecord.execution_token == token[0] if token else IdempotencyRecord.execution_token.is_null()
    return [IdempotencyRecord.id == record_id, IdempotencyRecord.owner == owner, execution]


def _execution_of(claim_: Claim) -> tuple[Any, ...]:
    """`_execution`'s values for this claim."""
    return (claim_.record_id, claim_.owner, *(() if claim_.execution is None else (claim_.execution,)))


def _held_by(record_id: Any, owner: Any, *token: Any) -> list[Expression]:
    """The claim is still this execution's: not completed, given back or taken over by another execution."""
    return [*_execution(record_id, owner, *token), IdempotencyRecord.state == "in_flight"]


def _update_held(claim_: Claim, **values: Any) -> bool:
    """Change the record only while this execution holds it; False once it no longer does."""
    execution = _execution_of(claim_)
    held = f"held-{len(execution)}"  # with a token or without: two shapes of statement
    return bool(statements.update(held, IdempotencyRecord, {"updated_at": utcnow(), **values}, _held_by, *execution))


def complete(claim_: Claim, outcome: dict[str, Any]) -> bool:
    """Store the outcome (response or error) to replay; it must hold no client secret. Only the holder may.

    The execution token stays on the record: it tells who stored the outcome.
    """
    return _update_held(claim_, state="completed", outcome=outcome)


def finish(claim_: Claim, outcome: dict[str, Any]) -> None:
    """`complete` inside the transaction that writes the outcome's rows: a stale execution raises `ClaimLost`,
    which rolls its rows back, so that only the holder's writes and answer stand."""
    if not complete(claim_, outcome):
        raise ClaimLost()


def stored_by(claim_: Claim) -> bool:
    """This execution stored the claim's outcome (so an error it raised is the answer, not a stale one)."""
    return (
        IdempotencyRecord.select()
        .where(*_execution(*_execution_of(claim_)), IdempotencyRecord.state == "completed")
        .exists()
    )


def release(claim_: Claim) -> bool:
    """Give the key back after a failure that never reached a stored result, so a retry can run.

    Never undoes a stored outcome, and never takes the key from whoever took it over meanwhile.
    """
    return _update_held(claim_, state="retryable", execution_token=None, execution_until=None)


def step_down(claim_: Claim) -> bool:
    """This execution stops without an outcome (its task retries): the key stays the owner's, and the owner's
    next execution takes it at once instead of waiting out the lease."""
    return _update_held(claim_, execution_token=None, execution_until=None)


def renew(claim_: Claim) -> bool:
    """The heartbeat: this execution still runs. False once it no longer holds the claim."""
    now = utcnow()
    return _update_held(claim_, execution_until=now + EXECUTION_LEASE, locked_until=now + LEASE)


@contextlib.contextmanager
def heartbeat(claim_: Claim) -> Iterator[None]:
    """Renew the execution's lease while the block runs (a Stripe call can outlast it); a greenlet under gevent."""
    stop = threading.Event()
    db = database.obj

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                with db.connection_context():
                    if not renew(claim_):
                        return  # completed, given back or taken over: nothing left to keep alive
            except Exception as exc:  # the next beat tries again; the lease outlasts a few missed ones
                log.warning("claim heartbeat failed: %s", type(exc).__name__)

    thread = threading.Thread(target=beat, name=f"claim-heartbeat-{claim_.record_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def start_stripe_call(claim_: Claim, params: dict[str, Any] | None = None) -> Claim:
    """Record, before it is sent, that the claim's Stripe call that may move money starts (and what it sends).

    Committed with the caller's transaction or on its own; only the holder may (`ClaimLost` otherwise). From here on
    the claim is the janitor's to resolve if abandoned, and a failure is an unknown outcome for the caller.
    """
    values: dict[str, Any] = {"stripe_started_at": statements.IfUnset(utcnow())}  # the first attempt's time stays
    if params is not None:
        values["stripe_params"] = params
    if not _update_held(claim_, **values):
        raise ClaimLost()
    note_stripe_may_have_acted()
    if params is None:
        return dataclasses.replace(claim_, stripe_started=True)
    # The first attempt sends what a retry will read back (same key order): byte for byte the same request.
    normalised = json.loads(json.dumps(params, sort_keys=True))
    return dataclasses.replace(claim_, stripe_started=True, stripe_params=normalised)


def note_unknown(claim_: Claim, kind: str) -> Claim:
    """Stripe's answer left the outcome unknown (`kind`): whoever resumes the claim looks the object up first."""
    if not _update_held(claim_, stripe_unknown=kind):
        raise ClaimLost()
    return dataclasses.replace(claim_, stripe_unknown=kind)


def next_step(claim_: Claim) -> Claim:
    """A new round of derived Stripe keys: only once the old key provably did not act (its 5xx would replay)."""
    step = claim_.stripe_step + 1
    if not _update_held(claim_, stripe_step=step, stripe_unknown=None):
        raise ClaimLost()
    return dataclasses.replace(claim_, stripe_step=step, stripe_unknown=None)


def _purgeable(now: dt.datetime, hours: int) -> Expression:
    """Resolved records past their window and past Stripe's (RETENTION_IDEMPOTENCY_HOURS since their last change):
    never one in flight or retryable (its Stripe call may have acted and only it can resolve that), nor one whose
    refund still holds its amount without a Stripe id."""
    unresolved_refunds = Refund.select(Refund.id).where(
        Refund.stripe_refund_id.is_null(), Refund.status.in_(HOLDING_STATUSES)
    )
    return (
        (IdempotencyRecord.expires_at <= now)
        & (IdempotencyRecord.state == "completed")
        & (IdempotencyRecord.updated_at <= now - dt.timedelta(hours=hours))
        & IdempotencyRecord.resource_id.not_in(unresolved_refunds)
    )


def count_purgeable(now: dt.datetime | None = None, *, hours: int | None = None) -> int:
    """How many records `purge_expired` would delete now (`payments retention --dry-run`)."""
    hours = get_settings().retention_idempotency_hours if hours is None else hours
    return IdempotencyRecord.select().where(_purgeable(now or utcnow(), hours)).count()


def purge_expired(
    now: dt.datetime | None = None, *, hours: int | None = None, batch: int | None = None, until: float | None = None
) -> int:
    """Delete resolved records past their window (run by the janitor every minute and by retention daily), a batch
    of RETENTION_BATCH per short transaction, until none is left or the monotonic time `until` has passed."""
    settings = get_settings()
    now = now or utcnow()
    hours = settings.retention_idempotency_hours if hours is None else hours
    batch = batch or settings.retention_batch
    purged = 0
    while True:
        ids = [
            row.id
            for row in IdempotencyRecord.select(IdempotencyRecord.id)
            .where(_purgeable(now, hours))
            .order_by(IdempotencyRecord.expires_at)
            .limit(batch)
        ]
        if not ids:
            return purged
        with write_transaction():
            purged += (
                IdempotencyRecord.delete()  # type: ignore[misc]  # types-peewee: delete is a Self-typed class attribute
                .where(IdempotencyRecord.id.in_(ids), _purgeable(now, hours))
                .execute()
            )
        if len(ids) < batch or (until is not None and time.monotonic() >= until):
            return purged


def execute_once(
    ctx: OperationContext,
    operation: str,
    canonical_request: dict[str, Any],
    resource_kind: str,
    execute: Callable[[Claim], dict[str, Any]],
    replay: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run `execute` once per key: it stores its success outcome with `complete` in its last transaction.

    Errors it raises are stored for replay, except those that tell the caller to retry (`says_retry`: another
    operation on the payment is running): those give the key back, as a transient failure on the last attempt, or
    a crash, does, so that a retry with the same key can finish the work. Raises `ExecutionInProgress`
    while another execution of the same request runs, and whenever this one lost the claim to another:
    the caller waits and calls again, which replays the holder's outcome.
    """
    claimed = claim(
        operation, ctx.scoped_key, canonical_request, ctx.owner, resource_kind, ctx.idempotency_ttl_s, ctx.trace_id
    )
    if claimed.stripe_started:
        note_stripe_may_have_acted()  # an earlier attempt's Stripe call may have acted
    if claimed.replay is not None:
        note_replayed()
        if "error" in claimed.replay:
            err = claimed.replay["error"]
            raise OperationError(err["code"], err["message"], err.get("details"))
        response = claimed.replay["response"]
        return replay(response) if replay else response
    try:
        with heartbeat(claimed):
            return execute(claimed)
    except OperationError as exc:
        if exc.says_retry:
            # "Retry shortly" is not what the request did: the key is given back, so the retry it invites runs.
            if not release(claimed) and not stored_by(claimed):
                raise ClaimLost() from exc
            raise
        if not complete(claimed, {"error": exc.to_error()}) and not stored_by(claimed):
            # Taken over meanwhile: the holder answers, perhaps with the success this one did not see.
            raise ClaimLost() from exc
        raise
    except TransientError as exc:
        if ctx.final_attempt and exc.code != IN_USE:
            release(claimed)
        else:
            # A retry follows (or, when Stripe is busy with our key, a wait): it resumes the claim at once.
            step_down(claimed)
        raise
    except Exception:
        release(claimed)
        raise
    except BaseException:
        # Killed (time limit, or a cancel after a broker connection loss): its redelivery need not wait the lease.
        with contextlib.suppress(Exception):
            discard_connection()  # the kill may have landed mid-read: step down on a fresh connection
            step_down(claimed)
        raise
