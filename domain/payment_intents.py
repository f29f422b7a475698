"""create-payment-intent, get-payment-intent, get-ztracking-payment-intent, get-payment-intent-status,
list-payment-intents."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import stripe_client
from domain import idempotency, payment_attempts, payment_events, stripe_outcomes
from domain.context import OperationContext
from domain.customers import ensure_stripe_customer
from domain.ids import new_id
from domain.intent_state import apply_stripe_intent, capture_deadline
from domain.pages import checked_page
from domain.personal_data import digest
from domain.schemas import DIGEST_FIELD, CreatePaymentIntentInput, GetPaymentIntentInput, ListPaymentIntentsInput
from domain.webhooks import apply_unmatched_events
from errors import OperationError, TransientError, not_found
from models import PaymentAttempt, PaymentIntent, PaymentMethod, ZtrackingPaymentIntent, statements, write_transaction
from models.payment_attempts import attempts_by_intent

OPERATION = "create-payment-intent"
log = logging.getLogger(__name__)


def _active_methods(customer_id: str) -> Any:
    return PaymentMethod.select().where(PaymentMethod.customer_id == customer_id, PaymentMethod.deleted_at.is_null())


def _vaulted(customer_id: str, payment_method_id: str) -> Any:
    return _active_methods(customer_id).where(PaymentMethod.id == payment_method_id).limit(1)


def _default_method(customer_id: str) -> Any:
    return _active_methods(customer_id).where(PaymentMethod.is_default == True).limit(1)  # noqa: E712 (peewee)


def vaulted_method(customer_id: str, payment_method_id: str | None, *, default: bool) -> PaymentMethod | None:
    """The method to charge: the one named (ours, vaulted for this customer), else with `default` the customer's
    default, else none."""
    if payment_method_id:
        method = statements.first("vaulted-method", _vaulted, customer_id, payment_method_id)
        if method is None:
            raise OperationError(
                "not_found",
                "No payment method with this id is vaulted for this customer.",
                {"paymentMethodId": payment_method_id},
            )
        return method
    if default:
        method = statements.first("default-method", _default_method, customer_id)
        if method is None:
            raise OperationError(
                "validation_error",
                "confirm needs a paymentMethodId or a default payment method for the customer.",
                {"fields": [{"field": "paymentMethodId", "message": "required to confirm", "type": "missing"}]},
            )
        return method
    return None


def capture_deadline_of(stripe_intent: dict[str, Any]) -> dt.datetime | None:
    """When an authorisation awaiting capture expires: read from its charge (a Stripe call, made outside any
    transaction), only for an intent that awaits capture."""
    charge = stripe_intent.get("latest_charge")
    if stripe_intent.get("status") != "requires_capture" or not charge:
        return None
    if isinstance(charge, dict):
        return capture_deadline(charge)
    try:
        return capture_deadline(stripe_client.retrieve_charge(charge))
    except OperationError as exc:
        # Read after Stripe acted (it holds the authorisation): a refusal here is no answer about that act, so it
        # is retried under the same key (Stripe replays what it did) and, past the retries, looked up.
        raise TransientError(f"Stripe refused to read the charge ({exc.code})", code="stripe_error") from exc


def _with_client_secret(payload: dict[str, Any], stripe_intent: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "clientSecret": stripe_intent.get("client_secret")}


def _replay(stored: dict[str, Any]) -> dict[str, Any]:
    """A replay answers the first result; the client secret is fetched again, never stored."""
    stripe_intent = stripe_client.retrieve_payment_intent(stored["stripePaymentIntentId"])
    return _with_client_secret(stored, stripe_intent)


def _stripe_request(claim: idempotency.Claim, inp: CreatePaymentIntentInput) -> idempotency.Claim:
    """What to send to Stripe, decided once: a retry sends exactly the same (same key, same parameters)."""
    if claim.stripe_params is not None:
        return claim
    method = vaulted_method(inp.customer_id, inp.payment_method_id, default=inp.confirm)  # refused before anything
    customer = ensure_stripe_customer(inp.customer_id, inp.customer_details)
    params = create_params(inp, customer.stripe_customer_id, claim.resource_id, claim.trace_id)
    if inp.receipt_email is not None:
        # Stripe mails the receipt there. Recorded as a keyed hash: a retry brings the address again (the request's
        # fingerprint covers it), the janitor reads it back from Stripe's intent.
        params["receipt_email"] = {DIGEST_FIELD: digest(inp.receipt_email)}
    if method is not None:
        params["payment_method"] = method.stripe_payment_method_id
    return idempotency.start_stripe_call(claim, {"params": params, "paymentMethodId": method.id if method else None})


def create_params(
    inp: CreatePaymentIntentInput, stripe_customer_id: str | None, intent_id: str, trace_id: str | None
) -> dict[str, Any]:
    """What a create sends Stripe for `inp` and the intent `intent_id`, but its payment method and receipt e-mail."""
    params: dict[str, Any] = {
        "amount": inp.amount,
        "currency": inp.currency,
        "customer": stripe_customer_id,
        "capture_method": inp.capture_method,
        "payment_method_types": ["card"],
        "confirm": inp.confirm,
        "metadata": {
            **inp.metadata,
            # The platform gateway's webhook handler routes by it (the original service's name); ours wins over a
            # caller's own localId, which stays in the intent's answered metadata only.
            "localId": intent_id,
            "vy_payment_intent_id": intent_id,
            "vy_customer_id": inp.customer_id,
            "vy_trace_id": trace_id,
            **({"vy_order_id": inp.order_id} if inp.order_id else {}),
            **({"vy_subscription_id": inp.subscription_id} if inp.subscription_id else {}),
        },
    }
    if inp.description is not None:
        params["description"] = inp.description
    return params


def _with_receipt_email(
    params: dict[str, Any], inp: CreatePaymentIntentInput, found_at_stripe: dict[str, Any] | None
) -> dict[str, Any]:
    """The recorded parameters with the receipt's address in place of its hash: from the request (its fingerprint
    matched the recorded one, so it is the same address), else from the intent Stripe made."""
    recorded = params.get("receipt_email")
    if not isinstance(recorded, dict):
        return params
    address = inp.receipt_email or (found_at_stripe or {}).get("receipt_email")
    if not address or digest(address) != recorded.get(DIGEST_FIELD):
        raise OperationError("internal_error", "The receipt's address of this request is not known any more.")
    return {**params, "receipt_email": address}


def intent_at_stripe(claim: idempotency.Claim, stripe_customer_id: str) -> dict[str, Any] | None:
    """The PaymentIntent Stripe made for this claim, if any: the customer's intents of the claim's time window,
    matched on our id in their metadata."""
    created_from, created_to = stripe_outcomes.window(claim, int(time.time()))
    return stripe_client.find_payment_intent(stripe_customer_id, claim.resource_id, created_from, created_to)


def execute_create(
    claim: idempotency.Claim,
    inp: CreatePaymentIntentInput,
    cause: str = OPERATION,
    found_at_stripe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create the intent for a claim: at Stripe with the claim's derived key, then the row and its history.

    `found_at_stripe` is the PaymentIntent the janitor found at Stripe for an abandoned claim: stored, not created.
    """
    # Only a resumed claim can have stored its intent: a fresh one's resource id was made a moment ago.
    existing = PaymentIntent.get_or_none(PaymentIntent.id == claim.resource_id) if claim.resumed else None
    if existing is not None:
        # Stored by an attempt that died before answering: that is the answer.
        idempotency.finish(claim, {"response": existing.to_payload()})
        return _replay(existing.to_payload())
    claim = _stripe_request(claim, inp)
    recorded = claim.recorded_stripe_params()
    params = _with_receipt_email(recorded["params"], inp, found_at_stripe)
    intent = PaymentIntent(
        id=claim.resource_id,
        customer_id=inp.customer_id,
        stripe_customer_id=params["customer"],
        amount=inp.amount,
        currency=inp.currency,
        capture_method=inp.capture_method,
        payment_method_id=recorded["paymentMethodId"],
        description=inp.description,
        metadata=inp.metadata,
        order_id=inp.order_id,
        subscription_id=inp.subscription_id,
        items=[item.model_dump(mode="json", by_alias=True) for item in inp.items] if inp.items else None,
        # From what was sent to Stripe: a stored request keeps only a hash of the person's details.
        receipt_email=params.get("receipt_email"),
    )
    try:
        stripe_intent = found_at_stripe or stripe_outcomes.send_or_resolve(
            claim,
            send=lambda current: stripe_client.create_payment_intent(
                params, idempotency_key=current.stripe_key(OPERATION, "create")
            ),
            look_up=lambda: intent_at_stripe(claim, params["customer"]),
        )
    except OperationError as exc:
        declined = stripe_client.card_error_payment_intent(exc)
        if exc.code != "card_declined" or declined is None:
            raise
        apply_stripe_intent(intent, declined)
        intent.last_event_created = declined.get("created")  # an event of the same second must not move it back
        exc.details["paymentIntentId"] = intent.id
        with write_transaction():
            payment_events.save_intent_change(intent, f"{cause}:declined", before=None, create=True)
            attempt = _first_attempt(intent, params, error=intent.last_payment_error or exc.to_error())
            exc.details["attemptId"] = attempt.id
            idempotency.finish(claim, {"error": exc.to_error()})
        apply_unmatched_events_safely(intent.stripe_payment_intent_id)
        raise
    apply_stripe_intent(intent, stripe_intent, capture_deadline_of(stripe_intent))
    intent.last_event_created = stripe_intent.get("created")  # an event of the same second must not move it back
    with write_transaction():
        payment_events.save_intent_change(intent, cause, before=None, create=True)
        attempts = [_first_attempt(intent, params).to_payload()] if params.get("confirm") else []
        payload = intent.to_payload(attempts)
        idempotency.finish(claim, {"response": payload})
    apply_unmatched_events_safely(intent.stripe_payment_intent_id)
    return _with_client_secret(payload, stripe_intent)


def _first_attempt(
    intent: PaymentIntent, params: dict[str, Any], error: dict[str, Any] | None = None
) -> PaymentAttempt:
    """A create that confirms is the intent's first attempt (the intent is inserted in the same transaction)."""
    return payment_attempts.record_first(
        intent, new_id("payment_attempt"), "confirm", payment_method_id=intent.payment_method_id, error=error
    )


def apply_unmatched_events_safely(stripe_payment_intent_id: str | None) -> None:
    """Events that outran the create; the stored result stands whatever happens here (the janitor retries)."""
    try:
        apply_unmatched_events(stripe_payment_intent_id)
    except Exception:
        log.warning("early events for %s left for the janitor", stripe_payment_intent_id, exc_info=True)


def create_payment_intent(ctx: OperationContext, inp: CreatePaymentIntentInput) -> dict[str, Any]:
    """Create (and optionally confirm) a Stripe PaymentIntent once per idempotency key."""
    return idempotency.execute_once(
        ctx, OPERATION, inp.canonical(), "payment_intent", lambda claim: execute_create(claim, inp), _replay
    )


def _intent_by_id(intent_id: str) -> Any:
    return PaymentIntent.select().where(PaymentIntent.id == intent_id).limit(1)


def get_payment_intent(ctx: OperationContext, inp: GetPaymentIntentInput) -> dict[str, Any]:
    intent = statements.first("payment-intent-by-id", _intent_by_id, inp.payment_intent_id)
    if intent is None:
        raise not_found("payment intent", inp.payment_intent_id)
    return intent.to_payload()


def get_payment_intent_history(ctx: OperationContext, inp: GetPaymentIntentInput) -> list[dict[str, Any]]:
    """Every snapshot of the intent, oldest first; an unknown intent is `not_found`, never `[]`."""
    rows = (
        ZtrackingPaymentIntent.select()
        .where(ZtrackingPaymentIntent.payment_intent_id == inp.payment_intent_id)
        .order_by(ZtrackingPaymentIntent.ztracking_version)
    )
    history = [row.to_payload() for row in rows]
    if not history:
        raise not_found("payment intent", inp.payment_intent_id)
    return history


def get_payment_intent_status(ctx: OperationContext, inp: GetPaymentIntentInput) -> dict[str, Any]:
    """The short answer the gateway pushes to browsers: where the payment stands and, if it failed, why."""
    intent = PaymentIntent.get_or_none(PaymentIntent.id == inp.payment_intent_id)
    if intent is None:
        raise not_found("payment intent", inp.payment_intent_id)
    return status_of(intent)


def status_of(intent: PaymentIntent) -> dict[str, Any]:
    error = intent.last_payment_error or {}
    status = {
        "paymentIntentId": intent.id,
        "status": intent.status,
        "errorCode": error.get("code"),
        "errorMessage": error.get("message"),
    }
    if intent.receipt_email:
        status["customerEmail"] = intent.receipt_email  # the platform's PaymentStatusUpdateDto, when it is known
    return status


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def list_payment_intents(ctx: OperationContext, inp: ListPaymentIntentsInput) -> dict[str, Any]:
    """A customer's intents, newest first (ids sort by creation), filtered; `startingAfter` pages on to older ones,
    `endingBefore` back to newer ones."""
    owned = PaymentIntent.select().where(PaymentIntent.customer_id == inp.customer_id)
    query = owned
    if inp.status:
        query = query.where(PaymentIntent.status == inp.status)
    if inp.order_id:
        query = query.where(PaymentIntent.order_id == inp.order_id)
    if inp.created_gte:
        query = query.where(PaymentIntent.created_at >= _naive_utc(inp.created_gte))
    if inp.created_lt:
        query = query.where(PaymentIntent.created_at < _naive_utc(inp.created_lt))

    def payloads(rows: list[PaymentIntent]) -> list[dict[str, Any]]:
        attempts = attempts_by_intent([row.id for row in rows])
        return [row.to_payload(attempts[row.id]) for row in rows]

    return checked_page(
        query,
        owned,
        PaymentIntent.id,
        inp,
        what="a payment intent of this customer",
        newest_first=True,
        payloads=payloads,
    )
