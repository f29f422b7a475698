"""The one place that talks to Stripe: base URL and key from settings, errors mapped to the domain's."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import requests
import requests.adapters
import stripe
from peewee import Database
from playhouse.pool import PooledDatabase

import stripe_pacing
from errors import OperationError, PaceExceeded, StripeMayHaveActed, TransientError
from execution import note_stripe_did_not_act, note_stripe_may_have_acted, stripe_may_have_acted
from models import database
from observability.metrics import STRIPE_CALLS
from settings import get_settings

_lock = threading.Lock()
_client: stripe.StripeClient | None = None


class PacedRequestsClient(stripe.RequestsClient):
    """The SDK's HTTP client, each request waiting first for its turn in Stripe's rate budget: the one choke point
    every Stripe call passes, the SDK's list paging and the probes included."""

    # RequestsClient's own signature (the SDK's base class declares a keyword RequestsClient does not take).
    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        stripe_pacing.pace(method, url)
        return super().request(method, url, headers, post_data)


def client() -> stripe.StripeClient:
    """One StripeClient per process (its HTTP sessions are per thread), pointed at STRIPE_API_BASE."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                settings = get_settings()
                # One pool of kept-alive connections for every greenlet: the SDK's own session is per
                # thread, which under gevent means a new TLS handshake for every task.
                session = requests.Session()
                adapter = requests.adapters.HTTPAdapter(
                    pool_connections=4, pool_maxsize=max(10, settings.payments_concurrency), max_retries=0
                )
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                # requests reads the proxy variables (and ~/.netrc) from the environment on every call, a tenth
                # of a create's CPU: read once here for Stripe's one address, then never again.
                session.proxies.update(requests.utils.get_environ_proxies(settings.stripe_api_url))
                session.trust_env = False
                _client = stripe.StripeClient(
                    settings.stripe_api_key,
                    base_addresses={"api": settings.stripe_api_url},
                    # Retries belong to the Celery task, which keeps the same idempotency key.
                    max_network_retries=0,
                    http_client=PacedRequestsClient(timeout=settings.stripe_timeout_s, session=session),
                )

    return _client


def reset_client() -> None:
    """Forget the client (tests change STRIPE_API_BASE)."""
    global _client
    with _lock:
        _client = None
    stripe_pacing.reset()


def _should_retry(exc: stripe.StripeError) -> bool | None:
    """Stripe's `Stripe-Should-Retry` header: False on a 5xx it saved (a retry only replays it), True when it did
    not act (a lock timeout, a failure before executing); None when absent."""
    headers = exc.headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "stripe-should-retry"), None)
    return None if value is None else str(value).strip().lower() == "true"


def translate(exc: stripe.StripeError) -> Exception:
    """Stripe's failure as ours: transient ones are retried, the rest are answers."""
    status = exc.http_status or 0
    if isinstance(exc, stripe.CardError):
        err = exc.error
        details = {"declineCode": getattr(err, "decline_code", None), "stripeCode": exc.code}
        return OperationError("card_declined", exc.user_message or "The card was declined.", details)
    if isinstance(exc, stripe.RateLimitError):
        # Refused before executing: the same key is safe. Retried within the task's bounded budget with backoff;
        # once spent, the caller is told to come back later (429), never sent into more retries here.
        return TransientError("Stripe is rate-limiting this account", code="rate_limited")
    if isinstance(exc, stripe.APIConnectionError):
        # No answer: Stripe may or may not have the request; the same key is safe.
        return TransientError(f"Stripe unreachable ({type(exc).__name__})", code="stripe_error")
    if isinstance(exc, stripe.IdempotencyError):
        # Our derived key reached Stripe earlier with other parameters: what it did then is looked up, never assumed.
        return StripeMayHaveActed(
            "Stripe refused a conflicting idempotent request.", kind="idempotency_error", should_retry=False
        )
    if status == 409 and getattr(exc.error, "code", None) == "idempotency_key_in_use":
        # Stripe still runs a request with our key (another execution of this request): wait for it, never answer.
        return TransientError("Stripe is still processing a request with this key", code="idempotency_key_in_use")
    if status >= 500:
        # Stripe saves a 5xx under the key once it began executing: the outcome is unknown until looked up.
        return StripeMayHaveActed(f"Stripe answered {status}", kind="server_error", should_retry=_should_retry(exc))
    if status == 409:
        return TransientError(f"Stripe answered {status}", code="stripe_error")
    if isinstance(exc, stripe.InvalidRequestError) and status == 404:
        return OperationError("not_found", "Stripe has no such object.", {"param": exc.param})
    if isinstance(exc, stripe.InvalidRequestError):
        return OperationError(
            "validation_error",
            exc.user_message or "Stripe refused the request.",
            {"param": exc.param, "stripeCode": exc.code},
        )
    # 401/403: our key is wrong or lacks rights — the caller cannot fix it.
    return OperationError("stripe_error", "Stripe refused the service's credentials.", {"stripeStatus": status})


def _call(
    method: Any, *args: Any, params: dict[str, Any] | None = None, idempotency_key: str | None = None
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    acted_before = stripe_may_have_acted()
    if idempotency_key is not None:
        options["idempotency_key"] = idempotency_key
        # Only mutating calls carry a key: from here on a failure leaves the caller an unknown outcome.
        note_stripe_may_have_acted()
    call = getattr(method, "__qualname__", "stripe")
    db = database.obj
    # PooledDatabase is a mixin: the pooled database is also a peewee Database.
    if isinstance(db, PooledDatabase) and isinstance(db, Database) and not db.in_transaction():
        # A Stripe call takes hundreds of ms: the pooled connection serves other tasks meanwhile.
        db.close()
    try:
        result = method(*args, params=params or {}, options=options)
    except PaceExceeded:
        STRIPE_CALLS.labels(call, "paced_out").inc()
        if not acted_before:
            note_stripe_did_not_act()  # it waited for its turn and never left: as it was before this call
        raise
    except stripe.StripeError as exc:
        translated = translate(exc)
        STRIPE_CALLS.labels(call, getattr(translated, "code", "error")).inc()
        raise translated from exc
    STRIPE_CALLS.labels(call, "ok").inc()
    return result.to_dict()


def card_error_payment_intent(exc: BaseException) -> dict[str, Any] | None:
    """The PaymentIntent Stripe attaches to a decline on confirm, if any."""
    cause = exc.__cause__
    body = cause.json_body if isinstance(cause, stripe.CardError) else None
    error = body.get("error") if isinstance(body, dict) else None
    intent = error.get("payment_intent") if isinstance(error, dict) else None
    return intent if isinstance(intent, dict) else None


def create_customer(
    platform_customer_id: str, *, idempotency_key: str, contact: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Stripe Customer for our customer id; `contact`: Stripe's `email`, `name`, `address` when the platform
    named the person (its checkout)."""
    params = {**(contact or {}), "metadata": {"vy_customer_id": platform_customer_id}}
    return _call(client().v1.customers.create, params=params, idempotency_key=idempotency_key)


def list_customers_by_email(email: str) -> list[dict[str, Any]]:
    """Stripe's Customers with exactly this e-mail (Stripe compares it as given, case and all)."""
    return _list_all(client().v1.customers.list, {"email": email}, limit=100)


def set_default_payment_method(
    stripe_customer_id: str, stripe_payment_method_id: str, *, idempotency_key: str
) -> dict[str, Any]:
    params = {"invoice_settings": {"default_payment_method": stripe_payment_method_id}}
    return _call(client().v1.customers.update, stripe_customer_id, params=params, idempotency_key=idempotency_key)


def create_payment_intent(params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
    return _call(client().v1.payment_intents.create, params=params, idempotency_key=idempotency_key)


def retrieve_payment_intent(stripe_payment_intent_id: str) -> dict[str, Any]:
    return _call(client().v1.payment_intents.retrieve, stripe_payment_intent_id)


def confirm_payment_intent(
    stripe_payment_intent_id: str, params: dict[str, Any], *, idempotency_key: str
) -> dict[str, Any]:
    return _call(
        client().v1.payment_intents.confirm, stripe_payment_intent_id, params=params, idempotency_key=idempotency_key
    )


def capture_payment_intent(
    stripe_payment_intent_id: str, params: dict[str, Any], *, idempotency_key: str
) -> dict[str, Any]:
    return _call(
        client().v1.payment_intents.capture, stripe_payment_intent_id, params=params, idempotency_key=idempotency_key
    )


def cancel_payment_intent(
    stripe_payment_intent_id: str, params: dict[str, Any], *, idempotency_key: str
) -> dict[str, Any]:
    return _call(
        client().v1.payment_intents.cancel, stripe_payment_intent_id, params=params, idempotency_key=idempotency_key
    )


def retrieve_charge(stripe_charge_id: str) -> dict[str, Any]:
    return _call(client().v1.charges.retrieve, stripe_charge_id)


def create_refund(params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
    return _call(client().v1.refunds.create, params=params, idempotency_key=idempotency_key)


def retrieve_payment_method(stripe_payment_method_id: str) -> dict[str, Any]:
    return _call(client().v1.payment_methods.retrieve, stripe_payment_method_id)


def attach_payment_method(
    stripe_payment_method_id: str, stripe_customer_id: str, *, idempotency_key: str
) -> dict[str, Any]:
    params = {"customer": stripe_customer_id}
    return _call(
        client().v1.payment_methods.attach, stripe_payment_method_id, params=params, idempotency_key=idempotency_key
    )


def detach_payment_method(stripe_payment_method_id: str, *, idempotency_key: str) -> dict[str, Any]:
    return _call(client().v1.payment_methods.detach, stripe_payment_method_id, idempotency_key=idempotency_key)


def _list_all(method: Any, params: dict[str, Any], limit: int = 1000) -> list[dict[str, Any]]:
    """Every object of a Stripe list (bounded), following `has_more`/`starting_after`."""
    found: list[dict[str, Any]] = []
    params = {**params, "limit": 100}
    while len(found) < limit:
        page = _call(method, params=params)
        found.extend(page["data"])
        if not page.get("has_more") or not page["data"]:
            break
        params["starting_after"] = page["data"][-1]["id"]
    return found[:limit]


def list_payment_intents(
    stripe_customer_id: str, created_from: int | None = None, created_to: int | None = None
) -> list[dict[str, Any]]:
    """The customer's PaymentIntents, newest first, created within [created_from, created_to] when given."""
    params: dict[str, Any] = {"customer": stripe_customer_id}
    created = {k: v for k, v in (("gte", created_from), ("lte", created_to)) if v is not None}
    if created:
        params["created"] = created
    return _list_all(client().v1.payment_intents.list, params)


def find_payment_intent(
    stripe_customer_id: str, vy_payment_intent_id: str, created_from: int, created_to: int
) -> dict[str, Any] | None:
    """The PaymentIntent Stripe holds for our intent id (in its metadata), if any: resolves an unknown outcome."""
    for intent in list_payment_intents(stripe_customer_id, created_from, created_to):
        if (intent.get("metadata") or {}).get("vy_payment_intent_id") == vy_payment_intent_id:
            return intent
    return None


def list_refunds(stripe_payment_intent_id: str) -> list[dict[str, Any]]:
    return _list_all(client().v1.refunds.list, {"payment_intent": stripe_payment_intent_id})


def list_refunds_of_charge(stripe_charge_id: str) -> list[dict[str, Any]]:
    """A charge's refunds: since API version 2022-11-15 a Charge no longer carries them."""
    return _list_all(client().v1.refunds.list, {"charge": stripe_charge_id})


def find_refund(stripe_payment_intent_id: str, vy_refund_id: str) -> dict[str, Any] | None:
    """The refund Stripe holds for our refund id (in its metadata), if any."""
    for refund in list_refunds(stripe_payment_intent_id):
        if (refund.get("metadata") or {}).get("vy_refund_id") == vy_refund_id:
            return refund
    return None


def retrieve_refund(stripe_refund_id: str) -> dict[str, Any]:
    return _call(client().v1.refunds.retrieve, stripe_refund_id)


def list_events(created_after: int, limit: int = 10_000) -> list[dict[str, Any]]:
    """Stripe's events created after a time, oldest first (Stripe keeps them 30 days)."""
    events = _list_all(client().v1.events.list, {"created": {"gt": created_after}}, limit=limit)
    return sorted(events, key=lambda event: (event.get("created") or 0, event["id"]))
