"""The OpenAPI 3.1 document, generated from the registry and the same pydantic schemas the doors validate with."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal

from openapi_pydantic.util import PydanticSchema, construct_open_api_with_schema_class
from openapi_pydantic.v3.v3_1 import OpenAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from domain.errors import STATUS_BY_CODE
from domain.schemas import INTENT_STATUSES
from registry import OPERATIONS, Operation


class Out(BaseModel):
    """What the service answers: exactly these fields, no others."""

    model_config = ConfigDict(extra="forbid")


class PaymentError(Out):
    code: str | None
    declineCode: str | None
    message: str | None
    type: str | None


IntentStatus = Literal[INTENT_STATUSES]  # type: ignore[valid-type]


class NextAction(Out):
    type: str = Field(description="What the browser must do with Stripe.js (e.g. use_stripe_sdk for 3-D Secure).")


class PaymentAttempt(Out):
    attemptId: str
    attemptNumber: int
    operation: Literal["confirm", "capture"]
    status: Literal["processing", "requires_action", "succeeded", "failed"]
    paymentMethodId: str | None
    amount: int | None
    errorCode: str | None
    errorMessage: str | None
    retryOf: str | None
    createdAt: str
    updatedAt: str


class IntentFields(Out):
    id: str
    customerId: str
    amount: int
    amountCapturable: int
    amountReceived: int
    amountRefunded: int
    currency: str
    status: IntentStatus
    captureMethod: Literal["automatic", "manual"]
    paymentMethodId: str | None
    description: str | None
    metadata: dict[str, str]
    lastPaymentError: PaymentError | None
    orderId: str | None
    subscriptionId: str | None
    captureBefore: str | None = Field(description="When an uncaptured authorisation expires (Stripe cancels it).")
    cancellationReason: str | None
    nextAction: NextAction | None
    stripePaymentIntentId: str | None
    createdAt: str
    updatedAt: str


class PaymentIntent(IntentFields):
    attempts: list[PaymentAttempt]


class CreatedPaymentIntent(PaymentIntent):
    clientSecret: str | None


class ConfirmedPaymentIntent(PaymentIntent):
    clientSecret: str | None = Field(None, description="Only while `requires_action`: Stripe.js finishes with it.")


class PaymentIntentSnapshot(IntentFields):
    ztrackingVersion: int
    versionDate: str
    cause: str


class PaymentIntentStatus(Out):
    paymentIntentId: str
    status: IntentStatus
    errorCode: str | None
    errorMessage: str | None


class Page(Out):
    hasMore: bool = Field(description="Whether more records lie beyond this page, in the direction it was read.")
    nextCursor: str | None = Field(
        description="Pass it as the same cursor (startingAfter, or endingBefore when this page was read with it) "
        "for the next page; null when there is none."
    )


class PaymentIntentPage(Page):
    data: list[PaymentIntent]


class AttemptSummary(Out):
    attemptId: str
    paymentIntentId: str
    attemptNumber: int
    operation: Literal["confirm", "capture"]
    status: Literal["processing", "requires_action", "succeeded", "failed"]
    errorCode: str | None
    errorMessage: str | None
    retryOf: str | None


class Refund(Out):
    id: str
    paymentIntentId: str
    amount: int
    currency: str
    status: str
    reason: str | None
    failureReason: str | None
    metadata: dict[str, str]
    stripeRefundId: str | None
    createdAt: str
    updatedAt: str


class Card(Out):
    brand: str | None
    last4: str | None
    expMonth: int | None
    expYear: int | None
    fingerprint: str | None


class PaymentMethod(Out):
    id: str
    customerId: str
    type: str
    card: Card | None
    isDefault: bool
    stripePaymentMethodId: str
    createdAt: str


class PaymentMethodPage(Page):
    data: list[PaymentMethod]


class RefundPage(Page):
    data: list[Refund]


class Deleted(Out):
    id: str
    deleted: Literal[True]


class WebhookReceipt(Out):
    eventId: str
    type: str
    duplicate: bool


class SocketToken(Out):
    token: str = Field(description="Signed (HS256); the browser passes it as `auth: {token}` to the Socket.IO door.")
    customerId: str = Field(description="The one customer the token may act for and hear about.")
    expiresAt: str = Field(json_schema_extra={"format": "date-time"})
    expiresIn: int = Field(description="Seconds the token stays valid (SOCKET_TOKEN_TTL_S, 15 minutes by default).")


ErrorCode = Literal[tuple(STATUS_BY_CODE)]  # type: ignore[valid-type]  # DESIGN.md's codes, one list for both


class ErrorDetail(Out):
    code: ErrorCode = Field(description="DESIGN.md's error code; `outcome_unknown`: retry with the same key.")
    message: str
    details: dict[str, Any]


class ErrorBody(Out):
    error: ErrorDetail
    traceId: str | None


RESPONSES: dict[str, Any] = {
    "create-payment-intent": CreatedPaymentIntent,
    "get-payment-intent": PaymentIntent,
    "get-ztracking-payment-intent": list[PaymentIntentSnapshot],
    "create-refund": Refund,
    "get-refund": Refund,
    "process-stripe-webhook": WebhookReceipt,
    "create-payment-method": PaymentMethod,
    "list-payment-methods": PaymentMethodPage,
    "delete-payment-method": Deleted,
    "confirm-payment-intent": ConfirmedPaymentIntent,
    "capture-payment-intent": PaymentIntent,
    "cancel-payment-intent": PaymentIntent,
    "get-payment-intent-status": PaymentIntentStatus,
    "list-payment-intents": PaymentIntentPage,
    "list-refunds": RefundPage,
    "retry-payment-attempt": AttemptSummary,
    "payment-status-update": PaymentIntentStatus,
}

# Which error statuses each operation can answer, beyond those every route can.
ERRORS: dict[str, tuple[int, ...]] = {
    "create-payment-intent": (402, 404, 409, 422, 502),
    "create-refund": (404, 409, 422, 502),
    "create-payment-method": (402, 404, 409, 422, 502),
    "delete-payment-method": (404, 409, 422, 502),
    "get-payment-intent": (404,),
    "get-ztracking-payment-intent": (404,),
    "get-refund": (404,),
    "list-payment-methods": (),
    "process-stripe-webhook": (),
    "confirm-payment-intent": (402, 404, 409, 422, 502),
    "capture-payment-intent": (404, 409, 422, 502),
    "cancel-payment-intent": (404, 409, 422, 502),
    "get-payment-intent-status": (404,),
    "list-payment-intents": (),
    "list-refunds": (404,),
    "retry-payment-attempt": (402, 404, 409, 422, 502),
    "payment-status-update": (404, 502),
}
COMMON_ERRORS = (400, 413, 500, 503, 504)
PUBLIC = {"process-stripe-webhook"}


def openapi_path(flask_path: str) -> str:
    """`/refunds/<refund_id>` → `/refunds/{refundId}`."""
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + to_camel(m.group(1)) + "}", flask_path)


def path_params(operation: Operation) -> list[str]:
    return [to_camel(name) for name in re.findall(r"<(?:\w+:)?(\w+)>", operation.path)]


def _schema_of(model: type[BaseModel], field: str) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True)["properties"][field]


def _parameters(operation: Operation) -> list[dict[str, Any]]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": _schema_of(operation.schema, name)}
        for name in path_params(operation)
    ]
    if operation.method == "GET":
        required = set(operation.schema.model_json_schema(by_alias=True).get("required", []))
        for name in operation.schema.model_json_schema(by_alias=True)["properties"]:
            if name not in path_params(operation):
                params.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in required,
                        "schema": _schema_of(operation.schema, name),
                    }
                )
    if operation.mutating:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Same key and body replays the first result (24 h).",
            }
        )
    if operation.name == "process-stripe-webhook":
        params.append({"name": "Stripe-Signature", "in": "header", "required": True, "schema": {"type": "string"}})
    params.append(
        {
            "name": "X-Trace-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
        }
    )
    return params


def _response_schema(model: Any) -> Any:
    if getattr(model, "__origin__", None) is list:
        return {"type": "array", "minItems": 1, "items": PydanticSchema(schema_class=model.__args__[0])}
    return PydanticSchema(schema_class=model)


UNKNOWN_OUTCOME = (
    "`outcome_unknown`: Stripe may have acted on the request and the service cannot tell yet (it gave up on a "
    "failure after Stripe was called, or no result came in time). Retry with the same `Idempotency-Key` after "
    "`Retry-After` seconds: the retry answers what happened. Never send it again under a new key."
)


def _error_response(operation: Operation, status: int) -> dict[str, Any]:
    codes = [code for code, code_status in STATUS_BY_CODE.items() if code_status == status]
    if not operation.mutating:
        codes = [code for code in codes if code != "outcome_unknown"]
    description = "Error: " + ", ".join(f"`{code}`" for code in codes)
    if "outcome_unknown" in codes:
        description += ". " + UNKNOWN_OUTCOME
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": PydanticSchema(schema_class=ErrorBody)}},
    }
    if status in (429, 503, 504):
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
        }
    return response


def _operation(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(operation.success_status): {
            "description": "Success",
            "content": {"application/json": {"schema": _response_schema(RESPONSES[operation.name])}},
        }
    }
    statuses = set(ERRORS[operation.name]) | set(COMMON_ERRORS) | ({401} if operation.name not in PUBLIC else set())
    for status in sorted(statuses):
        responses[str(status)] = _error_response(operation, status)
    spec: dict[str, Any] = {
        "operationId": operation.name,
        "summary": operation.name.replace("-", " ").capitalize(),
        "description": f"Kafka topic `{operation.name}`, replies on `{operation.response_topic}`.",
        "tags": [operation.path.strip("/").split("/")[0]],
        "parameters": _parameters(operation),
        "responses": responses,
    }
    if operation.name in PUBLIC:
        spec["security"] = []
        spec["requestBody"] = {
            "required": True,
            "description": "The event exactly as Stripe sent it; its signature covers these bytes.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    elif operation.method == "POST" and path_params(operation):
        spec["requestBody"] = _body_without_path_params(operation)
    elif operation.method == "POST":
        spec["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": PydanticSchema(schema_class=operation.schema)}},
        }
    return spec


def _body_without_path_params(operation: Operation) -> dict[str, Any]:
    """The body of a POST on a resource of the path (confirm, capture…): the schema's fields but those of the path;
    optional (and the body too) when every field is."""
    schema = operation.schema.model_json_schema(by_alias=True)
    taken = set(path_params(operation))
    body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: spec for name, spec in schema["properties"].items() if name not in taken},
    }
    required = [name for name in schema.get("required", []) if name not in taken]
    if required:
        body["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": body}}}


def _system_paths() -> dict[str, Any]:
    plain = {"description": "Status", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/healthz": {
            "get": {"operationId": "healthz", "summary": "Alive", "security": [], "responses": {"200": plain}}
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Database, broker and a worker answer",
                "security": [],
                "responses": {"200": plain, "503": plain},
            }
        },
    }


def _socket_token_path() -> dict[str, Any]:
    from api.socket_tokens import SocketTokenInput

    errors = {str(status): _error_response(OPERATIONS["list-payment-methods"], status) for status in (400, 401, 413)}
    return {
        "/socket-tokens": {
            "post": {
                "operationId": "create-socket-token",
                "summary": "A customer token for the Socket.IO door",
                "description": (
                    "A signed token valid 15 minutes that lets a browser connect to the Socket.IO door (namespace "
                    "`/finance-payments`) for this customer only: it acts on and hears about that customer's "
                    "payments, and anything else answers `not_found`. Only a server with an API key gets one."
                ),
                "tags": ["socket-tokens"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": PydanticSchema(schema_class=SocketTokenInput)}},
                },
                "responses": {
                    "200": {
                        "description": "The token",
                        "content": {"application/json": {"schema": PydanticSchema(schema_class=SocketToken)}},
                    },
                    **errors,
                },
            }
        }
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The whole document as JSON-ready data."""
    paths: dict[str, Any] = {**_system_paths(), **_socket_token_path()}
    for operation in OPERATIONS.values():
        paths.setdefault(openapi_path(operation.path), {})[operation.method.lower()] = _operation(operation)
    document = OpenAPI.model_validate(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "vy-finance-payments",
                "version": "1.0.0",
                "description": "Payments over Stripe. Every operation is also a Kafka topic with the same payload.",
            },
            "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        }
    )
    document = construct_open_api_with_schema_class(document)
    return document.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
