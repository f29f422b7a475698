"""What every operation knows about the request it serves."""

from __future__ import annotations

from contextvars import ContextVar
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


# Whether this execution sent Stripe a request that may have moved money (or resumed a claim whose earlier attempt
# did): a failure after that point is an unknown outcome for the caller, never "nothing happened".
_stripe_may_have_acted: ContextVar[bool] = ContextVar("stripe_may_have_acted", default=False)


# Whether this execution answered with the stored outcome of an earlier one (REST: `Idempotent-Replayed: true`).
_replayed: ContextVar[bool] = ContextVar("replayed", default=False)


def begin_execution() -> None:
    """A task starts an execution: nothing has been sent to Stripe by it yet, nothing replayed."""
    _stripe_may_have_acted.set(False)
    _replayed.set(False)


def note_replayed() -> None:
    _replayed.set(True)


def was_replayed() -> bool:
    return _replayed.get()


def note_stripe_may_have_acted() -> None:
    """A keyed (mutating) request went to Stripe, or an earlier attempt's did."""
    _stripe_may_have_acted.set(True)


def note_stripe_did_not_act() -> None:
    """Stripe said it did not act and a look-up found nothing: nothing of this request exists at Stripe."""
    _stripe_may_have_acted.set(False)


def stripe_may_have_acted() -> bool:
    return _stripe_may_have_acted.get()
