"""A Stripe stand-in for the benchmark: answers the calls the service makes after a fixed latency, in constant time.

`python -m bench.fake_stripe --port 8431 --latency-ms 300 [--rate-limit N]`

localstripe cannot be the target of a load test: it slows down with every object it stores. This server keeps
only a dict of the PaymentIntents it made (for retrieve), so every call costs the same however long the run.
Object shapes follow Stripe's (and stand_ins/localstripe_server.py): `client_secret`, `amount_received`,
`amount_capturable`, `status`, `latest_charge`.

A rate limit (issue 27's bursts, bench/bursts.py): `--rate-limit N`, or `POST /_config/rate_limit {"perSecond": N}`
while it runs, refuses more than N calls a second per account (API key) as Stripe does, with Stripe's 429 and
`rate_limit` body, at once and before anything is made (the same answer as stand_ins/localstripe_server.py's). `GET
/_config/rate_limit` answers the limit, the calls it admitted and refused, the most admitted in one second, and the
PaymentIntents made per caller's intent (metadata `vy_payment_intent_id`) and per idempotency key; a POST also
starts every count afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import logging
import re
import socket
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web

from stand_ins.rate_limit import AccountRateLimit

# Calls per second it refuses above, per account: none (0), unlike Stripe (25/s test, 100/s live); the bench runs
# the service unpaced to match and says so in RESULTS.md. The burst phases (bench/bursts.py) set one while they run.
RATE_LIMIT_PER_S = 0
# Stripe's answer to a call over the account's limit (docs.stripe.com/error-codes: `rate_limit`); the SDK raises
# RateLimitError for any 429. As stand_ins/localstripe_server.py answers it.
RATE_LIMIT_MESSAGE = "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests."
MAX_KEPT_INTENTS = 200_000  # bounded memory however long the run; older intents are forgotten
MAX_KEPT_CUSTOMERS = 200_000  # …and customers (by e-mail, for the list and search calls)
_counter = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}_bench{next(_counter):012d}"


def _form(data: Any) -> dict[str, str]:
    return {key: str(value) for key, value in data.items()}


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _error(status: int, message: str, kind: str = "invalid_request_error", **extra: Any) -> web.Response:
    return _json({"error": {"type": kind, "message": message, **extra}}, status)


def _metadata(form: dict[str, str]) -> dict[str, str]:
    return {key[len("metadata[") : -1]: value for key, value in form.items() if key.startswith("metadata[")}


def _address(form: dict[str, str]) -> dict[str, str | None]:
    fields = ("city", "country", "line1", "line2", "postal_code", "state")
    return {name: form.get(f"address[{name}]") for name in fields}


def customer(customer_id: str, form: dict[str, str]) -> dict[str, Any]:
    """A Customer as Stripe answers it (fixtures3.json's `customer`), from the create call's form."""
    return {
        "id": customer_id,
        "object": "customer",
        "address": _address(form) if any(k.startswith("address[") for k in form) else None,
        "balance": 0,
        "created": int(time.time()),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": form.get("description"),
        "email": form.get("email"),
        "invoice_prefix": customer_id[-8:].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": _metadata(form),
        "name": form.get("name"),
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def search_email(query: str) -> str | None:
    """The e-mail of a Customer search query `email:'…'` (the form the platform's original service sends)."""
    match = re.fullmatch(r"\s*email\s*:\s*'((?:[^'\\]|\\.)*)'\s*", query)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else None


def payment_method(pm_id: str, customer: str | None) -> dict[str, Any]:
    """A card PaymentMethod; its fingerprint follows from its id so that the same id is the same card."""
    fingerprint = hashlib.sha256(pm_id.encode()).hexdigest()[:16]
    return {
        "id": pm_id,
        "object": "payment_method",
        "type": "card",
        "customer": customer,
        "created": int(time.time()),
        "livemode": False,
        "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034, "fingerprint": fingerprint},
        "billing_details": {},
        "metadata": {},
    }


class FakeStripe:
    """The routes of the calls stripe_client.py makes, and the platform's original service (bench/baselines/
    nestjs.py: Customers searched by e-mail), each answered after `latency_s`."""

    def __init__(self, latency_s: float, rate_limit: int = RATE_LIMIT_PER_S) -> None:
        self.latency_s = latency_s
        self.intents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.customers: OrderedDict[str, dict[str, Any]] = OrderedDict()  # by id
        self.by_email: dict[str, list[str]] = {}  # e-mail as given -> customer ids, oldest first
        self.calls = 0
        self.limit = AccountRateLimit(rate_limit)
        # The PaymentIntents made for each of the service's intents, and per idempotency key: Stripe makes one per
        # key (a repeat is a replay), so two keys for one of our intents is a second payment. Bounded like intents.
        self.creates_by_intent: OrderedDict[str, set[str]] = OrderedDict()
        self.creates_by_key: dict[str, int] = {}

    @web.middleware
    async def rate_limited(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Over the account's limit: Stripe's 429 at once, before anything is made (safe to repeat)."""
        if request.path.startswith("/v1/") and not self.limit.admit(request.headers.get("Authorization", "")):
            response = _error(429, RATE_LIMIT_MESSAGE, code="rate_limit")
            response.headers["Stripe-Should-Retry"] = "true"
            return response
        return await handler(request)

    async def _wait(self) -> None:
        self.calls += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.rate_limited])
        app.router.add_routes(
            [
                web.post("/v1/customers", self.create_customer),
                web.get("/v1/customers", self.list_customers),
                web.get("/v1/customers/search", self.search_customers),
                web.post("/v1/customers/{id}", self.update_customer),
                web.post("/v1/payment_intents", self.create_intent),
                web.get("/v1/payment_intents/{id}", self.retrieve_intent),
                web.get("/v1/payment_methods/{id}", self.retrieve_method),
                web.post("/v1/payment_methods/{id}/attach", self.attach_method),
                web.post("/v1/payment_methods/{id}/detach", self.detach_method),
                web.get("/_stats", self.stats),
                web.get("/_config/rate_limit", self.rate_limit_counts),
                web.post("/_config/rate_limit", self.set_rate_limit),
            ]
        )
        return app

    async def stats(self, request: web.Request) -> web.Response:
        return _json({"calls": self.calls, "intents": len(self.intents)})

    def counts(self) -> dict[str, Any]:
        keys_per_intent = [len(keys) for keys in self.creates_by_intent.values()]
        return {
            "perSecond": self.limit.per_second,
            "admitted": self.limit.admitted,
            "refused": self.limit.refused,
            "peakPerSecond": self.limit.peak_per_second,
            "intentsCreated": len(self.creates_by_intent),  # our intents Stripe made at least one PaymentIntent for
            "intentsCreatedTwice": sum(1 for n in keys_per_intent if n > 1),  # …under two keys or more
            "createCalls": sum(self.creates_by_key.values()),  # admitted creates, replays of a key included
            "createKeys": len(self.creates_by_key),
        }

    async def rate_limit_counts(self, request: web.Request) -> web.Response:
        return _json(self.counts())

    async def set_rate_limit(self, request: web.Request) -> web.Response:
        """{"perSecond": N}: the limit from now on (0: none); every count starts again."""
        body = await request.json()
        self.limit = AccountRateLimit(int(body.get("perSecond", 0)))
        self.creates_by_intent.clear()
        self.creates_by_key.clear()
        return _json(self.counts())

    def count_create(self, form: dict[str, str], headers: Any) -> None:
        key = headers.get("Idempotency-Key") or ""
        self.creates_by_key[key] = self.creates_by_key.get(key, 0) + 1
        ours = form.get("metadata[vy_payment_intent_id]")
        if ours:
            self.creates_by_intent.setdefault(ours, set()).add(key)
            if len(self.creates_by_intent) > MAX_KEPT_INTENTS:
                self.creates_by_intent.popitem(last=False)
        if len(self.creates_by_key) > MAX_KEPT_INTENTS:
            self.creates_by_key.pop(next(iter(self.creates_by_key)))

    async def create_customer(self, request: web.Request) -> web.Response:
        form = _form(await request.post())
        await self._wait()
        made = customer(_new_id("cus"), form)
        self.customers[made["id"]] = made
        if made["email"]:
            self.by_email.setdefault(made["email"], []).append(made["id"])
        if len(self.customers) > MAX_KEPT_CUSTOMERS:
            _, old = self.customers.popitem(last=False)
            kept = [i for i in self.by_email.get(old["email"], []) if i != old["id"]]
            if kept:
                self.by_email[old["email"]] = kept
            else:
                self.by_email.pop(old["email"], None)
        return _json(made)

    def _with_email(self, email: str | None, limit: str | None) -> list[dict[str, Any]]:
        """Newest first, as Stripe lists; e-mails compared exactly (Stripe's list is case-sensitive)."""
        ids = self.by_email.get(email or "", [])
        found = [self.customers[i] for i in reversed(ids) if i in self.customers]
        return found[: max(1, min(100, int(limit or 10)))]

    async def list_customers(self, request: web.Request) -> web.Response:
        await self._wait()
        found = self._with_email(request.query.get("email"), request.query.get("limit"))
        return _json({"object": "list", "data": found, "has_more": False, "url": "/v1/customers"})

    async def search_customers(self, request: web.Request) -> web.Response:
        await self._wait()
        email = search_email(request.query.get("query", ""))
        found = self._with_email(email, request.query.get("limit")) if email else []
        page = {"object": "search_result", "data": found, "has_more": False, "next_page": None}
        return _json({**page, "url": "/v1/customers/search"})

    async def update_customer(self, request: web.Request) -> web.Response:
        form = _form(await request.post())
        await self._wait()
        default = form.get("invoice_settings[default_payment_method]")
        settings = {"default_payment_method": default}
        return _json({"id": request.match_info["id"], "object": "customer", "invoice_settings": settings})

    async def create_intent(self, request: web.Request) -> web.Response:
        form = _form(await request.post())
        self.count_create(form, request.headers)
        await self._wait()
        try:
            amount = int(form["amount"])
        except (KeyError, ValueError):
            return _error(400, "Missing required param: amount.", param="amount")
        confirm = form.get("confirm") == "true"
        manual = form.get("capture_method") == "manual"
        method = form.get("payment_method")
        if confirm and method:
            status = "requires_capture" if manual else "succeeded"
        elif method:
            status = "requires_confirmation"
        else:
            status = "requires_payment_method"
        intent_id = _new_id("pi")
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": amount if status == "requires_capture" else 0,
            "amount_received": amount if status == "succeeded" else 0,
            "currency": form.get("currency", "usd"),
            "customer": form.get("customer"),
            "capture_method": "manual" if manual else "automatic",
            "client_secret": f"{intent_id}_secret_{hashlib.sha256(intent_id.encode()).hexdigest()[:24]}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "description": form.get("description"),
            "last_payment_error": None,
            "latest_charge": _new_id("ch") if status in ("succeeded", "requires_capture") else None,
            "livemode": False,
            "metadata": _metadata(form),
            "payment_method": method,
            "payment_method_types": ["card"],
            "status": status,
        }
        self.intents[intent_id] = intent
        if len(self.intents) > MAX_KEPT_INTENTS:
            self.intents.popitem(last=False)
        return _json(intent)

    async def retrieve_intent(self, request: web.Request) -> web.Response:
        await self._wait()
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return _error(404, "No such payment_intent", param="intent")
        return _json(intent)

    async def retrieve_method(self, request: web.Request) -> web.Response:
        await self._wait()
        return _json(payment_method(request.match_info["id"], None))

    async def attach_method(self, request: web.Request) -> web.Response:
        form = _form(await request.post())
        await self._wait()
        return _json(payment_method(request.match_info["id"], form.get("customer")))

    async def detach_method(self, request: web.Request) -> web.Response:
        await self._wait()
        return _json(payment_method(request.match_info["id"], None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--rate-limit", type=int, default=RATE_LIMIT_PER_S, help="calls/s per account; 0: none")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))  # loopback only: nothing off this machine
    web.run_app(
        FakeStripe(args.latency_ms / 1000, args.rate_limit).app(), sock=sock, access_log=None, print=None, backlog=2048
    )


if __name__ == "__main__":
    main()
