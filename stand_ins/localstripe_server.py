"""localstripe, made closer to Stripe where the service depends on it.

`python -m stand_ins.localstripe_server --port 8420 [--store PATH]`

localstripe (a stateful fake Stripe) lacks a few things real Stripe has and this service uses:
- PaymentIntent: `description`, `amount_received`, `amount_capturable`;
- Refund: `reason`;
- a decline on confirm answers `card_error` carrying the `payment_intent`, as Stripe does;
- its store is pickled to a fixed /tmp path after every write: here a path of ours, or nothing.
It still ignores `Idempotency-Key`, like the original: the service's own idempotency is what tests see.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import socket
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


def patch() -> None:
    resources.PaymentIntent.__init__ = _intent_init
    resources.PaymentIntent.amount_received = property(_amount_received)
    resources.PaymentIntent.amount_capturable = property(_amount_capturable)
    resources.PaymentIntent._report_failure = _report_failure
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--store", default=None, help="file to keep Stripe's state in; none: memory only")
    args = parser.parse_args()
    patch()
    use_store(args.store)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
