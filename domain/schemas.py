"""Input schemas of the operations (camelCase, unknown fields refused), shared by both doors."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from domain.personal_data import digest
from errors import OperationError
from models import currency_data as currencies

MAX_METADATA_KEYS = 44  # Stripe allows 50; an intent adds up to six of ours (localId and five vy_*)
RESERVED_METADATA_PREFIX = "vy_"
MAX_AMOUNT = 99_999_999  # Stripe's eight-digit ceiling in minor units
MAX_WEBHOOK_PAYLOAD = 1024 * 1024
DIGEST_FIELD = "hmacSha256"  # what a stored request keeps of personal data

OBJECT_ID_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
_OBJECT_ID = re.compile(OBJECT_ID_PATTERN)
NOT_OURS = "not_ours"


def _one_of_ours(value: str) -> str:
    if not _OBJECT_ID.fullmatch(value):
        # Not bad input but an unknown record (the platform's old ids are UUIDs): answered not_found.
        raise PydanticCustomError(NOT_OURS, "no record of ours has this id")
    return value


# Our ids and Stripe's: letters, digits, underscore; anything else cannot name a record of ours.
ObjectId = Annotated[str, AfterValidator(_one_of_ours), Field(json_schema_extra={"pattern": OBJECT_ID_PATTERN})]
PLATFORM_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"  # no control character (C0, DEL, C1)


def _whole_platform_id(value: str) -> str:
    # Ids are compared byte for byte everywhere: "alice " and "alice" would be two customers that look like one.
    if value != value.strip():
        raise PydanticCustomError("id_whitespace", "an id may not begin or end with whitespace")
    return value


def platform_id_problem(value: object) -> str | None:
    """Why `value` cannot be a platform id (for a door that checks one outside a schema), or None."""
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        return "1 to 255 characters"
    if not re.fullmatch(PLATFORM_ID_PATTERN, value):
        return "no control characters"
    if value != value.strip():
        return "no whitespace at either end"
    return None


# The platform's customer (and order, subscription) id is opaque: printable, no control characters, no whitespace at
# either end — compared byte for byte by Python and the database alike, so it must be written exactly one way.
PlatformId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=255, pattern=PLATFORM_ID_PATTERN),
    AfterValidator(_whole_platform_id),
]
StripePaymentMethodId = Annotated[str, StringConstraints(pattern=r"^pm_[A-Za-z0-9_]{1,250}$")]
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]


def _check_currency(value: str) -> str:
    code = value.lower()
    if code not in currencies.SUPPORTED:
        raise ValueError(f"{value!r} is not an ISO 4217 currency Stripe charges in")
    return code


Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{3}$"),
    AfterValidator(_check_currency),
    # Documented as the list Stripe charges in, either case.
    Field(json_schema_extra={"enum": sorted(currencies.SUPPORTED | {c.upper() for c in currencies.SUPPORTED})}),
]


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
    for key, item in value.items():
        if not 1 <= len(key) <= 40 or "[" in key or "]" in key:
            raise ValueError(f"key {key[:40]!r}: 1 to 40 characters, without square brackets")
        if key.startswith(RESERVED_METADATA_PREFIX):
            raise ValueError(f"key {key!r}: the prefix {RESERVED_METADATA_PREFIX!r} is reserved")
        if len(item) > 500:
            raise ValueError(f"value of {key!r}: at most 500 characters")
    return value


Metadata = Annotated[dict[str, str], AfterValidator(_check_metadata)]


class OperationInput(BaseModel):
    """Strict: no coercion of "10" to 10 or of 1 to True; unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, frozen=True)

    def canonical(self) -> dict[str, Any]:
        """The request with defaults filled, as the idempotency fingerprint sees it."""
        return self.model_dump(mode="json", by_alias=True)


EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
Email = Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=200)]
MAX_ITEMS = 100


class Address(OperationInput):
    """The platform's postal address (all optional: the web app sends what the person's profile has)."""

    street: Text | None = None
    city: Text | None = None
    state: Text | None = None
    zip: Annotated[str, StringConstraints(max_length=20)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None  # ISO 3166-1 alpha-2


class CustomerDetails(OperationInput):
    """Who pays, as the web app's checkout sends it: a person known by e-mail (personal data: see personal_data)."""

    first_name: Text | None = None
    last_name: Text | None = None
    email: Email
    address: Address | None = None

    @property
    def name(self) -> str | None:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or None


class Item(OperationInput):
    """One line of the platform's cart: priced by the caller (README, security)."""

    id: PlatformId
    quantity: Annotated[int, Field(ge=1, le=10_000)]
    price_cents: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
    currency: Currency


class CreatePaymentIntentInput(OperationInput):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"customerId": "customer-42", "amount": 2500, "currency": "usd"}]}
    )

    customer_id: PlatformId
    amount: Amount
    currency: Currency
    payment_method_id: ObjectId | None = None
    confirm: bool = False
    capture_method: Literal["automatic", "manual"] = "automatic"
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    order_id: PlatformId | None = None  # the platform's order this pays for: stored, answered, filterable
    subscription_id: PlatformId | None = None
    # The web app's checkout: the cart (amount and currency are its total) and who pays (the receipt goes there).
    items: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)] | None = None
    customer_details: CustomerDetails | None = None

    def canonical(self) -> dict[str, Any]:
        # Absent platform ids leave the fingerprint as it was before they existed (a key claimed then still matches).
        canonical = super().canonical()
        for name in ("orderId", "subscriptionId", "items", "customerDetails"):
            if canonical.get(name) is None:
                canonical.pop(name, None)
        if "customerDetails" in canonical:
            # Stored with the idempotency key: a keyed hash tells two people apart without keeping who they are.
            canonical["customerDetails"] = {DIGEST_FIELD: digest(canonical["customerDetails"])}
        return canonical

    @classmethod
    def from_stored(cls, request: dict[str, Any]) -> CreatePaymentIntentInput:
        """The request as `canonical` stored it (the person's details only as their hash, so left out)."""
        details = request.get("customerDetails")
        if isinstance(details, dict) and set(details) == {DIGEST_FIELD}:
            request = {name: value for name, value in request.items() if name != "customerDetails"}
        return cls.model_validate(request)

    @property
    def receipt_email(self) -> str | None:
        return self.customer_details.email if self.customer_details else None

    @model_validator(mode="after")
    def _amount_is_the_carts_total(self) -> CreatePaymentIntentInput:
        if self.items is None:
            return self
        currencies_of_items = {item.currency for item in self.items}
        if len(currencies_of_items) > 1:
            raise ValueError("items must all be in one currency")
        if currencies_of_items != {self.currency}:
            raise ValueError("currency must be the items' currency")
        total = sum(item.price_cents * item.quantity for item in self.items)
        if total != self.amount:
            raise ValueError(f"amount must be the items' total (the sum of priceCents * quantity: {total})")
        return self

    @model_validator(mode="after")
    def _amount_at_least_minimum(self) -> CreatePaymentIntentInput:
        minimum = currencies.minimum_charge(self.currency)
        if self.amount < minimum:
            raise ValueError(f"amount must be at least {minimum} {self.currency} minor units")
        step = currencies.amount_step(self.currency)
        if self.amount % step:
            raise ValueError(f"amount in {self.currency} must be a multiple of {step} minor units (Stripe's rule)")
        return self


def _not_both(first: str, second: str) -> Any:
    """A model validator: the fields `first` and `second` (snake_case) may be given one or the other, not both."""

    def one_or_the_other(model: BaseModel) -> BaseModel:
        if getattr(model, first) and getattr(model, second):
            raise ValueError(f"give {to_camel(first)} or {to_camel(second)}, not both")
        return model

    return model_validator(mode="after")(one_or_the_other)


class GetPaymentIntentInput(OperationInput):
    payment_intent_id: ObjectId


INTENT_STATUSES = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "succeeded",
    "canceled",
)
CancellationReason = Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"]
# ISO 8601 with a zone, as the payloads carry times (a string over both doors, parsed here).
Timestamp = Annotated[dt.datetime, Strict(False)]


LOCAL_HOSTS = ("localhost", "127.0.0.1")


def _check_return_url(value: str) -> str:
    # Where Stripe sends the browser after 3-D Secure: https only, but a developer's own machine may use http.
    parts = urlsplit(value)
    if not parts.netloc or parts.username is not None or parts.password is not None:
        raise ValueError("an absolute URL with a host")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS):
        return value
    raise ValueError("https only (http only for localhost or 127.0.0.1)")


ReturnUrl = Annotated[
    str,
    StringConstraints(min_length=8, max_length=2048, pattern=r"^[^\s\x00-\x1f\x7f]+$"),
    AfterValidator(_check_return_url),
]


class StripeShape(OperationInput):
    """An object passed to Stripe as it is: Stripe's own snake_case names, as the platform's DTO sends them."""

    model_config = ConfigDict(alias_generator=None)


class ShippingAddress(StripeShape):
    """Stripe's `shipping.address` (the platform's ShippingAddressDto; line2 too, which Stripe takes)."""

    line1: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    line2: Text | None = None
    city: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    state: Text | None = None
    postal_code: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]  # ISO 3166-1 alpha-2


class Shipping(StripeShape):
    """Stripe's `shipping` of a PaymentIntent (the platform's ShippingDto): who receives the goods, and where."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    address: ShippingAddress
    phone: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None


# Fields of a confirm that are personal data: kept in a stored request (and recorded Stripe parameters) as a hash.
CONFIRM_PERSONAL = {"receiptEmail": "receipt_email", "shipping": "shipping"}
# Fields a confirm sends to Stripe as they are (beside the payment method), by their Stripe names.
CONFIRM_STRIPE_NAMES = {
    "receiptEmail": "receipt_email",
    "returnUrl": "return_url",
    "setupFutureUsage": "setup_future_usage",
    "shipping": "shipping",
}


class ConfirmPaymentIntentInput(OperationInput):
    payment_intent_id: ObjectId
    payment_method_id: ObjectId | None = None  # ours; default: the intent's, else the customer's default
    # A `pm_…` Stripe.js made in the browser (the platform's web app): vaulted for the intent's customer, then used.
    stripe_payment_method_id: StripePaymentMethodId | None = None
    receipt_email: Email | None = None  # Stripe mails the receipt there (personal data: see personal_data)
    return_url: ReturnUrl | None = None  # where Stripe sends the browser back after 3-D Secure
    setup_future_usage: Literal["off_session", "on_session"] | None = None
    shipping: Shipping | None = None

    _one_payment_method = _not_both("payment_method_id", "stripe_payment_method_id")

    def canonical(self) -> dict[str, Any]:
        # Absent new fields leave the fingerprint as it was before they existed (a key claimed then still matches).
        canonical = super().canonical()
        for name in ("stripePaymentMethodId", *CONFIRM_STRIPE_NAMES):
            if canonical.get(name) is None:
                canonical.pop(name, None)
        for name in CONFIRM_PERSONAL:
            if name in canonical:
                # Stored with the idempotency key: a keyed hash tells two requests apart without keeping who it is.
                canonical[name] = {DIGEST_FIELD: digest(canonical[name])}
        return canonical

    def stripe_options(self) -> dict[str, Any]:
        """What the confirm sends to Stripe beside the payment method, by Stripe's names (personal data included)."""
        given = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {stripe: given[name] for name, stripe in CONFIRM_STRIPE_NAMES.items() if name in given}


class CapturePaymentIntentInput(OperationInput):
    payment_intent_id: ObjectId
    amount_to_capture: Amount | None = None  # at most amountCapturable; default: all of it
    # A capture of an intent captured already: refused (invalid_state, "refund it"), or, for senders that fire
    # and forget and repeat (the platform's order service), answered with the intent as it stands.
    if_captured: Literal["refuse", "answer"] = "refuse"

    @model_validator(mode="after")
    def _answer_only_a_full_capture(self) -> CapturePaymentIntentInput:
        if self.if_captured == "answer" and self.amount_to_capture is not None:
            raise ValueError("ifCaptured answer is for a capture of the whole authorisation (no amountToCapture)")
        return self

    def canonical(self) -> dict[str, Any]:
        canonical = super().canonical()
        if canonical.get("ifCaptured") == "refuse":
            canonical.pop("ifCaptured")  # the default: the fingerprint of a key claimed before it existed
        return canonical


class CancelPaymentIntentInput(OperationInput):
    payment_intent_id: ObjectId
    cancellation_reason: CancellationReason | None = None


class Cursors(OperationInput):
    """`startingAfter` or `endingBefore`, never both (ids of the list's own records)."""

    starting_after: ObjectId | None = None
    ending_before: ObjectId | None = None

    _one_cursor = _not_both("starting_after", "ending_before")


class ListPaymentIntentsInput(Cursors):
    customer_id: PlatformId
    status: Literal[INTENT_STATUSES] | None = None  # type: ignore[valid-type]
    order_id: PlatformId | None = None
    created_gte: Timestamp | None = None
    created_lt: Timestamp | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 10

    @model_validator(mode="after")
    def _zoned_times(self) -> ListPaymentIntentsInput:
        for name in ("created_gte", "created_lt"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{to_camel(name)} needs a time zone (e.g. Z)")
        return self


class ListRefundsInput(Cursors):
    payment_intent_id: ObjectId
    limit: Annotated[int, Field(ge=1, le=100)] = 100  # an intent's refunds are few: all of them by default


class RetryPaymentAttemptInput(OperationInput):
    attempt_id: ObjectId


class SyncPaymentIntentInput(OperationInput):
    """`payment-status-update`: the gateway's own news of an intent. Only its id is read: the status is Stripe's
    to say, so whatever else the message carries is ignored, never trusted."""

    model_config = ConfigDict(extra="ignore")

    payment_intent_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]


class CreateRefundInput(OperationInput):
    payment_intent_id: ObjectId
    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = Field(default_factory=dict)


class GetRefundInput(OperationInput):
    refund_id: ObjectId


class ProcessStripeWebhookInput(OperationInput):
    payload: Annotated[str, StringConstraints(min_length=1, max_length=MAX_WEBHOOK_PAYLOAD)]
    signature: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


# What the caller says the method is (the platform's PaymentMethodDto `type`, lower-cased): checked against Stripe.
PAYMENT_METHOD_TYPES = ("card", "apple_pay", "google_pay", "ach", "other")


class CreatePaymentMethodInput(OperationInput):
    customer_id: PlatformId
    stripe_payment_method_id: StripePaymentMethodId
    set_as_default: bool = False
    type: Literal[PAYMENT_METHOD_TYPES] | None = None  # type: ignore[valid-type]

    def canonical(self) -> dict[str, Any]:
        canonical = super().canonical()
        if canonical.get("type") is None:
            canonical.pop("type", None)  # absent: the fingerprint of a key claimed before it existed
        return canonical


class ListPaymentMethodsInput(Cursors):
    customer_id: PlatformId
    limit: Annotated[int, Field(ge=1, le=100)] = 10


class DeletePaymentMethodInput(OperationInput):
    payment_method_id: ObjectId


T = TypeVar("T", bound=OperationInput)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(body)"


def validation_error(exc: ValidationError) -> OperationError:
    """Pydantic's findings as DESIGN.md's `validation_error`, one entry per field, no input echoed; an id that
    cannot be one of ours (and nothing else wrong) is `not_found`, as an unknown id of ours would be."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    fields = [{"field": _location(err["loc"]), "message": err["msg"], "type": err["type"]} for err in errors]
    if errors and all(err["type"] == NOT_OURS for err in errors):
        return OperationError("not_found", "No record has this id.", {"fields": [f["field"] for f in fields]})
    return OperationError("validation_error", "The request is not valid.", {"fields": fields})


def parse_input(schema: type[T], data: Any) -> T:
    """Validate a payload; bad input raises OperationError('validation_error')."""
    if not isinstance(data, dict):
        raise OperationError("validation_error", "The request must be a JSON object.")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
