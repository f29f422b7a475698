"""The AsyncAPI 3.0 document of the payment events this service publishes (domain/payment_events.py).

Built from the same models the tests hold every published event to, so the document cannot drift from what is
sent. Served at /asyncapi.json.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from settings import get_settings


class Event(BaseModel):
    """What every payment event carries."""

    model_config = ConfigDict(extra="forbid")

    eventId: str = Field(description="Stable: a repeat of the same event (published at least once) has the same.")
    type: str
    occurredAt: str = Field(json_schema_extra={"format": "date-time"})
    traceId: str | None = Field(description="The trace of the operation or webhook that caused it.")
    version: int = Field(description="The intent's ztracking version when it happened.")
    paymentIntentId: str = Field(
        description="The message key when the intent has no orderId nor subscriptionId (else that is the key): one "
        "intent's events, and one order's, keep their order."
    )


class CreatedPaymentIntent(Event):
    type: Literal["created-payment-intent"]
    orderId: str | None
    subscriptionId: str | None
    amount: int
    currency: str


class SucceededPayment(Event):
    type: Literal["succeeded-payment"]
    orderId: str | None
    subscriptionId: str | None
    amountReceived: int


class FailedPayment(Event):
    type: Literal["failed-payment"]
    orderId: str | None
    subscriptionId: str | None
    errorCode: str | None
    errorMessage: str | None


class CanceledPayment(Event):
    type: Literal["canceled-payment"]
    orderId: str | None
    cancellationReason: str | None


class CreatedRefund(Event):
    type: Literal["created-refund"]
    refundId: str
    amount: int


class RefundSucceededPayment(Event):
    type: Literal["refund-succeeded-payment"]
    refundId: str
    amount: int


class FailedRefund(Event):
    type: Literal["failed-refund"]
    refundId: str
    amount: int
    errorCode: str | None


class PaymentStatusChanged(Event):
    type: Literal["payment-status-changed"]
    customerId: str = Field(description="The platform's customer: who may hear of it over the Socket.IO door.")
    orderId: str | None
    subscriptionId: str | None
    status: str
    previousStatus: str | None = Field(description="None when the intent was just created.")
    errorCode: str | None
    errorMessage: str | None


EVENTS: dict[str, type[Event]] = {
    "created-payment-intent": CreatedPaymentIntent,
    "succeeded-payment": SucceededPayment,
    "failed-payment": FailedPayment,
    "canceled-payment": CanceledPayment,
    "created-refund": CreatedRefund,
    "refund-succeeded-payment": RefundSucceededPayment,
    "failed-refund": FailedRefund,
    "payment-status-changed": PaymentStatusChanged,
}


class PlatformEvent(BaseModel):
    """The PRD's events (published beside ours under its names, the same row and eventId): its fields, and these."""

    model_config = ConfigDict(extra="forbid")

    eventId: str = Field(description="The same as the row's event on our own topic; a repeat has the same.")
    version: int = Field(description="The intent's ztracking version when it happened.")
    occurredAt: str = Field(json_schema_extra={"format": "date-time"})
    traceId: str | None


class PaymentIntentCreated(PlatformEvent):
    paymentIntentId: str
    orderId: str | None
    subscriptionId: str | None
    amountCents: int
    currency: str


class PaymentSucceeded(PlatformEvent):
    paymentIntentId: str
    orderId: str | None = Field(description="What the platform's order service marks PAID.")
    subscriptionId: str | None


class PaymentFailed(PlatformEvent):
    paymentIntentId: str
    orderId: str | None = Field(description="What the platform's order service marks PAYMENT_FAILED.")
    subscriptionId: str | None
    errorCode: str | None
    errorMessage: str | None


class RefundCreated(PlatformEvent):
    refundId: str
    paymentIntentId: str
    amountCents: int


class RefundSucceeded(PlatformEvent):
    refundId: str
    paymentIntentId: str


class RefundFailed(PlatformEvent):
    refundId: str
    paymentIntentId: str
    errorCode: str | None


PLATFORM_EVENTS: dict[str, type[PlatformEvent]] = {
    "created-payment-intent": PaymentIntentCreated,
    "succeeded-payment": PaymentSucceeded,
    "failed-payment": PaymentFailed,
    "created-refund": RefundCreated,
    "refund-succeeded-payment": RefundSucceeded,
    "failed-refund": RefundFailed,
}

WHEN = {
    "created-payment-intent": "An intent is created.",
    "succeeded-payment": "An intent reaches succeeded, by any path (an answer, a webhook, the janitor, a sync).",
    "failed-payment": "Each attempt that fails (a second decline too), a failure without an attempt of ours, an "
    "expired authorisation.",
    "canceled-payment": "An intent is canceled.",
    "created-refund": "Stripe accepts a refund (one of ours, or one made in the Dashboard).",
    "refund-succeeded-payment": "A refund succeeds.",
    "failed-refund": "A refund fails or is canceled.",
    "payment-status-changed": "An intent's status changes, its creation included, or an attempt of it fails (what "
    "the Socket.IO door pushes).",
}

HEADERS = {
    "type": "object",
    "properties": {
        "eventId": {"type": "string"},
        "type": {"type": "string"},
        "sequence": {
            "type": "string",
            "description": "The order the service wrote its events in: restores an intent's order across topics.",
        },
        "traceId": {"type": "string"},
    },
    "required": ["eventId", "type", "sequence"],
}


@lru_cache(maxsize=1)
def asyncapi_document() -> dict[str, Any]:
    routes = get_settings().event_routes
    channels: dict[str, dict[str, Any]] = {}
    operations: dict[str, dict[str, Any]] = {}
    messages: dict[str, dict[str, Any]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for event_type, own_model in EVENTS.items():
        for topic, dialect in routes.get(event_type, ()):
            model: type[BaseModel] = PLATFORM_EVENTS[event_type] if dialect == "platform" else own_model
            name = model.__name__
            schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            messages[name] = {
                "name": name if dialect == "platform" else event_type,
                "summary": WHEN[event_type],
                "contentType": "application/json",
                "headers": HEADERS,
                "payload": {"$ref": f"#/components/schemas/{name}"},
            }
            # A channel per topic (an operator may send two types to one topic: it carries both messages).
            channel = channels.setdefault(
                topic,
                {
                    "address": topic,
                    "description": "Key: the intent's orderId, else its subscriptionId, else its paymentIntentId.",
                    "messages": {},
                },
            )
            channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    for topic, channel in channels.items():
        operations[f"send-{topic}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in channel["messages"]],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "vy-finance-payments payment events",
            "version": "1.0.0",
            "description": "Published at least once, in order per intent, from a transactional outbox.",
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
