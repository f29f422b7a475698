"""The operation registry: each operation named once — Kafka topic, REST route, schema, task, queue.

Both doors and the Celery app read this table; adding an operation touches it and its domain function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from domain import schemas

QUEUES = ("payments", "payment-methods", "webhooks", "reads")


@dataclass(frozen=True)
class Operation:
    name: str  # the Kafka request topic; replies go to f"{name}-response"
    method: str  # REST method
    path: str  # REST path (Flask converter syntax)
    schema: type[schemas.OperationInput]
    handler: str  # "module:function" of the domain function, imported only where tasks run
    queue: str
    success_status: int = 200
    mutating: bool = False  # takes an idempotency key; its task may reach Stripe
    location: str | None = None  # where what a 201 created lives (`{id}` of the answer), for its Location header
    # The merchant's alone (gives money back, takes a hold back, or is Stripe's): a customer token may not run it.
    merchant_only: bool = False

    @property
    def task_name(self) -> str:
        return f"payments.{self.name}"

    @property
    def response_topic(self) -> str:
        return f"{self.name}-response"

    def resolve_handler(self) -> Callable[..., Any]:
        module, _, function = self.handler.partition(":")
        return getattr(importlib.import_module(module), function)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "create-payment-intent",
            "POST",
            "/payment-intents",
            schemas.CreatePaymentIntentInput,
            "domain.payment_intents:create_payment_intent",
            "payments",
            201,
            mutating=True,
            location="/payment-intents/{id}",
        ),
        Operation(
            "get-payment-intent",
            "GET",
            "/payment-intents/<payment_intent_id>",
            schemas.GetPaymentIntentInput,
            "domain.payment_intents:get_payment_intent",
            "reads",
        ),
        Operation(
            "get-ztracking-payment-intent",
            "GET",
            "/payment-intents/<payment_intent_id>/history",
            schemas.GetPaymentIntentInput,
            "domain.payment_intents:get_payment_intent_history",
            "reads",
        ),
        Operation(
            "create-refund",
            "POST",
            "/refunds",
            schemas.CreateRefundInput,
            "domain.refunds:create_refund",
            "payments",
            201,
            mutating=True,
            location="/refunds/{id}",
            merchant_only=True,
        ),
        Operation(
            "get-refund",
            "GET",
            "/refunds/<refund_id>",
            schemas.GetRefundInput,
            "domain.refunds:get_refund",
            "reads",
        ),
        Operation(
            "process-stripe-webhook",
            "POST",
            "/webhooks/stripe",
            schemas.ProcessStripeWebhookInput,
            "domain.webhooks:process_stripe_webhook",
            "webhooks",
            merchant_only=True,
        ),
        Operation(
            "create-payment-method",
            "POST",
            "/payment-methods",
            schemas.CreatePaymentMethodInput,
            "domain.payment_methods:create_payment_method",
            "payment-methods",
            201,
            mutating=True,
            location="/payment-methods/{id}",
        ),
        Operation(
            "list-payment-methods",
            "GET",
            "/payment-methods",
            schemas.ListPaymentMethodsInput,
            "domain.payment_methods:list_payment_methods",
            "reads",
        ),
        Operation(
            "delete-payment-method",
            "DELETE",
            "/payment-methods/<payment_method_id>",
            schemas.DeletePaymentMethodInput,
            "domain.payment_methods:delete_payment_method",
            "payment-methods",
            mutating=True,
        ),
        Operation(
            "confirm-payment-intent",
            "POST",
            "/payment-intents/<payment_intent_id>/confirm",
            schemas.ConfirmPaymentIntentInput,
            "domain.intent_lifecycle:confirm_payment_intent",
            "payments",
            mutating=True,
        ),
        Operation(
            "capture-payment-intent",
            "POST",
            "/payment-intents/<payment_intent_id>/capture",
            schemas.CapturePaymentIntentInput,
            "domain.intent_lifecycle:capture_payment_intent",
            "payments",
            mutating=True,
            merchant_only=True,
        ),
        Operation(
            "cancel-payment-intent",
            "POST",
            "/payment-intents/<payment_intent_id>/cancel",
            schemas.CancelPaymentIntentInput,
            "domain.intent_lifecycle:cancel_payment_intent",
            "payments",
            mutating=True,
            merchant_only=True,
        ),
        Operation(
            "get-payment-intent-status",
            "GET",
            "/payment-intents/<payment_intent_id>/status",
            schemas.GetPaymentIntentInput,
            "domain.payment_intents:get_payment_intent_status",
            "reads",
        ),
        Operation(
            "list-payment-intents",
            "GET",
            "/payment-intents",
            schemas.ListPaymentIntentsInput,
            "domain.payment_intents:list_payment_intents",
            "reads",
        ),
        Operation(
            "list-refunds",
            "GET",
            "/payment-intents/<payment_intent_id>/refunds",
            schemas.ListRefundsInput,
            "domain.refunds:list_refunds",
            "reads",
        ),
        Operation(
            "retry-payment-attempt",
            "POST",
            "/payment-attempts/<attempt_id>/retry",
            schemas.RetryPaymentAttemptInput,
            "domain.intent_lifecycle:retry_payment_attempt",
            "payments",
            mutating=True,
        ),
        Operation(
            "payment-status-update",
            "POST",
            "/payment-intents/<payment_intent_id>/sync",
            schemas.SyncPaymentIntentInput,
            "domain.intent_lifecycle:sync_payment_intent",
            "payments",
        ),
    )
}
