"""What a customer token may not do directly, it may not do by retrying (issue 24, point 3).

The scope is checked in the task, whatever the door (REST, Kafka, the Socket.IO door's customer tokens): these
tests run the task's own execution (`OperationTask._execute`) with a customer scope, as the socket door sends it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain import payment_attempts
from domain.ids import new_id
from errors import OperationError
from models import PaymentAttempt, PaymentIntent, write_transaction
from registry import OPERATIONS
from tasks.operations import TASKS
from tasks.scope import RETRIED_AS, check_scope
from tests.conftest import make_card
from tests.domain.helpers import call, context

pytestmark = pytest.mark.integration

MERCHANT_ONLY = {"process-stripe-webhook", "create-refund", "capture-payment-intent", "cancel-payment-intent"}


def run_task(operation: str, payload: dict[str, Any], customer_scope: str | None = None) -> dict[str, Any]:
    """The task's envelope for one execution; `customer_scope` as the socket door sets it for a customer token."""
    meta = {"customerScope": customer_scope} if customer_scope is not None else {}
    return TASKS[operation]._execute(context(), payload, meta)


def customer_with_card(stripe_api: Any) -> str:
    customer_id = f"scope-{uuid.uuid4().hex[:10]}"
    call(
        "create-payment-method",
        {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True},
    )
    return customer_id


def authorised(stripe_api: Any, customer_id: str, amount: int = 1800) -> dict[str, Any]:
    create = {"customerId": customer_id, "amount": amount, "currency": "usd", "captureMethod": "manual"}
    return call("create-payment-intent", {**create, "confirm": True})


def failed_attempt(intent_id: str, operation: str, **fields: Any) -> PaymentAttempt:
    """An attempt that failed without Stripe acting (as the janitor leaves a capture Stripe never did)."""
    with write_transaction():
        intent = PaymentIntent.get_by_id(intent_id)
        attempt = payment_attempts.open_attempt(intent, new_id("payment_attempt"), operation, **fields)
        error = {"code": "stripe_error", "message": "not done at Stripe"}
        return payment_attempts.settle(attempt, intent, error)


def test_the_registry_names_the_merchant_only_operations():
    assert {name for name, op in OPERATIONS.items() if op.merchant_only} == MERCHANT_ONLY


@pytest.mark.parametrize("operation", sorted(MERCHANT_ONLY))
def test_every_merchant_only_operation_is_forbidden_to_a_customer_token_whatever_the_record(operation):
    with pytest.raises(OperationError) as raised:
        check_scope(operation, object(), "any-customer")
    assert raised.value.code == "forbidden" and raised.value.status == 403


def test_every_operation_a_retry_runs_again_is_named_in_the_registry():
    assert set(RETRIED_AS.values()) <= set(OPERATIONS)


def test_a_customer_token_cannot_capture_by_retrying_its_failed_capture_and_the_merchant_can(domain_db, stripe_api):
    customer_id = customer_with_card(stripe_api)
    intent = authorised(stripe_api, customer_id)
    failed = failed_attempt(intent["id"], "capture", amount=intent["amount"])
    direct = run_task("capture-payment-intent", {"paymentIntentId": intent["id"]}, customer_id)
    by_retry = run_task("retry-payment-attempt", {"attemptId": failed.id}, customer_id)
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert direct["error"]["code"] == "forbidden"
    assert by_retry["error"]["code"] == "forbidden" and by_retry["error"]["status"] == 403
    assert (at_stripe.status, at_stripe.amount_received) == ("requires_capture", 0)  # nothing captured
    assert PaymentAttempt.select().where(PaymentAttempt.retry_of == failed.id).count() == 0
    # Positive control: the same retry from the merchant (no customer scope) captures.
    merchant = run_task("retry-payment-attempt", {"attemptId": failed.id})
    assert (merchant["response"]["status"], merchant["response"]["retryOf"]) == ("succeeded", failed.id)
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert (at_stripe.status, at_stripe.amount_received) == ("succeeded", intent["amount"])


def test_a_customer_token_may_retry_its_failed_confirm_as_it_may_confirm(domain_db, stripe_api):
    customer_id = customer_with_card(stripe_api)
    create = {"customerId": customer_id, "amount": 1300, "currency": "usd"}
    intent = call("create-payment-intent", create)
    failed = failed_attempt(intent["id"], "confirm", payment_method_id=None)
    retried = run_task("retry-payment-attempt", {"attemptId": failed.id}, customer_id)
    assert (retried["response"]["status"], retried["response"]["operation"]) == ("succeeded", "confirm"), retried


def test_another_customers_capture_attempt_is_not_found_for_a_customer_token_never_forbidden(domain_db, stripe_api):
    owner = customer_with_card(stripe_api)
    intent = authorised(stripe_api, owner)
    failed = failed_attempt(intent["id"], "capture", amount=intent["amount"])
    stranger = run_task("retry-payment-attempt", {"attemptId": failed.id}, f"stranger-{uuid.uuid4().hex[:8]}")
    assert stranger["error"]["code"] == "not_found"  # a token tells nothing about other customers' records


def test_a_customer_tokens_sync_only_reads_and_never_moves_the_hold(domain_db, stripe_api):
    customer_id = customer_with_card(stripe_api)
    intent = authorised(stripe_api, customer_id)
    synced = run_task("payment-status-update", {"paymentIntentId": intent["id"], "status": "succeeded"}, customer_id)
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    assert synced["response"]["status"] == "requires_capture"
    assert (at_stripe.status, at_stripe.amount_received) == ("requires_capture", 0)
    # Positive control: once the merchant captured, the same sync sees it.
    assert run_task("capture-payment-intent", {"paymentIntentId": intent["id"]})["response"]["status"] == "succeeded"
    synced = run_task("payment-status-update", {"paymentIntentId": intent["id"]}, customer_id)
    assert synced["response"]["status"] == "succeeded"
