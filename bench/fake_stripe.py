"""A Stripe stand-in for the benchmark: answers the calls the service makes after a fixed latency, in constant time.

`python -m bench.fake_stripe --port 8431 --latency-ms 300`

localstripe cannot be the target of a load test: it slows down with every object it stores. This server keeps
only a dict of the PaymentIntents it made (for retrieve), so every call costs the same however long the run.
Object shapes follow Stripe's (and stand_ins/localstripe_server.py): `client_secret`, `amount_received`,
`amount_capturable`, `status`, `latest_charge`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import logging
import socket
import time
from collections import OrderedDict
from typing import Any

from aiohttp import web

# Calls per second it refuses above, per account: none (0), unlike Stripe (25/s test, 100/s live); the bench runs
# the service unpaced to match and says so in RESULTS.md.
RATE_LIMIT_PER_S = 0
MAX_KEPT_INTENTS = 200_000  # bounded memory however long the run; older intents are forgotten
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
    """The routes of the calls stripe_client.py makes, each answered after `latency_s`."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.intents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.calls = 0

    async def _wait(self) -> None:
        self.calls += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/customers", self.create_customer)
        app.router.add_post("/v1/customers/{id}", self.update_customer)
        app.router.add_post("/v1/payment_intents", self.create_intent)
        app.router.add_get("/v1/payment_intents/{id}", self.retrieve_intent)
        app.router.add_get("/v1/payment_methods/{id}", self.retrieve_method)
        app.router.add_post("/v1/payment_methods/{id}/attach", self.attach_method)
        app.router.add_post("/v1/payment_methods/{id}/detach", self.detach_method)
        app.router.add_get("/_stats", self.stats)
        return app

    async def stats(self, request: web.Request) -> web.Response:
        return _json({"calls": self.calls, "intents": len(self.intents)})

    async def create_customer(self, request: web.Request) -> web.Response:
        form = _form(await request.post())
        await self._wait()
        return _json({"id": _new_id("cus"), "object": "customer", "metadata": _metadata(form), "invoice_settings": {}})

    async def update_customer(self, request: web.Request) -> web.Response:
        form = _form(await request.post())
        await self._wait()
        default = form.get("invoice_settings[default_payment_method]")
        settings = {"default_payment_method": default}
        return _json({"id": request.match_info["id"], "object": "customer", "invoice_settings": settings})

    async def create_intent(self, request: web.Request) -> web.Response:
        form = _form(await request.post())
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))  # loopback only: nothing off this machine
    web.run_app(FakeStripe(args.latency_ms / 1000).app(), sock=sock, access_log=None, print=None, backlog=2048)


if __name__ == "__main__":
    main()
