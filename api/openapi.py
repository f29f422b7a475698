"""The OpenAPI 3.1 document, generated from the registry and the same pydantic schemas the doors validate with."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import metadata
from typing import TYPE_CHECKING, Annotated, Any, Literal

from openapi_pydantic.util import PydanticSchema, construct_open_api_with_schema_class
from openapi_pydantic.v3.v3_1 import OpenAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.openapi_docs import EXAMPLES, FIELD_DOCS, SUMMARIES
from domain.schemas import INTENT_STATUSES
from doors.oauth import SCOPE_WRITE, SCOPES, required_scope
from errors import STATUS_BY_CODE
from registry import OPERATIONS, Operation


class Out(BaseModel):
    """What the service answers: exactly these fields, no others."""

    model_config = ConfigDict(extra="forbid")


class PaymentError(Out):
    """Stripe's `last_payment_error`, as Stripe gave it."""

    code: str | None = Field(description="Stripe's error code: Stripe's own open list (card_declined, expired_card…).")
    declineCode: str | None
    message: str | None
    type: str | None


IntentStatus = Literal[INTENT_STATUSES]  # type: ignore[valid-type]
# Times are ISO 8601 strings in UTC, as answered.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
RefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
# Stripe's reasons: ours, and those of refunds and cancellations Stripe or the Dashboard made.
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer", "expired_uncaptured_charge"]
CancellationReason = Literal[
    "duplicate",
    "fraudulent",
    "requested_by_customer",
    "abandoned",
    "automatic",
    "expired",
    "failed_invoice",
    "void_invoice",
]


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
    createdAt: Timestamp
    updatedAt: Timestamp


class CartItem(Out):
    id: str
    quantity: int
    priceCents: int
    currency: str


class IntentFields(Out):
    id: str
    paymentIntentId: str = Field(description="The platform's name of `id` (its PaymentIntentDto).")
    amountCents: int = Field(description="The platform's name of `amount`.")
    externalId: str | None = Field(description="The platform's name of `stripePaymentIntentId`.")
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
    captureBefore: Timestamp | None = Field(description="When an uncaptured authorisation expires (Stripe cancels it).")
    cancellationReason: CancellationReason | None
    nextAction: NextAction | None
    items: list[CartItem] | None = Field(description="The platform's cart the amount was priced from, if any.")
    stripePaymentIntentId: str | None
    createdAt: Timestamp
    updatedAt: Timestamp


class PaymentIntent(IntentFields):
    attempts: list[PaymentAttempt]


class CreatedPaymentIntent(PaymentIntent):
    clientSecret: str | None
    success: Literal[True] = Field(description="The platform's PaymentIntentCreatedDto: always true on success.")
    totalAmount: int = Field(description="What is charged: `amount` (no coupons are applied here).")
    originalAmount: int = Field(description="`amount` before coupons: the same, as none are applied.")
    amountUnit: Literal["cents", "minor_units"] = Field(description="`cents` where the minor unit is 1/100.")
    appliedCoupons: list[str] = Field(description="Always empty: coupons are not supported.", max_length=0)


class ConfirmedPaymentIntent(PaymentIntent):
    clientSecret: str | None = Field(None, description="Only while `requires_action`: Stripe.js finishes with it.")
    success: bool = Field(description="True when the intent succeeded or awaits its capture or the browser's action.")
    requiresAction: bool = Field(description="True when the browser must act (3-D Secure) with Stripe.js.")
    errorCode: str | None = Field(description="The last payment error's code, when the payment failed.")
    errorMessage: str | None = Field(description="The last payment error's message, when the payment failed.")


class CapturedPaymentIntent(PaymentIntent):
    attemptId: str | None = Field(description="The capture's attempt (the platform's answer to a capture).")
    nextRetryAt: None = Field(description="Always null: no retry is scheduled by the service.")


class PaymentIntentSnapshot(IntentFields):
    ztrackingVersion: int
    versionDate: Timestamp
    cause: str


class PaymentStatus(Out):
    paymentIntentId: str
    status: IntentStatus
    errorCode: str | None
    errorMessage: str | None
    customerEmail: str | None = Field(None, description="Where the receipt goes: only when a checkout named it.")


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
    nextRetryAt: None = Field(description="Always null: a retry runs at once, nothing is scheduled after it.")


class Refund(Out):
    id: str
    refundId: str = Field(description="The platform's name of `id` (its RefundDto).")
    amountCents: int = Field(description="The platform's name of `amount`.")
    externalId: str | None = Field(description="The platform's name of `stripeRefundId`.")
    paymentIntentId: str
    amount: int
    currency: str
    status: RefundStatus
    reason: RefundReason | None
    failureReason: str | None
    metadata: dict[str, str]
    stripeRefundId: str | None
    createdAt: Timestamp
    updatedAt: Timestamp


class Card(Out):
    brand: str | None
    last4: str | None
    expMonth: int | None
    expYear: int | None
    fingerprint: str | None


class PaymentMethod(Out):
    id: str
    paymentMethodId: str = Field(description="The platform's name of `id` (its PaymentMethodDto).")
    personId: str = Field(description="The platform's name of `customerId`.")
    externalId: str = Field(description="The platform's name of `stripePaymentMethodId`.")
    customerId: str
    type: str
    card: Card | None
    isDefault: bool
    stripePaymentMethodId: str
    createdAt: Timestamp


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


if TYPE_CHECKING:
    ErrorCode = str  # a Literal built at run time is no static type: the checker sees the string it is
else:
    ErrorCode = Literal[tuple(STATUS_BY_CODE)]  # DESIGN.md's codes, one list for both


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
    "capture-payment-intent": CapturedPaymentIntent,
    "cancel-payment-intent": PaymentIntent,
    "get-payment-intent-status": PaymentStatus,
    "list-payment-intents": PaymentIntentPage,
    "list-refunds": RefundPage,
    "retry-payment-attempt": AttemptSummary,
    "payment-status-update": PaymentStatus,
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
COMMON_ERRORS = (400, 413, 429, 500, 503, 504)
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


HEADERS: dict[str, dict[str, Any]] = {
    "X-Trace-Id": {
        "description": "The request's trace (its X-Trace-Id, else its traceparent's trace id, else a new one): in "
        "the logs, the Celery task, Stripe's metadata and Sentry.",
        "schema": {"type": "string"},
    },
    "traceparent": {
        "description": "W3C Trace Context: this request as a span of the trace (when the trace id is W3C's).",
        "schema": {"type": "string", "pattern": r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    },
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 0}},
    "Idempotency-Key": {
        "description": "The key the request ran under (the caller's, or one the server made): retry with it.",
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer of an earlier request with the same key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Location": {"description": "Where the created resource is.", "schema": {"type": "string"}},
    "WWW-Authenticate": {
        "description": 'RFC 6750\'s challenge: `Bearer`; for an OAuth2 token refused `error="invalid_token"` '
        '(401), or lacking the route\'s scope `error="insufficient_scope", scope="…"` (403).',
        "schema": {"type": "string"},
    },
}
# The two ways in: an API key, or an OAuth2 access token (JWT) from the configured identity provider.
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key of API_KEYS: `Authorization: Bearer <key>`.",
    },
    "oauth2": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An OAuth2 access token of the identity provider the service is pointed at (OAUTH_ISSUER; "
        "RS256 by its JWKS, or HS256), for this API (`aud` = OAUTH_AUDIENCE), unexpired, with the route's scope in "
        "`scope` or `scp`: " + ", ".join(f"`{scope}`" for scope in SCOPES) + " (`payments:read` every GET, "
        "`payments:refund` creating a refund, `payments:write` every other change). Each token's client is a caller "
        "of its own: idempotency keys and rate limits are per client.",
    },
}


def security(scope: str) -> list[dict[str, list[str]]]:
    """An API key, or a token with `scope` (OpenAPI 3.1 lets a non-oauth2 scheme name the roles it needs)."""
    return [{"bearer": []}, {"oauth2": [scope]}]


RATE_LIMIT_HEADERS: dict[str, dict[str, Any]] = {
    "RateLimit-Limit": {"description": "Requests allowed in the window (its limit).", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {
        "description": "When the window resets (epoch seconds).",
        "schema": {"type": "integer"},
    },
}


def _success_headers(operation: Operation) -> dict[str, Any]:
    headers = {"X-Trace-Id": HEADERS["X-Trace-Id"], "traceparent": HEADERS["traceparent"], **RATE_LIMIT_HEADERS}
    if operation.mutating:
        headers["Idempotency-Key"] = HEADERS["Idempotency-Key"]
        headers["Idempotent-Replayed"] = HEADERS["Idempotent-Replayed"]
    if operation.location:
        headers["Location"] = HEADERS["Location"]
    return headers


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
    headers = {"X-Trace-Id": HEADERS["X-Trace-Id"]}
    if status in (429, 503, 504):
        headers["Retry-After"] = HEADERS["Retry-After"]
    if status in (401, 403):
        headers["WWW-Authenticate"] = HEADERS["WWW-Authenticate"]
    # Refused before a key is taken (bad input, no credential, no scope): no key to name.
    if operation.mutating and status not in (400, 401, 403):
        headers["Idempotency-Key"] = HEADERS["Idempotency-Key"]
        headers["Idempotent-Replayed"] = HEADERS["Idempotent-Replayed"]
    if status == 429:
        headers.update(RATE_LIMIT_HEADERS)
    response["headers"] = headers
    return response


def _operation(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(operation.success_status): {
            "description": "Created" if operation.success_status == 201 else "Success",
            "headers": _success_headers(operation),
            "content": {"application/json": {"schema": _response_schema(RESPONSES[operation.name])}},
        }
    }
    # 401 without a valid API key or token; 403 a token without the route's scope.
    authenticated = {401, 403} if operation.name not in PUBLIC else set()
    statuses = set(ERRORS[operation.name]) | set(COMMON_ERRORS) | authenticated
    if operation.method == "POST":
        statuses.add(415)  # a body that is not JSON
    for status in sorted(statuses):
        responses[str(status)] = _error_response(operation, status)
    spec: dict[str, Any] = {
        "operationId": operation.name,
        "summary": operation.name.replace("-", " ").capitalize(),
        "description": f"{SUMMARIES[operation.name]} Kafka topic `{operation.name}`, replies on "
        f"`{operation.response_topic}`; Socket.IO event `{operation.name}` on `/finance-payments`.",
        "tags": [operation.path.strip("/").split("/")[0]],
        "parameters": _parameters(operation),
        "responses": responses,
    }
    if operation.name in PUBLIC:
        spec["security"] = []
    else:
        spec["security"] = security(required_scope(operation))
    if operation.name in PUBLIC:
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
    _add_example(spec, operation)
    return spec


def _add_example(spec: dict[str, Any], operation: Operation) -> None:
    """The operation's example: its body for a POST, its parameters' values otherwise."""
    example = EXAMPLES[operation.name]
    for param in spec["parameters"]:
        if param["name"] in example:
            param["example"] = example[param["name"]]
    body = spec.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        body["example"] = {k: v for k, v in example.items() if k not in path_params(operation)}


def _body_without_path_params(operation: Operation) -> dict[str, Any]:
    """The body of a POST on a resource of the path (confirm, capture…): the schema's fields but those of the path;
    optional (and the body too) when every field is."""
    schema = operation.schema.model_json_schema(by_alias=True)
    taken = set(path_params(operation))
    defs = schema.get("$defs", {})
    body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _inlined(spec, defs) for name, spec in schema["properties"].items() if name not in taken},
    }
    required = [name for name in schema.get("required", []) if name not in taken]
    if required:
        body["required"] = required
    return {"required": bool(required), "content": {"application/json": {"schema": body}}}


def _inlined(value: Any, defs: dict[str, Any]) -> Any:
    """`value` with its `#/$defs/…` references replaced by what they name (a confirm's `shipping`): this body is
    built apart from the components, so a reference to the model's own `$defs` would point nowhere."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inlined(item, defs) for key, item in value.items()}
    if isinstance(value, list):
        return [_inlined(item, defs) for item in value]
    return value


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

    errors = {
        str(status): _error_response(OPERATIONS["list-payment-methods"], status) for status in (400, 401, 403, 413)
    }
    return {
        "/socket-tokens": {
            "post": {
                "operationId": "create-socket-token",
                "summary": "A customer token for the Socket.IO door",
                "description": (
                    "A signed token valid 15 minutes that lets a browser connect to the Socket.IO door (namespace "
                    "`/finance-payments`) for this customer only: it acts on and hears about that customer's "
                    "payments, and anything else answers `not_found`. Only a server gets one: with an API key, or "
                    "an OAuth2 token with `payments:write`."
                ),
                "tags": ["socket-tokens"],
                "security": security(SCOPE_WRITE),
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
                "version": package_version(),
                "description": "Payments over Stripe. Every operation is also a Kafka topic and a Socket.IO event "
                "with the same payload. Lists page with startingAfter / endingBefore and answer nextCursor; "
                "over its rate limit (RATE_LIMIT_SERVER, RATE_LIMIT_CALLERS, RATE_LIMIT_CUSTOMER) a caller gets "
                "429 rate_limited.",
            },
            "servers": [{"url": "/", "description": "This instance (the document is served by the API it describes)."}],
            "paths": paths,
            "components": {"securitySchemes": SECURITY_SCHEMES},
            "security": [{"bearer": []}, {"oauth2": []}],
        }
    )
    document = construct_open_api_with_schema_class(document)
    dumped = document.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    _describe_fields(dumped)
    return _integer_bounds(dumped)


BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems", "minLength"}


def _integer_bounds(value: Any) -> Any:
    """openapi-pydantic types bounds as floats (`1.0`): an integer bound is written as the integer it is."""
    if isinstance(value, dict):
        return {
            k: int(v) if k in BOUNDS and isinstance(v, float) and v.is_integer() else _integer_bounds(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_integer_bounds(v) for v in value]
    return value


def package_version() -> str:
    """The installed package's version (pyproject.toml), so the document says which build it describes."""
    try:
        return metadata.version("vy-finance-payments")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


def _describe_fields(document: dict[str, Any]) -> None:
    """Give every schema property and parameter its description from FIELD_DOCS (one wording for each name)."""
    for schema in document.get("components", {}).get("schemas", {}).values():
        for name, spec in schema.get("properties", {}).items():
            if "description" not in spec and name in FIELD_DOCS:
                spec["description"] = FIELD_DOCS[name]
    for path in document["paths"].values():
        for spec in path.values():
            for param in spec.get("parameters", []):
                if "description" not in param and param["name"] in FIELD_DOCS:
                    param["description"] = FIELD_DOCS[param["name"]]
            body = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            _describe_properties(body)


def _describe_properties(schema: Any) -> None:
    """A request body's properties and those of the objects it nests (inlined: a confirm's `shipping`)."""
    if isinstance(schema, list):
        for item in schema:
            _describe_properties(item)
        return
    if not isinstance(schema, dict):
        return
    for name, prop in schema.get("properties", {}).items():
        if isinstance(prop, dict) and "description" not in prop and name in FIELD_DOCS:
            prop["description"] = FIELD_DOCS[name]
        _describe_properties(prop)
    for key in ("anyOf", "oneOf", "allOf", "items"):
        if key in schema:
            _describe_properties(schema[key])
