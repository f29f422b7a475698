"""localstripe, made closer to Stripe where the service depends on it.

`python -m stand_ins.localstripe_server --port 8420 [--store PATH]`

localstripe (a stateful fake Stripe) lacks a few things real Stripe has and this service uses:
- PaymentIntent: `description`, `amount_received`, `amount_capturable`;
- Refund: `reason`;
- a decline on confirm answers `card_error` carrying the `payment_intent`, as Stripe does;
- its store is pickled to a fixed /tmp path after every write: here a path of ours, or nothing.
It ignores `Idempotency-Key`, like the original, unless started with `--idempotency` (then it keeps
Stripe's semantics: replay, 400 `idempotency_error` on other parameters, 409 while the first runs).
For fault drills, `POST /_config/delay` holds matching answers after the work is done (the call
reached Stripe, the caller has no answer yet) and `GET /_config/requests` counts calls.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import pickle
import socket
import urllib.parse
from collections import Counter
from typing import Any

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError

_original_intent_init = resources.PaymentIntent.__init__
_original_refund_init = resources.Refund.__init__


def _intent_init(self: Any, description: str | None = None, **kwargs: Any) -> None:
    _original_intent_init(self, **kwargs)
    self.description = description


def _amount_received(self: Any) -> int:
    charge = self.latest_charge
    if charge is None or charge.status != "succeeded" or not charge.captured:
        return 0
    return charge.amount


def _amount_capturable(self: Any) -> int:
    return self.amount if self.status == "requires_capture" else 0


def _refund_init(self: Any, reason: str | None = None, **kwargs: Any) -> None:
    if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
        raise UserError(400, "Invalid reason")
    _original_refund_init(self, **kwargs)
    self.reason = reason


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


def _list_intents(
    cls: Any, url: str, customer: str | None = None, limit: Any = None, starting_after: Any = None, **kwargs: Any
) -> Any:
    """Stripe lists a customer's PaymentIntents (`?customer=`); localstripe only lists them all."""
    listed = resources.StripeObject._api_list_all.__func__(
        cls, url, limit=limit, starting_after=starting_after, **kwargs
    )
    if customer is not None:
        listed._list = [intent for intent in listed._list if intent.customer == customer]
    return listed


def patch() -> None:
    resources.PaymentIntent.__init__ = _intent_init
    resources.PaymentIntent.amount_received = property(_amount_received)
    resources.PaymentIntent.amount_capturable = property(_amount_capturable)
    resources.PaymentIntent._report_failure = _report_failure
    resources.PaymentIntent._api_list_all = classmethod(_list_intents)

    resources.Refund.__init__ = _refund_init


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


_idempotent: dict[tuple[str, str], tuple[str, int, bytes] | None] = {}
_delays: list[dict[str, Any]] = []
_requests: Counter[str] = Counter()


def _error(status: int, error: dict[str, Any]) -> web.Response:
    return web.json_response({"error": error}, status=status)


def _delay_for(request: web.Request) -> float:
    for rule in _delays:
        if request.method == rule.get("method", request.method) and request.path.startswith(rule["path_prefix"]):
            if rule.get("count") is not None:
                if rule["count"] <= 0:
                    continue
                rule["count"] -= 1
            return float(rule["seconds"])
    return 0.0


def stripe_like_middleware(honour_idempotency: bool) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_config/"):
            return await handler(request)
        _requests[f"{request.method} {request.path}"] += 1
        key = request.headers.get("Idempotency-Key") if request.method == "POST" and honour_idempotency else None
        if key is None:
            response = await handler(request)
        else:
            scope = (request.headers.get("Authorization", ""), key)
            # Stripe compares parameters, not bytes: the same parameters in another order are the same request.
            params = sorted(urllib.parse.parse_qsl((await request.read()).decode(), keep_blank_values=True))
            digest = hashlib.sha256(json.dumps([request.path, params]).encode()).hexdigest()

            if scope in _idempotent:
                stored = _idempotent[scope]
                if stored is None:
                    return _error(
                        409,
                        {
                            "type": "invalid_request_error",
                            "code": "idempotency_key_in_use",
                            "message": "A request with this key is still being processed.",
                        },
                    )
                if stored[0] != digest:
                    return _error(
                        400,
                        {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests "
                            "can only be used with the same parameters they were first used with.",
                        },
                    )
                return web.Response(
                    status=stored[1],
                    body=stored[2],
                    content_type="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
            _idempotent[scope] = None
            try:
                response = await handler(request)
            except BaseException:
                del _idempotent[scope]
                raise
            _idempotent[scope] = (digest, response.status, response.body)
        delay = _delay_for(request)
        if delay:
            await asyncio.sleep(delay)  # the work is done at "Stripe"; the caller waits for its answer
        return response

    return middleware


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


async def _config_requests(request: web.Request) -> web.Response:
    return web.json_response(dict(_requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--store", default=None, help="file to keep Stripe's state in; none: memory only")
    parser.add_argument("--idempotency", action="store_true", help="honour Idempotency-Key as Stripe does")
    args = parser.parse_args()
    patch()
    use_store(args.store)
    server.app.middlewares.insert(0, stripe_like_middleware(args.idempotency))
    server.app.router.add_route("POST", "/_config/delay", _config_delay)
    server.app.router.add_route("DELETE", "/_config/delay", _config_delay)
    server.app.router.add_get("/_config/requests", _config_requests)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
