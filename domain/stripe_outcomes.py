"""Stripe calls whose outcome can be unknown, and how it is resolved: by looking the object up, never by hoping.

Stripe (API v1) saves a request's answer under its idempotency key once the endpoint began executing, 5xx answers
included, and replays it for 24 h: after a 5xx (or an `idempotency_error`, our key seen with other parameters) the
same key only replays the failure. So the object is looked up (by our id in its metadata). Found: that is the answer.
Not found and Stripe said it did not act (`Stripe-Should-Retry: true`): a new round of keys sends it again. Not found
otherwise: the outcome stays unknown (`outcome_unknown`) until a later look-up (a retry, the caller's retry with the
same key, or the janitor) settles it. A request that got no answer at all (a timeout, a reset) is sent again under
the same key, as Stripe asks: Stripe either replays what it did or does it now, once.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

from domain import idempotency
from errors import OperationError, StripeMayHaveActed, TransientError
from execution import note_stripe_did_not_act
from models import utcnow

# The claim's last Stripe answer was a 5xx that Stripe said it did not act on (`Stripe-Should-Retry: true`).
NOT_ACTED = "server_error_not_acted"
# What a 401 or 403 answers (stripe_client.translate): Stripe refused the credentials, not the request.
CREDENTIALS_REFUSED = "stripe_error"
# Seconds either side of a claim's creation that a look-up at Stripe searches (clocks and queues drift).
LOOKUP_MARGIN_S = 600
# Stripe keeps an idempotency key 24 h; past this (with a margin) a key may no longer protect a repeat.
STRIPE_KEY_WINDOW = dt.timedelta(hours=23)


class OutcomeUnknown(TransientError):
    """Stripe may have acted and a look-up did not find what it did: retried (each retry looks again); after the
    last retry the caller hears `outcome_unknown` and retries with the same key, or the janitor settles it."""

    def __init__(self, message: str = "Stripe may have acted; the outcome is not known yet.") -> None:
        super().__init__(message, code="outcome_unknown")


def _past_key_window(claim: idempotency.Claim) -> bool:
    """Whether Stripe may have forgotten the claim's keys (it keeps them 24 h): sending under them again could act
    a second time, so the object is looked up first."""
    if not claim.stripe_started or claim.created_at is None:
        return False
    return utcnow() - claim.created_at > STRIPE_KEY_WINDOW


def _kind(exc: StripeMayHaveActed) -> str:
    return NOT_ACTED if exc.kind == "server_error" and exc.should_retry is True else exc.kind


def _looked_up(look_up: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """`look_up`'s answer; a refused look-up (401, 403, 404) tells nothing of what Stripe did: still unknown."""
    try:
        return look_up()
    except OperationError as exc:
        raise OutcomeUnknown() from exc


def send_or_resolve(
    claim: idempotency.Claim,
    send: Callable[[idempotency.Claim], dict[str, Any]],
    look_up: Callable[[], dict[str, Any] | None],
) -> dict[str, Any]:
    """Stripe's object for this claim's call: sent (or sent again under the same key), or found by `look_up`.

    `send` makes the call with the claim's derived key (`claim.stripe_key`); `look_up` finds the object by our id.
    Raises `OutcomeUnknown` while Stripe may have acted and nothing is found, `TransientError` after a failure
    Stripe did not act on (the next attempt sends under a new round of keys).
    """
    stale_key = _past_key_window(claim)
    if claim.stripe_unknown is not None or stale_key:
        found = _looked_up(look_up)
        if found is not None:
            return found
        if claim.stripe_unknown not in (None, NOT_ACTED) and not stale_key:
            raise OutcomeUnknown()
        # Stripe did not act, or has forgotten the key (past its 24 h) and made nothing under it: a new round.
        note_stripe_did_not_act()
        claim = idempotency.next_step(claim)
    try:
        return send(claim)
    except StripeMayHaveActed as exc:
        kind = _kind(exc)
        claim = idempotency.note_unknown(claim, kind)
        found = _looked_up(look_up)
        if found is not None:
            return found
        if kind == NOT_ACTED:
            note_stripe_did_not_act()
            raise TransientError("Stripe failed without acting; nothing was done.", code="stripe_error") from exc
        raise OutcomeUnknown() from exc
    except OperationError as exc:
        if exc.code != CREDENTIALS_REFUSED or not (claim.resumed and claim.stripe_started):
            raise
        # Refused before Stripe read this request (401/403): an earlier attempt's send may still have acted.
        found = _looked_up(look_up)
        if found is not None:
            return found
        raise OutcomeUnknown() from exc


@contextlib.contextmanager
def repeatable_by_nature(claim: idempotency.Claim) -> Iterator[None]:
    """For Stripe calls that are safe to repeat whatever happened (attach, detach, set a default): after a 5xx or an
    `idempotency_error` the next attempt uses a new round of keys, since the old key would only replay the failure."""
    try:
        yield
    except StripeMayHaveActed:
        idempotency.next_step(claim)
        raise


def window(claim: idempotency.Claim, now_epoch: int) -> tuple[int, int]:
    """The creation window (epoch seconds) a look-up searches for this claim's object."""
    first = calendar.timegm(claim.created_at.utctimetuple()) if claim.created_at else now_epoch
    return first - LOOKUP_MARGIN_S, now_epoch + LOOKUP_MARGIN_S
