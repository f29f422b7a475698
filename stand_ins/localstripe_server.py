"""localstripe, made closer to Stripe where the service depends on it.

`python -m stand_ins.localstripe_server --port 8420 [--store PATH] [--no-idempotency] [--rate-limit N]`

localstripe (a stateful fake Stripe) differs from Stripe where this service reads it; `patch()` mends:
- PaymentIntent: `description`, `amount_received`, `amount_capturable`, `cancellation_reason` (null); `latest_charge` is
  the charge's id (expandable), no `charges` list; listing filters by `customer` and `created[gt|gte|lt|lte]`,
  newest first;
- Charge: `amount_captured`; no `refunds` list (gone since API version 2022-11-15, only expanded);
- Refund: `reason`, `payment_intent` also for a refund made by charge; more than the charge has left is refused
  (`amount_too_large`, `charge_already_refunded`); creating one sends `refund.created` and `charge.refunded`;
  events carry the stripe SDK's pinned `api_version`; lists are newest first;
- a decline on confirm answers `card_error` carrying the `payment_intent`, as Stripe does;
- its store is pickled to a fixed /tmp path after every write: here a path of ours, or nothing.
`Idempotency-Key` is honoured as Stripe documents it (stand_ins/stripe_idempotency.py); `--no-idempotency`
ignores keys like the original localstripe (`--idempotency` is accepted for old callers: it is the default).
For fault drills: `POST /_config/delay` holds matching answers after the work is done (the call reached Stripe,
the caller has no answer yet), `POST /_config/faults` makes Stripe act then answer 500 (`act_then_500`, saved
under the key) or answer 500 without acting (`500_without_acting`), and `GET /_config/requests` counts calls.
`--rate-limit N` refuses more than N calls a second per account (API key), as Stripe does (100 live, 25 test):
429 with Stripe's `rate_limit` body, before anything executes or is saved under a key; `GET /_config/rate_limit`
answers the limit, how many calls it admitted and refused and the most admitted in one second (DELETE: counted
afresh). Without it (the default) nothing is limited.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pickle
import re
import socket
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from typing import Any

import stripe
from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError

from stand_ins.rate_limit import AccountRateLimit
from stand_ins.stripe_idempotency import Answer, Execution, StripeIdempotency, endpoint_acted, stripe_error

_original_intent_init = resources.PaymentIntent.__init__
_original_refund_init = resources.Refund.__init__
_original_event_init = resources.Event.__init__
_export = resources.StripeObject._export
_list_all = resources.StripeObject._api_list_all.__func__
_original_refund_list = resources.Refund._api_list_all.__func__
_original_event_list = resources.Event._api_list_all.__func__


def _expands(expand: Any, field: str) -> bool:
    """Whether `expand` asks for `field` (or a path below it)."""
    return isinstance(expand, list) and any(p == field or str(p).startswith(field + ".") for p in expand)


def _newest_first(listed: Any) -> Any:
    # Stripe lists newest first; in one second, the later created first.
    listed._list = sorted(reversed(listed._list), key=lambda obj: obj.created, reverse=True)
    return listed


def _created_filter(created: Any) -> Callable[[int], bool]:
    """Stripe's `created` list filter: an exact time, or a dict of gt/gte/lt/lte."""
    if created is None:
        return lambda _: True
    checks = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    try:
        if isinstance(created, str):
            exact = int(created)
            return lambda value: value == exact
        if not isinstance(created, dict) or not created or not set(created) <= set(checks):
            raise ValueError(created)
        bounds = [(checks[op], int(bound)) for op, bound in created.items()]
    except (TypeError, ValueError):
        raise UserError(400, "Invalid created: give an integer or created[gt|gte|lt|lte]") from None
    return lambda value: all(check(value, bound) for check, bound in bounds)


# Fields of Stripe's PaymentIntent that localstripe does not know; kept as sent and answered back, as Stripe does.
INTENT_EXTRAS = ("receipt_email", "setup_future_usage", "shipping")
SETUP_FUTURE_USAGE = (None, "", "off_session", "on_session")


def _check_intent_extras(extras: dict[str, Any]) -> None:
    email = extras.get("receipt_email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        raise UserError(400, "Invalid receipt_email")
    if extras.get("setup_future_usage") not in SETUP_FUTURE_USAGE:
        raise UserError(400, "Invalid setup_future_usage: must be one of off_session, on_session")
    shipping = extras.get("shipping")
    if shipping is not None and (not isinstance(shipping, dict) or not isinstance(shipping.get("name"), str)):
        raise UserError(400, "Invalid shipping: needs name and address")


def _set_intent_extras(intent: Any, extras: dict[str, Any]) -> None:
    for name in INTENT_EXTRAS:
        if name in extras:
            setattr(intent, name, extras[name] or None)


def _intent_init(self: Any, description: str | None = None, **kwargs: Any) -> None:
    extras = {name: kwargs.pop(name) for name in INTENT_EXTRAS if name in kwargs}
    _check_intent_extras(extras)
    _original_intent_init(self, **kwargs)
    self.description = description
    for name in INTENT_EXTRAS:
        setattr(self, name, None)
    _set_intent_extras(self, extras)


def _amount_received(self: Any) -> int:
    charge = self.latest_charge
    if charge is None or charge.status != "succeeded" or not charge.captured:
        return 0
    return charge.amount_captured  # a partial capture receives only what it captured


def _amount_capturable(self: Any) -> int:
    return self.amount if self.status == "requires_capture" else 0


def _cancellation_reason(self: Any) -> str | None:
    return getattr(self, "_cancellation_reason", None) if self._canceled else None


def _canceled_at(self: Any) -> int | None:
    return getattr(self, "_canceled_at", None) if self._canceled else None


def _intent_export(self: Any, expand: Any = None) -> dict[str, Any]:
    exported = _export(self, expand=expand)
    exported.pop("charges", None)  # gone since API version 2022-11-15
    charge = exported.get("latest_charge")
    if isinstance(charge, dict) and not _expands(expand, "latest_charge"):
        exported["latest_charge"] = charge["id"]  # Stripe: an expandable id
    return exported


def _list_intents(
    cls: Any,
    /,
    url: str,
    customer: str | None = None,
    created: Any = None,
    limit: Any = None,
    starting_after: Any = None,
    **kwargs: Any,
) -> Any:
    """Stripe lists a customer's PaymentIntents (`?customer=`, `created[gte]=`…), newest first."""
    keep = _created_filter(created)
    listed = _list_all(cls, url, limit=limit, starting_after=starting_after, **kwargs)
    listed._list = [
        intent for intent in listed._list if (customer is None or intent.customer == customer) and keep(intent.created)
    ]
    return _newest_first(listed)


def _amount_captured(self: Any) -> int:
    if not self.captured or self.status != "succeeded":
        return 0
    return getattr(self, "_amount_captured", None) or self.amount


def _charge_capture(self: Any, amount: Any, on_success: Any = None) -> None:
    """Capture all or part of an authorisation. Stripe releases what is not captured: unlike localstripe, no
    Refund is made for it (a refund is money given back; the release never was money taken)."""
    amount = self.amount if amount is None else resources.try_convert_to_int(amount)
    if not isinstance(amount, int) or not 0 < amount <= self.amount:
        raise UserError(
            400,
            "amount_to_capture must be positive and at most the amount capturable.",
            {"code": "amount_too_large", "param": "amount_to_capture"},
        )
    if self.captured or self.status != "succeeded":
        raise UserError(400, "This charge cannot be captured.", {"code": "charge_already_captured"})

    def captured() -> None:
        self.captured = True
        self._amount_captured = amount
        if on_success:
            on_success()

    self._trigger_payment(on_success=captured)


AUTHORISATION_DAYS = 7  # Stripe cancels an uncaptured card authorisation after 7 days


def _payment_method_details(self: Any) -> dict[str, Any] | None:
    """Stripe's `payment_method_details` of a card charge, with `capture_before` (when its authorisation expires)."""
    try:
        method = resources.PaymentMethod._api_retrieve(self.payment_method)
    except UserError:
        return None
    card = getattr(method, "card", None) or {}
    deadline = getattr(self, "_capture_before", None) or self.created + AUTHORISATION_DAYS * 86400
    return {
        "type": method.type,
        "card": {
            "brand": card.get("brand"),
            "last4": card.get("last4"),
            "exp_month": card.get("exp_month"),
            "exp_year": card.get("exp_year"),
            "capture_before": deadline,
        },
    }


def _charge_export(self: Any, expand: Any = None) -> dict[str, Any]:
    exported = _export(self, expand=expand)
    if not _expands(expand, "refunds"):
        exported.pop("refunds", None)  # since API version 2022-11-15: only when expanded
    return exported


def _refund_init(self: Any, reason: str | None = None, **kwargs: Any) -> None:
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
        raise UserError(400, "Invalid reason")
    _refuse_more_than_unrefunded(kwargs.get("charge"), kwargs.get("payment_intent"), kwargs.get("amount"))
    _original_refund_init(self, **kwargs)
    self.reason = reason
    if self.payment_intent is None:  # refunded by charge: Stripe still names the charge's intent
        self.payment_intent = resources.Charge._api_retrieve(self.charge).payment_intent


def _refuse_more_than_unrefunded(charge_id: Any, intent_id: Any, amount: Any) -> None:
    """Stripe never refunds more than a charge took: a refund larger than what is left is refused (its Dashboard
    and the API alike), so two refunds racing on one charge cannot both go through."""
    try:
        if isinstance(intent_id, str):
            charge = resources.PaymentIntent._api_retrieve(intent_id).latest_charge
        else:
            charge = resources.Charge._api_retrieve(charge_id) if isinstance(charge_id, str) else None
    except UserError:
        return  # localstripe's own checks answer for an unknown object
    if charge is None or not charge.captured:
        return
    left = charge.amount_captured - charge.amount_refunded
    wanted = resources.try_convert_to_int(amount) if amount is not None else left
    if left <= 0:
        raise UserError(400, f"Charge {charge.id} has already been refunded.", {"code": "charge_already_refunded"})
    if isinstance(wanted, int) and wanted > left:
        raise UserError(
            400,
            f"Refund amount ({wanted}) is greater than unrefunded amount on charge ({left})",
            {"code": "amount_too_large", "param": "amount"},
        )


def _refund_create(cls: Any, /, **data: Any) -> Any:
    refund = cls(**data)
    # The events Stripe sends for a new refund today (charge.refunded without a refunds list).
    resources.schedule_webhook(resources.Event("refund.created", refund))
    resources.schedule_webhook(resources.Event("charge.refunded", resources.Charge._api_retrieve(refund.charge)))
    return refund


def _event_init(self: Any, type: str, data: Any) -> None:
    _original_event_init(self, type, data)
    self.api_version = stripe.api_version  # the version the service's SDK is pinned to, not localstripe's 2017


def _list_events(cls: Any, /, url: str, **kwargs: Any) -> Any:
    return _newest_first(_original_event_list(cls, url, **kwargs))


def _list_refunds(cls: Any, /, url: str, **kwargs: Any) -> Any:
    return _newest_first(_original_refund_list(cls, url, **kwargs))


CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")


def _unexpected_state(intent: Any, action: str) -> UserError:
    return UserError(
        400,
        f"You cannot {action} this PaymentIntent because it has a status of {intent.status}.",
        {"code": "payment_intent_unexpected_state", "payment_intent": intent._export()},
    )


def confirm_intent(id: str, payment_method: str | None = None, return_url: Any = None, **kwargs: Any) -> Any:
    """Stripe's confirm, with a new payment method too (localstripe answers that 500 "Not implemented")."""
    extras = {name: kwargs.pop(name) for name in INTENT_EXTRAS if name in kwargs}
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs))
    if return_url is not None and not (isinstance(return_url, str) and return_url.startswith(("https://", "http://"))):
        raise UserError(400, "Invalid return_url: an absolute URL")
    _check_intent_extras(extras)
    intent = resources.PaymentIntent._api_retrieve(id)
    if payment_method is not None:
        if intent.status not in ("requires_payment_method", "requires_confirmation"):
            raise _unexpected_state(intent, "confirm")
        resources.PaymentMethod._api_retrieve(payment_method)  # 404 if unknown
        intent.payment_method = payment_method
        if intent.latest_charge is not None and intent.latest_charge.status == "failed":
            intent.latest_charge = None  # a new attempt after a decline
        intent._authentication_failed = False
    if intent.status != "requires_confirmation":
        raise _unexpected_state(intent, "confirm")
    _set_intent_extras(intent, extras)
    intent._confirm(on_failure_now=intent._report_failure)
    return intent


def capture_intent(id: str, amount_to_capture: Any = None, **kwargs: Any) -> Any:
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs))
    intent = resources.PaymentIntent._api_retrieve(id)
    if intent.status != "requires_capture":
        raise _unexpected_state(intent, "capture")
    intent.latest_charge._capture(amount_to_capture, on_success=intent._on_success)
    return intent


def cancel_intent(id: str, cancellation_reason: str | None = None, **kwargs: Any) -> Any:
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs))
    if cancellation_reason is not None and cancellation_reason not in CANCELLATION_REASONS:
        raise UserError(400, "Invalid cancellation_reason", {"param": "cancellation_reason"})
    intent = resources.PaymentIntent._api_retrieve(id)
    if intent.status not in CANCELABLE:
        raise _unexpected_state(intent, "cancel")
    _cancel(intent, cancellation_reason)
    return intent


def _cancel(intent: Any, reason: str | None) -> None:
    intent._canceled = True
    intent.next_action = None
    intent._cancellation_reason = reason
    intent._canceled_at = int(time.time())
    resources.schedule_webhook(resources.Event("payment_intent.canceled", intent))


def expire_authorisation(id: str) -> Any:
    """What Stripe does when an uncaptured authorisation reaches its capture_before: it cancels the intent
    (cancellation_reason `automatic`) and releases the hold."""
    intent = resources.PaymentIntent._api_retrieve(id)
    if intent.status != "requires_capture":
        raise _unexpected_state(intent, "expire")
    intent.latest_charge._capture_before = int(time.time()) - 1
    _cancel(intent, "automatic")
    return intent


INTENT_ACTIONS: dict[str, Callable[..., Any]] = {
    "confirm": confirm_intent,
    "capture": capture_intent,
    "cancel": cancel_intent,
}
_INTENT_ACTION = re.compile(r"^/v1/payment_intents/(?P<id>pi_[A-Za-z0-9]+)/(?P<action>confirm|capture|cancel)$")


def _override(request: web.Request) -> Callable[[], Any] | None:
    """The stand-in's own handler for the intent actions localstripe lacks or gets wrong (its routes are bound at
    import, so they are answered here instead)."""
    match = _INTENT_ACTION.match(request.path) if request.method == "POST" else None
    if match is None:
        return None

    async def handle() -> web.StreamResponse:
        data = dict(await server.get_post_data(request) or {})
        expand = data.pop("expand", None)
        try:
            intent = INTENT_ACTIONS[match["action"]](match["id"], **data)
            return server.json_response(intent._export(expand=expand))
        except UserError as refused:
            return refused.to_response()
        finally:
            resources.store.dump_to_disk()

    return handle


class CardError(UserError):
    def __init__(self, message: str, contents: dict[str, Any]) -> None:
        super().__init__(402, message, contents)
        self.body["error"]["type"] = "card_error"


def _report_failure(self: Any) -> None:
    resources.schedule_webhook(resources.Event("payment_intent.payment_failed", self))
    charge = self.latest_charge
    raise CardError(
        charge.failure_message,
        {
            "code": charge.failure_code,
            "decline_code": "generic_decline",
            "charge": charge.id,
            "payment_intent": self._export(),
        },
    )


def patch() -> None:
    """Make localstripe answer as Stripe does where the service reads it (idempotent: patches once)."""
    if getattr(resources, "_vy_patched", False):
        return
    resources._vy_patched = True
    intent = resources.PaymentIntent
    intent.__init__ = _intent_init
    intent.amount_received = property(_amount_received)
    intent.amount_capturable = property(_amount_capturable)
    intent.cancellation_reason = property(_cancellation_reason)
    intent.canceled_at = property(_canceled_at)
    intent._export = _intent_export
    intent._report_failure = _report_failure
    intent._api_list_all = classmethod(_list_intents)

    charge = resources.Charge
    charge.amount_captured = property(_amount_captured)
    charge._capture = _charge_capture
    charge._export = _charge_export
    charge.payment_method_details = property(_payment_method_details)

    refund = resources.Refund
    refund.__init__ = _refund_init
    refund._api_create = classmethod(_refund_create)
    refund._api_list_all = classmethod(_list_refunds)

    event = resources.Event
    event.__init__ = _event_init
    event._api_list_all = classmethod(_list_events)


def use_store(path: str | None) -> None:
    """Persist to `path` (the zero-setup run keeps its data), or not at all (tests)."""

    def dump(self: Any) -> None:
        if path:
            with open(path, "wb") as handle:
                pickle.dump(dict(self), handle, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump
    if path:
        try:
            with open(path, "rb") as handle:
                resources.store.update(pickle.load(handle))  # noqa: S301 (our own store file)
        except FileNotFoundError:
            pass


ACT_THEN_500 = "act_then_500"
WITHOUT_ACTING = "500_without_acting"

_idempotency = StripeIdempotency()
_delays: list[dict[str, Any]] = []
_faults: list[dict[str, Any]] = []
_requests: Counter[str] = Counter()


_rate_limit = AccountRateLimit()


def rate_limited() -> Answer:
    """Stripe's answer to a call over the account's rate limit: refused before executing, so safe to repeat."""
    answer = stripe_error(
        429,
        "invalid_request_error",
        "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        code="rate_limit",
    )
    return Answer(429, answer.body, {"Content-Type": "application/json", "Stripe-Should-Retry": "true"})


def _matches(rule: dict[str, Any], method: str, path: str) -> bool:
    """Method and path prefix match; a rule with a `count` is used up after that many requests."""
    if method != rule.get("method", method) or not path.startswith(rule["path_prefix"]):
        return False
    return rule.get("count") is None or rule["count"] > 0


def _use(rule: dict[str, Any]) -> None:
    if rule.get("count") is not None:
        rule["count"] -= 1


def _delay_for(request: web.Request) -> float:
    for rule in _delays:
        if _matches(rule, request.method, request.path):
            _use(rule)
            return float(rule["seconds"])
    return 0.0


def _fault_for(method: str, path: str, body: bytes) -> str | None:
    form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    for rule in _faults:
        if _matches(rule, method, path) and all(form.get(k) == v for k, v in rule["form"].items()):
            _use(rule)
            return rule["kind"]
    return None


def _api_error(what: str) -> Answer:
    return stripe_error(500, "api_error", f"An unknown error occurred ({what}, injected by the stand-in).")


def _response(answer: Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers=answer.headers)


def _answer_of(response: web.StreamResponse) -> Answer:
    body = getattr(response, "body", b"")
    return Answer(
        response.status,
        bytes(body) if isinstance(body, bytes | bytearray) else b"",
        {"Content-Type": response.headers.get("Content-Type", "application/json")},
    )


def stripe_like_middleware(idempotency: StripeIdempotency | None) -> Any:
    """Stripe's idempotency (None: keys ignored), faults and delays on cue, request counts."""
    keys = idempotency or StripeIdempotency()  # ignoring keys: it is never given one, so nothing is saved

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_config/"):
            return await handler(request)
        if not _rate_limit.admit(request.headers.get("Authorization", "")):
            return _response(rate_limited())  # before the key: Stripe saves nothing for a 429
        _requests[f"{request.method} {request.path}"] += 1
        body = await request.read()
        started = keys.begin(
            request.method,
            request.path,
            body,
            authorization=request.headers.get("Authorization", ""),
            key=request.headers.get("Idempotency-Key") if idempotency else None,
        )
        if isinstance(started, Answer):
            return _response(started)  # a replay, or refused for its key: nothing executes
        fault = _fault_for(request.method, request.path, body)
        if fault == WITHOUT_ACTING:
            return _response(keys.finish(started, _api_error("not acted"), acted=False))
        response = await _execute(keys, started, request, handler)
        delay = _delay_for(request)
        if delay:
            await asyncio.sleep(delay)  # the work is done at "Stripe"; the caller waits for its answer
        if fault == ACT_THEN_500 and endpoint_acted(response.status):  # a refusal did not act: it stands
            return _response(keys.finish(started, _api_error("acted")))
        if started.scope is None and response.status < 500:
            return response  # nothing to save or to say: localstripe's own answer
        return _response(keys.finish(started, _answer_of(response)))

    return middleware


async def _execute(
    keys: StripeIdempotency, started: Execution, request: web.Request, handler: Any
) -> web.StreamResponse:
    """Run localstripe's endpoint; a crash inside it is Stripe's 500 after it began executing."""
    try:
        override = _override(request)
        return await (override() if override else handler(request))
    except web.HTTPException:
        keys.abandon(started)  # refused by routing (404, 405): no endpoint ran
        raise
    except Exception:
        logging.getLogger(__name__).exception("localstripe failed on %s %s", request.method, request.path)
        return web.json_response({"error": {"type": "api_error", "message": "localstripe failed"}}, status=500)
    except BaseException:
        keys.abandon(started)  # cancelled: the client left before an answer; Stripe would not hold the key
        raise


async def _config_delay(request: web.Request) -> web.Response:
    if request.method == "DELETE":
        _delays.clear()
        return web.json_response({"delays": []})
    rule = await request.json()
    _delays.insert(
        0,
        {
            "path_prefix": rule.get("path_prefix", "/"),
            "seconds": float(rule["seconds"]),
            **({"method": rule["method"]} if "method" in rule else {}),
            **({"count": int(rule["count"])} if "count" in rule else {}),
        },
    )
    return web.json_response({"delays": _delays})


async def _config_faults(request: web.Request) -> web.Response:
    """POST {"kind", "method"?, "path_prefix"?, "count"?, "form"?} adds a fault (newest first); DELETE clears."""
    if request.method == "DELETE":
        _faults.clear()
    elif request.method == "POST":
        rule = await request.json()
        form = rule.get("form") or {}
        if rule.get("kind") not in (ACT_THEN_500, WITHOUT_ACTING) or not isinstance(form, dict):
            return web.json_response(
                {"error": f"kind must be {ACT_THEN_500} or {WITHOUT_ACTING}; form a dict"}, status=400
            )
        _faults.insert(
            0,
            {
                "kind": rule["kind"],
                "path_prefix": rule.get("path_prefix", "/"),
                "form": {str(k): str(v) for k, v in form.items()},
                **({"method": rule["method"]} if "method" in rule else {}),
                "count": None if rule.get("count") is None else int(rule["count"]),
            },
        )
    return web.json_response({"faults": _faults})


async def _config_expire(request: web.Request) -> web.Response:
    """POST /_config/expire_authorization/{id}: the authorisation reaches its capture_before now."""
    try:
        return server.json_response(expire_authorisation(request.match_info["id"])._export())
    except UserError as refused:
        return refused.to_response()


async def _config_requests(request: web.Request) -> web.Response:
    return web.json_response(dict(_requests))


async def _config_rate_limit(request: web.Request) -> web.Response:
    """GET: the limit and what it admitted and refused; DELETE: the counts start again (the limit stays)."""
    if request.method == "DELETE":
        _rate_limit.admitted = _rate_limit.refused = _rate_limit.peak_per_second = 0
    return web.json_response(_rate_limit.counts())


# Where Stripe takes a publishable key (`key=pk_…` in the form) instead of a secret one: localstripe's own list,
# plus POST /v1/payment_methods, which Stripe.js calls from the browser to vault a card.
PUBLISHABLE_KEY_PATHS = (
    r"^/v1/tokens$",
    r"^/v1/sources$",
    r"^/v1/payment_methods$",
    r"^/v1/payment_intents/\w+/_authenticate\b",
    r"^/v1/setup_intents/\w+/confirm$",
    r"^/v1/setup_intents/\w+/cancel$",
)


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """localstripe's authentication, with Stripe.js's card vaulting open to a publishable key (the demo page)."""
    if request.path.startswith(("/js.stripe.com/", "/_config/")) or server.get_api_key(request) is not None:
        return await handler(request)
    if request.method == "POST" and any(re.match(pattern, request.path) for pattern in PUBLISHABLE_KEY_PATHS):
        data = await server.get_post_data(request, remove_auth=False)
        key = data.get("key") if isinstance(data, dict) else None
        if isinstance(key, str) and key.startswith("pk_"):
            return await handler(request)
    raise UserError(401, "Unauthorized")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--store", default=None, help="file to keep Stripe's state in; none: memory only")
    parser.add_argument("--idempotency", action="store_true", help="accepted for old callers: the default")
    parser.add_argument("--no-idempotency", action="store_true", help="ignore Idempotency-Key, as localstripe does")
    parser.add_argument("--rate-limit", type=int, default=0, help="calls per second per account, as Stripe; 0: none")
    args = parser.parse_args()
    _rate_limit.per_second = args.rate_limit
    patch()
    use_store(args.store)
    server.app.middlewares[server.app.middlewares.index(server.auth_middleware)] = auth_middleware
    server.app.middlewares.insert(0, stripe_like_middleware(None if args.no_idempotency else _idempotency))
    server.app.router.add_route("POST", "/_config/delay", _config_delay)
    server.app.router.add_route("DELETE", "/_config/delay", _config_delay)
    for method in ("GET", "POST", "DELETE"):
        server.app.router.add_route(method, "/_config/faults", _config_faults)
    server.app.router.add_get("/_config/requests", _config_requests)
    for method in ("GET", "DELETE"):
        server.app.router.add_route(method, "/_config/rate_limit", _config_rate_limit)
    server.app.router.add_route("POST", "/_config/expire_authorization/{id}", _config_expire)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
