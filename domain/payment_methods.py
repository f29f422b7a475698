"""create-payment-method, list-payment-methods, delete-payment-method: the customer's card vault."""

from __future__ import annotations

from typing import Any

import stripe_client
from domain import idempotency, stripe_outcomes
from domain.context import OperationContext
from domain.customers import ensure_stripe_customer, find_customer, lock_customer
from domain.ids import new_id
from domain.pages import checked_page
from domain.schemas import CreatePaymentMethodInput, DeletePaymentMethodInput, ListPaymentMethodsInput
from errors import OperationError, not_found
from models import PaymentMethod, utcnow, write_transaction
from models.base import for_update

CREATE = "create-payment-method"
DELETE = "delete-payment-method"


def _active(customer_id: str) -> Any:
    return PaymentMethod.select().where(PaymentMethod.customer_id == customer_id, PaymentMethod.deleted_at.is_null())


def _same_card(
    customer_id: str, fingerprint: str | None, stripe_payment_method_id: str, lock: bool = False
) -> PaymentMethod | None:
    """A method already vaulted for this customer: the same Stripe object, or the same card.

    `lock`: a locking read, which sees what others committed while we waited (TiDB's plain reads may not).
    """
    query = _active(customer_id)
    if fingerprint:
        query = query.where(
            (PaymentMethod.card_fingerprint == fingerprint)
            | (PaymentMethod.stripe_payment_method_id == stripe_payment_method_id)
        )
    else:
        query = query.where(PaymentMethod.stripe_payment_method_id == stripe_payment_method_id)
    query = query.order_by(PaymentMethod.id)
    return (for_update(query) if lock else query).first()


def _make_default(method: PaymentMethod) -> None:
    """The one default of the customer (call under the customer's lock)."""
    PaymentMethod.update(is_default=False).where(
        PaymentMethod.customer_id == method.customer_id, PaymentMethod.id != method.id
    ).execute()
    # Only this column: never write back a row a concurrent delete has changed.
    PaymentMethod.update(is_default=True).where(
        PaymentMethod.id == method.id, PaymentMethod.deleted_at.is_null()
    ).execute()
    method.is_default = True


def finish_create(claim: idempotency.Claim, inp: CreatePaymentMethodInput) -> dict[str, Any]:
    """Vault the method for a claim (the task's execution, or the janitor finishing an abandoned one)."""
    if PaymentMethod.get_or_none(
        PaymentMethod.stripe_payment_method_id == inp.stripe_payment_method_id,
        PaymentMethod.deleted_at.is_null(False),
    ):
        raise OperationError("invalid_state", "This payment method was deleted; vault a new one.")
    # Checked before anything is created: a refused request writes nothing, here or at Stripe.
    stripe_method = stripe_client.retrieve_payment_method(inp.stripe_payment_method_id)
    check_declared_type(inp.type, stripe_method)
    owner = stripe_method.get("customer")
    known = find_customer(inp.customer_id)
    if owner and (known is None or owner != known.stripe_customer_id):
        raise OperationError("invalid_state", "This payment method belongs to another customer.")
    customer = ensure_stripe_customer(inp.customer_id)
    stripe_customer_id = customer.stripe_customer_id
    assert stripe_customer_id is not None  # ensure_stripe_customer returns the row with its Stripe Customer

    card = stripe_method.get("card") or {}
    fingerprint = card.get("fingerprint")
    duplicate = _same_card(inp.customer_id, fingerprint, inp.stripe_payment_method_id)
    attach = duplicate is None and owner is None
    # A retry (or a takeover) sends Stripe the default the first attempt chose, under the same key.
    chosen_stripe_id = (claim.stripe_params or {}).get("defaultStripeId")
    if chosen_stripe_id is None:
        chosen_stripe_id = duplicate.stripe_payment_method_id if duplicate else inp.stripe_payment_method_id
    if (attach or inp.set_as_default) and not claim.stripe_started:
        params = {"defaultStripeId": chosen_stripe_id} if inp.set_as_default else None
        claim = idempotency.start_stripe_call(claim, params)
    if attach:
        with stripe_outcomes.repeatable_by_nature(claim):
            stripe_client.attach_payment_method(
                inp.stripe_payment_method_id,
                stripe_customer_id,
                idempotency_key=claim.stripe_key(CREATE, "attach"),
            )
    if inp.set_as_default:
        with stripe_outcomes.repeatable_by_nature(claim):
            stripe_client.set_default_payment_method(
                stripe_customer_id,
                chosen_stripe_id,
                idempotency_key=claim.stripe_key(CREATE, "default"),
            )
    with write_transaction():
        lock_customer(inp.customer_id)
        # Checked again under the customer's lock: a concurrent vault of the same card may have won.
        method = _same_card(inp.customer_id, fingerprint, inp.stripe_payment_method_id, lock=True)
        if method is None:
            method = PaymentMethod.create(
                id=claim.resource_id,
                customer_id=inp.customer_id,
                stripe_payment_method_id=inp.stripe_payment_method_id,
                type=stripe_method.get("type") or "card",
                card_brand=card.get("brand"),
                card_last4=card.get("last4"),
                card_exp_month=card.get("exp_month"),
                card_exp_year=card.get("exp_year"),
                card_fingerprint=fingerprint,
            )
        if inp.set_as_default:
            _make_default(method)
        payload = method.to_payload()
        idempotency.finish(claim, {"response": payload})
    return payload


# What the caller may say a Stripe card is: a plain card, or the wallet Stripe says it came from.
WALLETS = ("apple_pay", "google_pay")


def check_declared_type(declared: str | None, stripe_method: dict[str, Any]) -> None:
    """Refuse a declared type (the platform's `type`) that Stripe's method contradicts, before anything is written.

    The service charges cards only (its intents take `card`): Apple Pay and Google Pay are cards with a wallet at
    Stripe, and are vaulted; ACH (a bank account) is not. `other`, or none, declares nothing to check."""
    if declared in (None, "other"):
        return
    if declared == "ach":
        raise _type_refused("ach: the service vaults and charges cards only (Apple Pay and Google Pay are cards)")
    stripe_type = stripe_method.get("type")
    wallet = ((stripe_method.get("card") or {}).get("wallet") or {}).get("type")
    if stripe_type != "card":
        raise _type_refused(f"{declared}: Stripe says this payment method is {stripe_type}, not a card")
    if declared in WALLETS and wallet != declared:
        raise _type_refused(f"{declared}: Stripe says this card is {wallet or 'not from a wallet'}")


def _type_refused(message: str) -> OperationError:
    return OperationError(
        "validation_error",
        "The type does not match the payment method at Stripe.",
        {"fields": [{"field": "type", "message": message, "type": "type_mismatch"}]},
    )


def vault_for_intent(
    claim: idempotency.Claim, operation: str, customer_id: str, stripe_customer_id: str, stripe_payment_method_id: str
) -> PaymentMethod:
    """The vaulted method of a `pm_…` the browser made with Stripe.js for this intent's customer: vaulted here (not
    as the default) and attached to the customer's Stripe Customer when it is not yet. Every step may be repeated
    (a retry, a crash between them): a method attached to this customer is not attached again, and a vaulted one is
    found by its Stripe id. A method of another customer, here or at Stripe, is not found: never charged."""
    vaulted = PaymentMethod.get_or_none(PaymentMethod.stripe_payment_method_id == stripe_payment_method_id)
    if vaulted is not None and vaulted.customer_id != customer_id:
        raise _not_usable()
    if vaulted is not None and vaulted.deleted_at is not None:
        raise OperationError("invalid_state", "This payment method was deleted; make a new one with Stripe.js.")
    if vaulted is not None:
        return vaulted
    # Read before anything is written: a refused method writes nothing, here or at Stripe.
    stripe_method = stripe_client.retrieve_payment_method(stripe_payment_method_id)
    owner = stripe_method.get("customer")
    if owner and owner != stripe_customer_id:
        raise _not_usable()  # someone else's card: never charged, never said whose
    if stripe_method.get("type") != "card":
        raise OperationError(
            "validation_error",
            "Only a card can pay (Apple Pay and Google Pay are cards).",
            {"fields": [{"field": "paymentMethodId", "message": "not a card", "type": "type_mismatch"}]},
        )
    if owner is None:
        with stripe_outcomes.repeatable_by_nature(claim):
            stripe_client.attach_payment_method(
                stripe_payment_method_id, stripe_customer_id, idempotency_key=claim.stripe_key(operation, "attach")
            )
    card = stripe_method.get("card") or {}
    with write_transaction():
        lock_customer(customer_id)
        # Checked again under the customer's lock: a concurrent vault of the same method may have won.
        method = for_update(
            PaymentMethod.select().where(PaymentMethod.stripe_payment_method_id == stripe_payment_method_id)
        ).first()
        if method is None:
            method = PaymentMethod.create(
                id=new_id("payment_method"),
                customer_id=customer_id,
                stripe_payment_method_id=stripe_payment_method_id,
                type="card",
                card_brand=card.get("brand"),
                card_last4=card.get("last4"),
                card_exp_month=card.get("exp_month"),
                card_exp_year=card.get("exp_year"),
                card_fingerprint=card.get("fingerprint"),
            )
    if method.customer_id != customer_id or method.deleted_at is not None:
        raise _not_usable()
    return method


def _not_usable() -> OperationError:
    return OperationError(
        "not_found",
        "No payment method with this id can pay for this customer.",
        {"fields": ["paymentMethodId"]},
    )


def create_payment_method(ctx: OperationContext, inp: CreatePaymentMethodInput) -> dict[str, Any]:
    """Vault a `pm_…` made by Stripe.js: attach it to the customer's Stripe Customer, keep only card facts."""
    return idempotency.execute_once(
        ctx, CREATE, inp.canonical(), "payment_method", lambda claim: finish_create(claim, inp)
    )


def list_payment_methods(ctx: OperationContext, inp: ListPaymentMethodsInput) -> dict[str, Any]:
    """Newest first; `startingAfter` pages on to older ones, `endingBefore` back to newer ones."""
    owned = PaymentMethod.select().where(PaymentMethod.customer_id == inp.customer_id)
    return checked_page(
        _active(inp.customer_id),
        owned,
        PaymentMethod.id,
        inp,
        what="a payment method of this customer",
        newest_first=True,
    )


def _detached_at_stripe(stripe_payment_method_id: str, refusal: OperationError) -> bool:
    """Whether a refused detach still leaves the method detached: gone at Stripe, or attached to no customer (an
    earlier attempt's detach went through). Any other refusal is Stripe's answer, not a local delete."""
    if refusal.code == "not_found":
        return True
    if refusal.code != "validation_error":
        return False
    try:
        return not stripe_client.retrieve_payment_method(stripe_payment_method_id).get("customer")
    except OperationError as exc:
        return exc.code == "not_found"


def finish_delete(claim: idempotency.Claim, inp: DeletePaymentMethodInput) -> dict[str, Any]:
    """Detach in Stripe, then soft-delete here, for a claim (the task's execution, or the janitor's)."""
    method = PaymentMethod.get_or_none(PaymentMethod.id == inp.payment_method_id, PaymentMethod.deleted_at.is_null())
    if method is None:
        raise not_found("payment method", inp.payment_method_id)
    if not claim.stripe_started:
        claim = idempotency.start_stripe_call(claim)
    try:
        with stripe_outcomes.repeatable_by_nature(claim):
            stripe_client.detach_payment_method(
                method.stripe_payment_method_id,
                idempotency_key=claim.stripe_key(DELETE, "detach"),
            )
    except OperationError as exc:
        if not _detached_at_stripe(method.stripe_payment_method_id, exc):
            # Stripe refused the detach: the card stays usable there, so it stays in the vault here too.
            raise
    payload = {"id": method.id, "deleted": True}
    with write_transaction():
        lock_customer(method.customer_id)  # one change to a customer's vault at a time
        PaymentMethod.update(deleted_at=utcnow(), is_default=False).where(PaymentMethod.id == method.id).execute()
        idempotency.finish(claim, {"response": payload})
    return payload


def delete_payment_method(ctx: OperationContext, inp: DeletePaymentMethodInput) -> dict[str, Any]:
    """Detach in Stripe, then soft-delete here (history and intents keep pointing at it)."""
    return idempotency.execute_once(
        ctx, DELETE, inp.canonical(), "payment_method", lambda claim: finish_delete(claim, inp)
    )
