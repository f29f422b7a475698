"""A payment's life after its create: confirm, capture (full or part), cancel, retry a failed attempt, and sync.

Each mutating operation runs once per idempotency key (domain/idempotency.py), decides under the intent's row
lock, records before its Stripe call that the call starts (with the parameters every retry sends again), resolves
an unknown outcome by looking the intent up (domain/stripe_outcomes.py), and saves every change of the intent with
one ztracking snapshot naming its cause. Confirms and captures are payment attempts (domain/payment_attempts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe_client
from domain import idempotency, payment_attempts, payment_events, stripe_outcomes
from domain.context import OperationContext
from domain.customers import ensure_stripe_customer
from domain.intent_state import apply_stripe_intent, intent_may_move
from domain.payment_intents import capture_deadline_of, status_of, vaulted_method
from domain.payment_methods import vault_for_intent
from domain.personal_data import digest
from domain.refunds import lock_existing_intent, refundable_amount
from domain.schemas import (
    DIGEST_FIELD,
    CancelPaymentIntentInput,
    CapturePaymentIntentInput,
    ConfirmPaymentIntentInput,
    RetryPaymentAttemptInput,
    SyncPaymentIntentInput,
)
from errors import OperationError, PicklableError, not_found
from models import PaymentAttempt, PaymentIntent, PaymentMethod, write_transaction
from models.payment_intents import save_with_history

CONFIRM = "confirm-payment-intent"
CAPTURE = "capture-payment-intent"
CANCEL = "cancel-payment-intent"
RETRY = "retry-payment-attempt"
SYNC = "payment-status-update"

# A confirm of an intent already here answers where it stands: the gateway always confirms before it captures.
CONFIRMED = ("requires_capture", "processing", "succeeded")
CANCELABLE = ("requires_payment_method", "requires_confirmation", "requires_action", "requires_capture")
# Reads of Stripe an answer or a sync makes while the row keeps changing under it (a webhook applied meanwhile).
FRESH_READS = 3
# A confirm's Stripe options that are personal data (an e-mail, a name, an address): recorded as a keyed hash only.
PERSONAL_STRIPE_OPTIONS = ("receipt_email", "shipping")

Answer = Callable[[PaymentIntent, PaymentAttempt | None], dict[str, Any]]


def intent_answer(intent: PaymentIntent, attempt: PaymentAttempt | None = None) -> dict[str, Any]:
    return intent.to_payload()


def _attempt_answer(intent: PaymentIntent, attempt: PaymentAttempt | None) -> dict[str, Any]:
    assert attempt is not None
    return payment_attempts.summary(attempt)


def _intent(payment_intent_id: str) -> PaymentIntent:
    intent = PaymentIntent.get_or_none(PaymentIntent.id == payment_intent_id)
    if intent is None or not intent.stripe_payment_intent_id:
        raise not_found("payment intent", payment_intent_id)
    return intent


def _stripe_id(intent: PaymentIntent) -> str:
    """The intent's Stripe id: a row without one (its create never reached Stripe) is not found, as in `_intent`."""
    if not intent.stripe_payment_intent_id:
        raise not_found("payment intent", intent.id)
    return intent.stripe_payment_intent_id


def _with_client_secret(payload: dict[str, Any], stripe_intent: dict[str, Any] | None) -> dict[str, Any]:
    """3-D Secure: the browser finishes with Stripe.js, which needs the client secret (never stored, fetched)."""
    if payload.get("status") != "requires_action" or "stripePaymentIntentId" not in payload:
        return payload
    stripe_intent = stripe_intent or stripe_client.retrieve_payment_intent(payload["stripePaymentIntentId"])
    return {**payload, "clientSecret": stripe_intent.get("client_secret")}


def _replay(stored: dict[str, Any]) -> dict[str, Any]:
    return _with_client_secret(stored, None)


class _RowMoved(PicklableError):
    """The intent's row changed while Stripe was asked: what Stripe said may be older than what the row holds."""

    def __init__(self, intent: PaymentIntent) -> None:
        super().__init__(intent.id)
        self.stripe_payment_intent_id = _stripe_id(intent)
        self.version = intent.ztracking_version


def _read_again_if_moved(intent: PaymentIntent, read_at_version: int | None, reads_left: int) -> bool:
    """Under the row lock: whether Stripe's view must be read again before it is applied. It was read while the row
    stood at `read_at_version` (None: unknown, e.g. an answer Stripe may have replayed from an earlier attempt)."""
    return reads_left > 0 and (read_at_version is None or intent.ztracking_version != read_at_version)


@dataclass(frozen=True)
class _Outcome:
    """What `_record` stores whatever Stripe's view turns out to be: the key's claim, the intent, the cause of its
    snapshot, the attempt to settle, how to answer, and the error (if any) the operation ends in."""

    claim: idempotency.Claim
    intent_id: str
    cause: str
    attempt: PaymentAttempt | None
    answer: Answer
    error: OperationError | None


def _record(
    claim: idempotency.Claim,
    intent_id: str,
    stripe_intent: dict[str, Any],
    cause: str,
    attempt: PaymentAttempt | None,
    answer: Answer,
    error: OperationError | None = None,
    *,
    read_at_version: int | None = None,
) -> dict[str, Any]:
    """Store Stripe's answer on the intent (one snapshot), settle the attempt, and store the key's outcome.

    A late answer never moves the status back: if the row changed since Stripe answered (a webhook told something
    newer), or when that is unknown, the intent is read again from Stripe and that is applied instead.
    """
    outcome = _Outcome(claim, intent_id, cause, attempt, answer, error)
    for reads_left in range(FRESH_READS, 0, -1):
        try:
            return _record_read(outcome, stripe_intent, read_at_version, reads_left - 1)
        except _RowMoved as moved:
            stripe_intent = stripe_client.retrieve_payment_intent(moved.stripe_payment_intent_id)
            read_at_version = moved.version
    raise AssertionError("unreachable: the last read never raises _RowMoved")


def _record_read(
    outcome: _Outcome, stripe_intent: dict[str, Any], read_at_version: int | None, reads_left: int
) -> dict[str, Any]:
    claim, cause, attempt, answer, error = outcome.claim, outcome.cause, outcome.attempt, outcome.answer, outcome.error
    deadline = capture_deadline_of(stripe_intent)
    with write_transaction():
        intent = lock_existing_intent(outcome.intent_id)
        if _read_again_if_moved(intent, read_at_version, reads_left):
            raise _RowMoved(intent)  # nothing written yet: the transaction rolls back
        before = intent.status
        # A row that kept moving while Stripe was read again and again keeps what others, fresher, applied.
        fresh = reads_left > 0 or read_at_version == intent.ztracking_version
        changed = (
            fresh
            and intent_may_move(intent.status, stripe_intent["status"])
            and apply_stripe_intent(intent, stripe_intent, deadline)
        )
        if attempt is not None:
            attempt = payment_attempts.settle(
                PaymentAttempt.get_by_id(attempt.id), intent, error.to_error() if error else None
            )
        # Every failed attempt is told, a second decline too (its status stays where the first left it).
        failed = (
            attempt is not None
            and payment_attempts.payment_failed(attempt, intent, error.to_error() if error else None)
            and not payment_events.attempt_failure_told(intent, attempt.id)
        )
        if changed or failed:
            failed_attempt = attempt.id if failed and attempt is not None else None
            payment_events.save_intent_change(intent, cause, before=before, failed_attempt=failed_attempt)
        if error is not None and answer is intent_answer:
            error.details.update({"paymentIntentId": intent.id, **({"attemptId": attempt.id} if attempt else {})})
            idempotency.finish(claim, {"error": error.to_error()})
        else:
            payload = answer(intent, attempt)
            idempotency.finish(claim, {"response": payload})
    if error is not None and answer is intent_answer:
        raise error  # after the transaction: the intent, the attempt and the stored answer stand
    return payload


def _refused(exc: OperationError, intent: PaymentIntent) -> tuple[OperationError, dict[str, Any]]:
    """Stripe refused for good: its view of the intent is read back (to be stored), and the refusal said in our
    terms."""
    current = stripe_client.retrieve_payment_intent(_stripe_id(intent))
    if current["status"] == "canceled" and intent.status == "requires_capture":
        gone = _authorisation_gone(current)
        gone.details["stripeCode"] = exc.details.get("stripeCode")
        return gone, current
    if exc.code == "validation_error" and current["status"] != intent.status:
        moved = OperationError(
            "invalid_state", f"The payment is {current['status']} at Stripe.", {"status": current["status"]}
        )
        return moved, current
    return exc, current


def _act_and_record(
    claim: idempotency.Claim,
    intent: PaymentIntent,
    operation: str,
    call: Callable[..., dict[str, Any]],
    looked_up: Callable[[str], dict[str, Any] | None],
    attempt: PaymentAttempt | None = None,
    answer: Answer = intent_answer,
    not_done: Callable[[dict[str, Any]], OperationError | None] | None = None,
) -> dict[str, Any]:
    """Make the claim's Stripe call on the intent (its parameters as recorded, its derived key), resolving an unknown
    outcome by `looked_up`, then record what Stripe says; a refusal is recorded with Stripe's view of the intent, and
    so is an intent `not_done` says the call did not do (an error, whichever operation or retry asked)."""
    params = claim.recorded_stripe_params()["params"]
    stripe_id = _stripe_id(intent)
    cause = f"{operation}:{attempt.id}" if attempt is not None else operation
    seen = None if claim.resumed else intent.ztracking_version  # a resumed claim's answer may be an old replay
    try:
        stripe_intent = stripe_outcomes.send_or_resolve(
            claim,
            send=lambda current: call(
                stripe_id, params, idempotency_key=current.stripe_key(operation, operation.split("-")[0])
            ),
            look_up=lambda: looked_up(stripe_id),
        )
    except OperationError as exc:
        refused, current = _refused(exc, intent)
        # Nothing done is an error to a retry too (its attempt summary would read as done).
        told = intent_answer if not_done is not None and not_done(current) is not None else answer
        return _record(claim, intent.id, current, f"{cause}:refused", attempt, told, refused, read_at_version=seen)
    missed = not_done(stripe_intent) if not_done is not None else None
    if missed is not None:
        return _record(
            claim, intent.id, stripe_intent, f"{cause}:not-done", attempt, intent_answer, missed, read_at_version=seen
        )
    return _record(claim, intent.id, stripe_intent, cause, attempt, answer, read_at_version=seen)


# -- confirm


def _confirm_looked_up(stripe_payment_intent_id: str, before: dict[str, Any]) -> dict[str, Any] | None:
    """The intent, if the confirm acted on it (a new charge, or a status a confirm leads to)."""
    found = stripe_client.retrieve_payment_intent(stripe_payment_intent_id)
    charge = found.get("latest_charge")
    charge_id = charge.get("id") if isinstance(charge, dict) else charge
    if charge_id != before.get("latestCharge") or found["status"] not in ("requires_confirmation", before["status"]):
        return found
    return None


def _where_it_stands(
    claim: idempotency.Claim, intent: PaymentIntent, payment_method_id: str | None
) -> dict[str, Any] | None:
    """The answer of a confirm that has nothing to do (stored for the key), or None when it must call Stripe."""
    if intent.status in CONFIRMED or (intent.status == "requires_action" and payment_method_id is None):
        # Already confirmed (or waiting on the customer's 3-D Secure): where it stands is the answer.
        payload = intent.to_payload()
        idempotency.finish(claim, {"response": payload})
        return payload
    if intent.status == "canceled":
        raise OperationError("invalid_state", "A canceled payment cannot be confirmed.", {"status": intent.status})
    return None


def _recorded_options(options: dict[str, Any]) -> dict[str, Any]:
    """The confirm's Stripe options as recorded before the call: personal data as its keyed hash only."""
    return {
        name: {DIGEST_FIELD: digest(value)} if name in PERSONAL_STRIPE_OPTIONS else value
        for name, value in options.items()
    }


def _with_personal_data(params: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The recorded parameters with the personal data in place of its hash, from the request (its fingerprint
    matched the recorded one, so it is the same data)."""
    sent = dict(params)
    for name in PERSONAL_STRIPE_OPTIONS:
        recorded = params.get(name)
        if not isinstance(recorded, dict) or set(recorded) != {DIGEST_FIELD}:
            continue
        value = options.get(name)
        if value is None or digest(value) != recorded[DIGEST_FIELD]:
            raise OperationError("internal_error", "The personal data of this confirm is not known any more.")
        sent[name] = value
    return sent


def _method_to_confirm(
    claim: idempotency.Claim, intent: PaymentIntent, payment_method_id: str | None, stripe_payment_method_id: str | None
) -> PaymentMethod:
    """Ours (named, the intent's, else the customer's default), or the browser's `pm_…` vaulted for the customer."""
    if stripe_payment_method_id is None:
        method = vaulted_method(intent.customer_id, payment_method_id or intent.payment_method_id, default=True)
        assert method is not None
        return method
    stripe_customer_id = intent.stripe_customer_id or ensure_stripe_customer(intent.customer_id).stripe_customer_id
    assert stripe_customer_id is not None  # ensure_stripe_customer returns the row with its Stripe Customer
    return vault_for_intent(claim, CONFIRM, intent.customer_id, stripe_customer_id, stripe_payment_method_id)


def run_confirm(
    claim: idempotency.Claim,
    payment_intent_id: str,
    payment_method_id: str | None,
    *,
    stripe_payment_method_id: str | None = None,
    options: dict[str, Any] | None = None,
    retry_of: str | None = None,
    answer: Answer = intent_answer,
) -> dict[str, Any]:
    """Confirm the intent for a claim (a confirm, or a retry of a failed one); its attempt is the claim's resource.

    `options`: Stripe's confirm parameters beside the payment method (receipt_email, return_url,
    setup_future_usage, shipping), personal data included: recorded only as its hash, brought again by a retry."""
    options = options or {}
    attempt = PaymentAttempt.get_or_none(PaymentAttempt.id == claim.resource_id)
    resumed = attempt is not None
    intent = _intent(payment_intent_id)
    if attempt is None:
        stands = _where_it_stands(claim, intent, payment_method_id or stripe_payment_method_id)
        if stands is not None:
            return _with_client_secret(stands, None)
        method = _method_to_confirm(claim, intent, payment_method_id, stripe_payment_method_id)
        before = stripe_client.retrieve_payment_intent(_stripe_id(intent))
        charge = before.get("latest_charge")
        with write_transaction():
            intent = lock_existing_intent(intent.id)
            # Checked again under the lock: a confirm that settled the intent meanwhile answers for this one too.
            stands = _where_it_stands(claim, intent, payment_method_id or stripe_payment_method_id)
            if stands is None:
                payment_attempts.refuse_if_another_is_running(intent, "confirm")
                attempt = payment_attempts.open_attempt(
                    intent, claim.resource_id, "confirm", payment_method_id=method.id, retry_of=retry_of
                )
                claim = idempotency.start_stripe_call(
                    claim,
                    {
                        "params": {"payment_method": method.stripe_payment_method_id, **_recorded_options(options)},
                        "before": {
                            "status": before["status"],
                            "latestCharge": charge if isinstance(charge, str) else None,
                        },
                        "paymentMethodId": method.id,
                    },
                )
                receipt_email = options.get("receipt_email", intent.receipt_email)
                if intent.payment_method_id != method.id or intent.receipt_email != receipt_email:
                    intent.payment_method_id = method.id
                    intent.receipt_email = receipt_email  # where Stripe mails the receipt (the status answers it)
                    save_with_history(intent, cause=f"{CONFIRM}:{attempt.id}:payment-method")
        if stands is not None:
            return _with_client_secret(stands, None)  # after the commit: no Stripe call under the row lock
    assert attempt is not None
    recorded = claim.recorded_stripe_params()
    params, before = _with_personal_data(recorded["params"], options), recorded["before"]
    stripe_id = _stripe_id(intent)
    seen = None if resumed else intent.ztracking_version  # a resumed attempt's answer may be an old replay
    try:
        stripe_intent = stripe_outcomes.send_or_resolve(
            claim,
            send=lambda current: stripe_client.confirm_payment_intent(
                stripe_id, params, idempotency_key=current.stripe_key(CONFIRM, "confirm")
            ),
            look_up=lambda: _confirm_looked_up(stripe_id, before),
        )
    except OperationError as exc:
        declined = stripe_client.card_error_payment_intent(exc)
        if exc.code != "card_declined" or declined is None:
            refused, current = _refused(exc, intent)
            cause = f"{CONFIRM}:{attempt.id}:refused"
            return _record(claim, intent.id, current, cause, attempt, answer, refused, read_at_version=seen)
        cause = f"{CONFIRM}:{attempt.id}:declined"
        return _record(claim, intent.id, declined, cause, attempt, answer, exc, read_at_version=seen)
    if stripe_intent["status"] == "requires_payment_method" and stripe_intent.get("last_payment_error"):
        # Found by the look-up after a lost answer: the confirm was declined.
        error = stripe_intent["last_payment_error"]
        decline = OperationError(
            "card_declined",
            error.get("message") or "The card was declined.",
            {
                "declineCode": error.get("decline_code"),
                "stripeCode": error.get("code"),
            },
        )
        cause = f"{CONFIRM}:{attempt.id}:declined"
        return _record(claim, intent.id, stripe_intent, cause, attempt, answer, decline, read_at_version=seen)
    payload = _record(claim, intent.id, stripe_intent, f"{CONFIRM}:{attempt.id}", attempt, answer, read_at_version=seen)
    return _with_client_secret(payload, stripe_intent) if answer is intent_answer else payload


def confirm_payment_intent(ctx: OperationContext, inp: ConfirmPaymentIntentInput) -> dict[str, Any]:
    """Confirm with the intent's (or the given) payment method, once per key; an intent already confirmed answers
    where it stands, one that needs 3-D Secure answers `nextAction` and the client secret. A `pm_…` the browser
    made (`stripePaymentMethodId`) is vaulted for the intent's customer first (not as the default), so the attempt,
    the intent and a later retry name it by our id."""
    return idempotency.execute_once(
        ctx,
        CONFIRM,
        inp.canonical(),
        "payment_attempt",
        lambda claim: run_confirm(
            claim,
            inp.payment_intent_id,
            inp.payment_method_id,
            stripe_payment_method_id=inp.stripe_payment_method_id,
            options=inp.stripe_options(),
        ),
        _replay,
    )


# -- capture


# Stripe's own reasons for canceling an uncaptured authorisation when it expires (any other: a cancel won).
EXPIRY_REASONS = ("automatic", "expired")


def _capture_looked_up(stripe_payment_intent_id: str) -> dict[str, Any] | None:
    """The intent, if a capture can no longer be pending: captured, or canceled (which `_not_captured` answers)."""
    found = stripe_client.retrieve_payment_intent(stripe_payment_intent_id)
    return found if found["status"] in ("succeeded", "canceled") else None


def _authorisation_gone(stripe_intent: dict[str, Any]) -> OperationError:
    """A canceled authorisation, said as what canceled it: its expiry, or a cancel that came first."""
    reason = stripe_intent.get("cancellation_reason")
    if reason in EXPIRY_REASONS:
        message = (
            "The authorisation expired before it was captured, and Stripe canceled the payment; nothing was charged."
        )
    else:
        message = "The payment was canceled before it was captured (a cancel came first); nothing was charged."
    return OperationError("invalid_state", message, {"status": "canceled", "cancellationReason": reason})


def _not_captured(stripe_intent: dict[str, Any]) -> OperationError | None:
    """Why Stripe's intent shows no capture, or None: only `succeeded` with money received is one."""
    if stripe_intent["status"] == "succeeded" and (stripe_intent.get("amount_received") or 0) > 0:
        return None
    if stripe_intent["status"] == "canceled":
        return _authorisation_gone(stripe_intent)
    status = stripe_intent["status"]
    return OperationError(
        "invalid_state", f"Nothing was captured: the payment is {status} at Stripe.", {"status": status}
    )


def run_capture(
    claim: idempotency.Claim,
    payment_intent_id: str,
    amount_to_capture: int | None,
    *,
    retry_of: str | None = None,
    answer: Answer = intent_answer,
    if_captured: str = "refuse",
) -> dict[str, Any]:
    """Capture all or part of an authorisation for a claim; what is not captured is released. With `if_captured`
    "answer", an intent captured already (by an earlier capture, or at its confirm) answers as it stands."""
    attempt = PaymentAttempt.get_or_none(PaymentAttempt.id == claim.resource_id)
    intent = _intent(payment_intent_id)
    if attempt is None:
        with write_transaction():
            intent = lock_existing_intent(intent.id)
            if intent.status == "succeeded" and if_captured == "answer" and amount_to_capture is None:
                # A fire-and-forget sender's repeat: nothing is sent to Stripe, the captured intent is the answer.
                payload = intent.to_payload()
                idempotency.finish(claim, {"response": payload})
                return payload
            if intent.status != "requires_capture":
                hint = " It was captured already; refund it to give money back." if intent.status == "succeeded" else ""
                raise OperationError(
                    "invalid_state",
                    f"Only an authorised payment can be captured; this one is {intent.status}.{hint}",
                    {"status": intent.status},
                )
            amount = amount_to_capture if amount_to_capture is not None else intent.amount_capturable
            if amount > intent.amount_capturable:
                raise OperationError(
                    "validation_error",
                    "amountToCapture is more than the authorisation holds.",
                    {
                        "amountCapturable": intent.amount_capturable,
                        "currency": intent.currency,
                        "fields": [
                            {"field": "amountToCapture", "message": "at most amountCapturable", "type": "value_error"}
                        ],
                    },
                )
            payment_attempts.refuse_if_another_is_running(intent, "capture")
            attempt = payment_attempts.open_attempt(
                intent, claim.resource_id, "capture", amount=amount, retry_of=retry_of
            )
            claim = idempotency.start_stripe_call(claim, {"params": {"amount_to_capture": amount}})
    return _act_and_record(
        claim, intent, CAPTURE, stripe_client.capture_payment_intent, _capture_looked_up, attempt, answer, _not_captured
    )


def capture_payment_intent(ctx: OperationContext, inp: CapturePaymentIntentInput) -> dict[str, Any]:
    """Capture an authorised intent (from requires_capture only), once per key."""
    return idempotency.execute_once(
        ctx,
        CAPTURE,
        inp.canonical(),
        "payment_attempt",
        lambda claim: run_capture(claim, inp.payment_intent_id, inp.amount_to_capture, if_captured=inp.if_captured),
    )


# -- cancel


def _cancel_looked_up(stripe_payment_intent_id: str) -> dict[str, Any] | None:
    found = stripe_client.retrieve_payment_intent(stripe_payment_intent_id)
    return found if found["status"] == "canceled" else None


def run_cancel(claim: idempotency.Claim, inp: CancelPaymentIntentInput) -> dict[str, Any]:
    intent = _intent(inp.payment_intent_id)
    if claim.stripe_params is None:
        if intent.status == "canceled":
            payload = intent.to_payload()
            idempotency.finish(claim, {"response": payload})
            return payload
        if intent.status == "succeeded":
            raise OperationError(
                "invalid_state",
                "A captured payment cannot be canceled; refund it instead (POST /refunds, topic create-refund).",
                {"status": intent.status, "refundable": refundable_amount(intent)},
            )
        if intent.status not in CANCELABLE:
            raise OperationError(
                "invalid_state", f"A payment that is {intent.status} cannot be canceled.", {"status": intent.status}
            )
        reason = {"cancellation_reason": inp.cancellation_reason} if inp.cancellation_reason else {}
        claim = idempotency.start_stripe_call(claim, {"params": reason})
    return _act_and_record(claim, intent, CANCEL, stripe_client.cancel_payment_intent, _cancel_looked_up)


def cancel_payment_intent(ctx: OperationContext, inp: CancelPaymentIntentInput) -> dict[str, Any]:
    """Cancel an intent not yet captured (an authorisation is released), once per key; a captured one is refused
    with `invalid_state`: refund it instead."""
    return idempotency.execute_once(ctx, CANCEL, inp.canonical(), "operation", lambda claim: run_cancel(claim, inp))


# -- retry a failed attempt


def retry_payment_attempt(ctx: OperationContext, inp: RetryPaymentAttemptInput) -> dict[str, Any]:
    """Re-run a failed confirm or capture as a new attempt, once per key; answers the new attempt and its status.
    A declined confirm is retried only once the intent has another payment method (confirm with one first)."""

    def execute(claim: idempotency.Claim) -> dict[str, Any]:
        resumed = PaymentAttempt.get_or_none(PaymentAttempt.id == claim.resource_id)
        failed = PaymentAttempt.get_or_none(PaymentAttempt.id == (resumed.retry_of if resumed else inp.attempt_id))
        if failed is None:
            raise not_found("payment attempt", inp.attempt_id)
        intent = _intent(failed.payment_intent_id)
        if resumed is None:
            _check_retryable(failed, intent)
        if failed.operation == "capture":
            return run_capture(claim, intent.id, failed.amount, retry_of=failed.id, answer=_attempt_answer)
        return run_confirm(claim, intent.id, None, retry_of=failed.id, answer=_attempt_answer)

    return idempotency.execute_once(ctx, RETRY, inp.canonical(), "payment_attempt", execute)


def _check_retryable(failed: PaymentAttempt, intent: PaymentIntent) -> None:
    if failed.status != "failed":
        raise OperationError(
            "invalid_state",
            f"Only a failed attempt can be retried; this one is {failed.status}.",
            {"status": failed.status},
        )
    latest = (
        PaymentAttempt.select()
        .where(PaymentAttempt.payment_intent_id == intent.id, PaymentAttempt.operation == failed.operation)
        .order_by(PaymentAttempt.attempt_number.desc())
        .first()
    )
    if latest is not None and latest.id != failed.id:
        raise OperationError(
            "invalid_state", "A newer attempt of this payment exists: retry that one.", {"latestAttemptId": latest.id}
        )
    if (
        failed.operation == "confirm"
        and failed.error_code == "card_declined"
        and (intent.payment_method_id in (None, failed.payment_method_id))
    ):
        raise OperationError(
            "invalid_state",
            "The card was declined: confirm with another paymentMethodId (or retry once the intent has one).",
            {"status": intent.status, "errorCode": failed.error_code},
        )


# -- sync (payment-status-update)


def sync_payment_intent(ctx: OperationContext, inp: SyncPaymentIntentInput) -> dict[str, Any]:
    """Read the intent from Stripe and apply what Stripe says (cause `sync`); the message's own status is never
    trusted. A read is applied only if the row did not change while it was made (else Stripe is read again), so a
    read older than a webhook never moves the status back. Answers the short status."""
    key = inp.payment_intent_id
    column = PaymentIntent.stripe_payment_intent_id if key.startswith("pi_") else PaymentIntent.id
    intent = PaymentIntent.get_or_none(column == key)
    if intent is None or not intent.stripe_payment_intent_id:
        raise not_found("payment intent", key)
    for _ in range(FRESH_READS):
        read_at_version = intent.ztracking_version
        stripe_intent = stripe_client.retrieve_payment_intent(_stripe_id(intent))
        deadline = capture_deadline_of(stripe_intent)
        with write_transaction():
            intent = lock_existing_intent(intent.id)
            if intent.ztracking_version != read_at_version:
                # Changed while Stripe was read (a webhook): the read may be older than the row, never applied.
                continue
            before = intent.status
            if intent_may_move(intent.status, stripe_intent["status"]) and apply_stripe_intent(
                intent, stripe_intent, deadline
            ):
                failed = payment_attempts.settle_open_attempts(intent)
                payment_events.save_intent_change(intent, "sync", before=before, failed_attempt=failed)
            return status_of(intent)
    return status_of(intent)  # the row kept moving: it holds what others, fresher, applied


# -- the janitor's part: a confirm, capture, cancel or retry abandoned after its Stripe call started


def resolve_abandoned(operation: str, request: dict[str, Any], claim: idempotency.Claim) -> str:
    """Settle an abandoned lifecycle claim by what Stripe did, never by sending anything: the intent is read back,
    stored if the call acted, and the key answers that; otherwise the attempt failed and nothing happened."""
    attempt = PaymentAttempt.get_or_none(PaymentAttempt.id == claim.resource_id)
    intent_id = attempt.payment_intent_id if attempt else request.get("paymentIntentId")
    intent = _intent(str(intent_id))
    stripe_id = _stripe_id(intent)
    params = claim.stripe_params or {}
    looked_up = {
        CONFIRM: lambda: _confirm_looked_up(stripe_id, params.get("before") or {"status": intent.status}),
        CAPTURE: lambda: _capture_looked_up(stripe_id),
        CANCEL: lambda: _cancel_looked_up(stripe_id),
    }
    kind = attempt.operation if attempt else None
    check = looked_up[{"confirm": CONFIRM, "capture": CAPTURE}.get(kind or "", operation)]
    answer = _attempt_answer if operation == RETRY else intent_answer
    found = check()
    if found is not None:
        missed = _not_captured(found) if check is looked_up[CAPTURE] else None
        try:
            seen = intent.ztracking_version
            if missed is not None:  # canceled or expired: an error, never the capture's success
                cause = f"janitor:fetched:{operation}:not-done"
                _record(claim, intent.id, found, cause, attempt, intent_answer, missed, read_at_version=seen)
            else:
                cause = f"janitor:fetched:{operation}"
                _record(claim, intent.id, found, cause, attempt, answer, read_at_version=seen)
        except OperationError:
            pass  # a decline Stripe recorded: stored with the attempt, and it is the key's answer
        return "fetched" if missed is None else "fetched, not captured"
    not_done = OperationError(
        "stripe_error",
        f"The {operation} was not done at Stripe; nothing changed. Send it again with a new idempotency key.",
        {"stripeCalled": True, "foundAtStripe": False},
    )
    with write_transaction():
        if attempt is not None:
            payment_attempts.settle(attempt, intent, not_done.to_error())
        idempotency.finish(claim, {"error": not_done.to_error()})
    return "not at stripe"
