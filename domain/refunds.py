"""create-refund and get-refund: never more back than was captured, also under concurrency."""

from __future__ import annotations

from typing import Any

import stripe_client
from domain import idempotency, payment_events, stripe_outcomes
from domain.context import OperationContext
from domain.intent_state import REFUND_RANK, refund_may_move
from domain.pages import checked_page
from domain.schemas import CreateRefundInput, GetRefundInput, ListRefundsInput
from errors import OperationError, not_found
from models import PaymentIntent, Refund, utcnow, write_transaction
from models import currency_data as currencies
from models.base import for_update
from models.payment_intents import save_with_history
from models.refunds import HOLDING_STATUSES
from observability.metrics import REFUNDS_ENDED

OPERATION = "create-refund"


def lock_intent(payment_intent_id: str) -> PaymentIntent | None:
    """The intent under a row lock: refunds of one intent are decided one at a time."""
    return for_update(PaymentIntent.select().where(PaymentIntent.id == payment_intent_id)).first()


def lock_existing_intent(payment_intent_id: str) -> PaymentIntent:
    """The intent under a row lock where the caller knows it exists (read just before, or named by a refund): only
    retention deletes intents, never one with a refund or a claim in flight, so a missing one is refused as not found
    rather than handled as a case."""
    intent = lock_intent(payment_intent_id)
    if intent is None:
        raise not_found("payment intent", payment_intent_id)
    return intent


def refundable_amount(intent: PaymentIntent) -> int:
    """What is left to refund: received minus every refund not failed or canceled (pending ones hold theirs)."""
    return intent.amount_received - intent.amount_refunded


def _amount_in_steps(currency: str, amount: int) -> None:
    """Stripe refunds three-decimal currencies (and ISK) only in their steps: refused before any write."""
    step = currencies.amount_step(currency)
    if amount % step:
        raise OperationError(
            "validation_error",
            f"Amounts in {currency.upper()} must be a multiple of {step} minor units (Stripe's rule).",
            {"fields": [{"field": "amount", "message": f"must be a multiple of {step}", "type": "value_error"}]},
        )


def _stripe_params(claim: idempotency.Claim, refund: Refund, intent: PaymentIntent) -> dict[str, Any]:
    params: dict[str, Any] = {
        "payment_intent": intent.stripe_payment_intent_id,
        "amount": refund.amount,
        "metadata": {**(refund.metadata or {}), "vy_refund_id": refund.id, "vy_trace_id": claim.trace_id},
    }
    if refund.reason:
        params["reason"] = refund.reason
    return {"params": params}


def _reserve(claim: idempotency.Claim, inp: CreateRefundInput) -> tuple[Refund, idempotency.Claim]:
    """Decide and hold the refund's amount, and record that its Stripe call starts, in one transaction."""
    with write_transaction():
        intent = lock_intent(inp.payment_intent_id)
        if intent is None:
            raise not_found("payment intent", inp.payment_intent_id)
        reserved = Refund.get_or_none(Refund.id == claim.resource_id)
        if reserved is not None:
            # An execution of this request whose lease lapsed reserved it while we waited on the lock.
            return reserved, claim
        if intent.amount_received <= 0:
            raise OperationError(
                "invalid_state",
                f"Only a captured payment can be refunded; this one is {intent.status}.",
                {"status": intent.status},
            )
        refundable = refundable_amount(intent)
        amount = inp.amount if inp.amount is not None else refundable
        if amount <= 0 or amount > refundable:
            raise OperationError(
                "refund_exceeds_amount",
                "The refund is larger than what is left to refund.",
                {"requested": amount, "refundable": refundable, "currency": intent.currency},
            )
        _amount_in_steps(intent.currency, amount)
        refund = Refund.create(
            id=claim.resource_id,
            payment_intent_id=intent.id,
            amount=amount,
            currency=intent.currency,
            status="pending",
            reason=inp.reason,
            metadata=inp.metadata,
        )
        intent.amount_refunded += amount
        save_with_history(intent, cause=f"{OPERATION}:{refund.id}")
        # Sent from what is stored (sorted keys), so that every retry sends byte for byte the same parameters.
        claim = idempotency.start_stripe_call(claim, _stripe_params(claim, refund, intent))
        return refund, claim


# Where a refund ends: the money went back, or it did not.
ENDED_STATUSES = ("succeeded", "failed", "canceled")


def refund_moves_forward(current: str, new: str) -> bool:
    """An answer (not an event) may only move a refund forward: a replayed answer is older than any event."""
    return new != current and refund_may_move(current, new) and REFUND_RANK[new] > REFUND_RANK[current]


def apply_refund_status(
    refund: Refund,
    status: str,
    failure_reason: str | None,
    cause: str,
    stripe_refund_id: str | None = None,
    forward_only: bool = False,
) -> bool:
    """Move a refund forward and keep the intent's refunded total in step; call inside a transaction."""
    if not refund_may_move(refund.status, status) or (forward_only and not refund_moves_forward(refund.status, status)):
        return False
    intent = lock_intent(refund.payment_intent_id)
    was_holding, before = refund.status in HOLDING_STATUSES, refund.status
    refund.status = status
    refund.failure_reason = failure_reason if status in ("failed", "canceled") else refund.failure_reason
    if stripe_refund_id:
        refund.stripe_refund_id = stripe_refund_id
    refund.updated_at = utcnow()
    refund.save()
    if intent is not None and was_holding and status not in HOLDING_STATUSES:
        # The money did not go back: it is refundable again.
        intent.amount_refunded -= refund.amount
        save_with_history(intent, cause=cause)
    if intent is not None:
        payment_events.refund_changed(refund, intent, before)
    if status in ENDED_STATUSES and status != before:
        REFUNDS_ENDED.labels(status).inc()  # a failed one is alerted on (PaymentsRefundErrors)
    return True


# Stripe's refusals of a refund larger than what the charge has left (a refund made elsewhere took part of it).
STRIPE_EXCEEDS = frozenset({"amount_too_large", "charge_already_refunded"})


def _exceeds_at_stripe(exc: OperationError, refund: Refund) -> OperationError | None:
    """Stripe refused the refund as more than is left: the caller hears `refund_exceeds_amount`, as when we refuse
    it ourselves, with what is refundable now that this refund's hold is given back (call after releasing it)."""
    if exc.details.get("stripeCode") not in STRIPE_EXCEEDS:
        return None
    intent = PaymentIntent.get_by_id(refund.payment_intent_id)
    return OperationError(
        "refund_exceeds_amount",
        "The refund is larger than what is left to refund at Stripe (a refund made elsewhere took part of it).",
        {
            "requested": refund.amount,
            "refundable": refundable_amount(intent),
            "currency": intent.currency,
            "stripeCode": exc.details["stripeCode"],
        },
    )


def send_refund(
    claim: idempotency.Claim, refund: Refund, cause: str = OPERATION, found_at_stripe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Ask Stripe for a reserved refund with the claim's derived key, then record Stripe's answer.

    `found_at_stripe` is the refund the janitor found at Stripe for an abandoned claim: recorded, not sent. While
    Stripe's outcome is unknown the amount stays held: only Stripe's definite refusal gives it back.
    """
    if refund.stripe_refund_id and refund.status != "pending":
        # Stripe's answer is already recorded (a webhook brought it): that is the outcome.
        idempotency.finish(claim, {"response": refund.to_payload()})
        return refund.to_payload()
    if claim.stripe_params is None:
        # Reserved by an attempt that stopped before recording its parameters: decided now, once.
        intent = PaymentIntent.get_by_id(refund.payment_intent_id)
        claim = idempotency.start_stripe_call(claim, _stripe_params(claim, refund, intent))
    params = claim.recorded_stripe_params()["params"]
    try:
        stripe_refund = found_at_stripe or stripe_outcomes.send_or_resolve(
            claim,
            send=lambda current: stripe_client.create_refund(
                params, idempotency_key=current.stripe_key(OPERATION, "refund")
            ),
            look_up=lambda: stripe_client.find_refund(params["payment_intent"], refund.id),
        )
    except OperationError as exc:
        # Stripe said no for good: release the held amount, and answer with Stripe's reason.
        with write_transaction():
            refund = for_update(Refund.select().where(Refund.id == refund.id)).get()
            apply_refund_status(refund, "failed", exc.message[:255], cause=f"{cause}:{refund.id}:failed")
            refusal = _exceeds_at_stripe(exc, refund) or exc
            refusal.details["refundId"] = refund.id
            idempotency.finish(claim, {"error": refusal.to_error()})
        if refusal is exc:
            raise
        raise refusal from exc
    with write_transaction():
        refund = for_update(Refund.select().where(Refund.id == refund.id)).get()
        refund.stripe_refund_id = stripe_refund["id"]
        refund.save()
        payment_events.refund_accepted(refund, lock_existing_intent(refund.payment_intent_id))
        apply_refund_status(
            refund,
            stripe_refund.get("status") or "pending",
            stripe_refund.get("failure_reason"),
            cause=f"{cause}:{refund.id}:{stripe_refund.get('status')}",
            forward_only=True,
        )
        idempotency.finish(claim, {"response": refund.to_payload()})
    return refund.to_payload()


def create_refund(ctx: OperationContext, inp: CreateRefundInput) -> dict[str, Any]:
    """Refund all or part of a captured payment, once per idempotency key."""

    def execute(claim: idempotency.Claim) -> dict[str, Any]:
        refund = Refund.get_or_none(Refund.id == claim.resource_id)
        if refund is None:
            refund, claim = _reserve(claim, inp)
        return send_refund(claim, refund)

    return idempotency.execute_once(ctx, OPERATION, inp.canonical(), "refund", execute)


def get_refund(ctx: OperationContext, inp: GetRefundInput) -> dict[str, Any]:
    refund = Refund.get_or_none(Refund.id == inp.refund_id)
    if refund is None:
        raise not_found("refund", inp.refund_id)
    return refund.to_payload()


def list_refunds(ctx: OperationContext, inp: ListRefundsInput) -> dict[str, Any]:
    """The intent's refunds, oldest first (an unknown intent is `not_found`, never an empty list)."""
    if not PaymentIntent.select().where(PaymentIntent.id == inp.payment_intent_id).exists():
        raise not_found("payment intent", inp.payment_intent_id)
    of_intent = Refund.select().where(Refund.payment_intent_id == inp.payment_intent_id)
    return checked_page(
        of_intent,
        of_intent,
        Refund.id,
        inp,
        what="a refund of this payment intent",
        newest_first=False,
    )
