"""One idempotency mechanism for every operation, with Stripe's semantics.

Same key + same request replays the stored outcome; same key + another request is
`idempotency_key_reused`; a key whose first request is still running is
`idempotency_key_in_use`. A Celery redelivery (same task id) resumes its own claim.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peewee import IntegrityError

from domain.context import OperationContext
from domain.errors import OperationError, TransientError
from domain.ids import new_id
from models import IdempotencyRecord, utcnow, write_transaction
from models.base import for_update

# Long enough to cover a task's retries; past it, a lost claim may be taken over.
LEASE = dt.timedelta(minutes=5)


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

    def stripe_key(self, operation: str, step: str) -> str:
        return stripe_key(operation, self.resource_id, step)

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
    try:
        with write_transaction():
            record = IdempotencyRecord.create(
                key_hash=digest,
                operation=operation,
                fingerprint=request_fp,
                request=canonical_request,
                state="in_flight",
                owner=owner,
                resource_id=new_id(resource_kind),
                trace_id=trace_id[:128],
                locked_until=now + LEASE,
                expires_at=now + dt.timedelta(seconds=ttl_s),
            )
        return Claim(record.id, record.resource_id, digest, record.trace_id, owner, resumed=False)
    except IntegrityError:
        pass
    with write_transaction():
        record = for_update(IdempotencyRecord.select().where(IdempotencyRecord.key_hash == digest)).get()
        if record.expires_at <= now:
            # Past Stripe's 24 h window the key starts afresh, as at Stripe.
            record.fingerprint, record.operation, record.request = request_fp, operation, canonical_request
            record.state, record.outcome, record.attempts, record.stripe_params = "retryable", None, 0, None
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
        if record.state == "in_flight" and record.owner != owner and record.locked_until > now:
            raise OperationError(
                "idempotency_key_in_use",
                "A request with this idempotency key is still being processed; retry it shortly.",
            )
        # Our own redelivery, a retry after a transient failure, or an abandoned claim.
        record.state, record.owner = "in_flight", owner
        record.locked_until = now + LEASE
        record.attempts += 1
        record.updated_at = now
        record.save()
        return Claim.of(record, owner)


def complete(claim_: Claim, outcome: dict[str, Any]) -> bool:
    """Store the outcome (response or error) to replay; it must hold no client secret. Only the holder may."""
    return bool(
        IdempotencyRecord.update(state="completed", outcome=outcome, updated_at=utcnow())
        .where(
            IdempotencyRecord.id == claim_.record_id,
            IdempotencyRecord.owner == claim_.owner,
            IdempotencyRecord.state == "in_flight",
        )
        .execute()
    )


def release(claim_: Claim) -> bool:
    """Give the key back after a failure that never reached a stored result, so a retry can run.

    Never undoes a stored outcome, and never takes the key from whoever took it over meanwhile.
    """
    return bool(
        IdempotencyRecord.update(state="retryable", updated_at=utcnow())
        .where(
            IdempotencyRecord.id == claim_.record_id,
            IdempotencyRecord.owner == claim_.owner,
            IdempotencyRecord.state == "in_flight",
        )
        .execute()
    )


def remember_stripe_params(claim_: Claim, params: dict[str, Any]) -> Claim:
    """Keep what is about to be sent to Stripe, so a retry sends exactly the same under the same key."""
    IdempotencyRecord.update(stripe_params=params).where(IdempotencyRecord.id == claim_.record_id).execute()
    # The first attempt sends what a retry will read back (same key order): byte for byte the same request.
    return dataclasses.replace(claim_, stripe_params=json.loads(json.dumps(params, sort_keys=True)))



def purge_expired(now: dt.datetime | None = None) -> int:
    """Delete records past their window (run by the janitor)."""
    return IdempotencyRecord.delete().where(IdempotencyRecord.expires_at <= (now or utcnow())).execute()


def execute_once(
    ctx: OperationContext,
    operation: str,
    canonical_request: dict[str, Any],
    resource_kind: str,
    execute: Callable[[Claim], dict[str, Any]],
    replay: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run `execute` once per key: it stores its success outcome with `complete` in its last transaction.

    Errors it raises are stored for replay; a transient failure on the last attempt, or a crash,
    gives the key back so that a retry with the same key can finish the work.
    """
    claimed = claim(
        operation, ctx.scoped_key, canonical_request, ctx.owner, resource_kind, ctx.idempotency_ttl_s, ctx.trace_id
    )
    if claimed.replay is not None:
        if "error" in claimed.replay:
            err = claimed.replay["error"]
            raise OperationError(err["code"], err["message"], err.get("details"))
        response = claimed.replay["response"]
        return replay(response) if replay else response
    try:
        return execute(claimed)
    except OperationError as exc:
        complete(claimed, {"error": exc.to_error()})
        raise
    except TransientError:
        if ctx.final_attempt:
            release(claimed)
        raise
    except Exception:
        release(claimed)
        raise
