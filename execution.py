"""What one execution of an operation did so far: whether Stripe may have acted, whether it replayed.

A leaf: the Stripe adapter notes here, the domain and the task read it, and neither imports the other for it.
"""

from __future__ import annotations

from contextvars import ContextVar

# Whether this execution sent Stripe a request that may have moved money (or resumed a claim whose earlier attempt
# did): a failure after that point is an unknown outcome for the caller, never "nothing happened".
_stripe_may_have_acted: ContextVar[bool] = ContextVar("stripe_may_have_acted", default=False)


# Whether this execution answered with the stored outcome of an earlier one (REST: `Idempotent-Replayed: true`).
_replayed: ContextVar[bool] = ContextVar("replayed", default=False)


# The operator a support action of the /ops/ page runs for (None: any other caller): its ztracking causes name them.
_actor: ContextVar[str | None] = ContextVar("actor", default=None)


def begin_execution(actor: str | None = None) -> None:
    """A task starts an execution: nothing has been sent to Stripe by it yet, nothing replayed."""
    _stripe_may_have_acted.set(False)
    _replayed.set(False)
    _actor.set(actor)


def end_execution() -> None:
    """The task is done: the next task of this thread (a janitor's pass too) acts for nobody in particular."""
    _actor.set(None)


def cause_of(cause: str) -> str:
    """A ztracking cause as this execution writes it: `ops:<operator>:<cause>` for an operator's action."""
    actor = _actor.get()
    return f"ops:{actor}:{cause}" if actor else cause


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
