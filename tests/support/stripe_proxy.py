"""A Stripe stand-in in front of localstripe: Stripe's idempotency, and faults on cue.

Every request is forwarded to localstripe unless a rule says otherwise. Like api.stripe.com (and unlike
localstripe) a POST with an `Idempotency-Key` that was already answered is replayed, another body under the
same key is an `idempotency_error`, and a key still executing is a 409. Faults (`Fault`) are taken in order by
the requests a rule matches — before or after the request reached Stripe — so a drill can play the outage it
needs: a timeout once the request was sent, a connection reset, a 409/429/500, a decline, an idempotency error.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import requests


@dataclass(frozen=True)
class Fault:
    """What to do with one request: `kind` is one of
    status (answer `status` with `body` without forwarding), reset_before (close with RST, nothing forwarded),
    reset_after (forward, then RST: Stripe did it, the caller cannot know), timeout_after (forward, then hold
    the answer `hold_s` and close), delay (hold `hold_s`, then forward and answer), slow (Stripe has the request —
    a second one with its key meanwhile is a 409 — and takes `hold_s` to act on it)."""

    kind: str
    status: int = 0
    body: dict | None = None
    hold_s: float = 0.0

    @staticmethod
    def error(status: int, error_type: str, **extra: str) -> Fault:
        return Fault("status", status, {"error": {"type": error_type, "message": "injected by the drill", **extra}})


TIMEOUT_AFTER_SENT = "timeout_after"
RESET_BEFORE = "reset_before"
RESET_AFTER = "reset_after"


@dataclass
class Rule:
    """Faults for the requests that `matches` accepts, taken one per request, then pass-through."""

    matches: Callable[[str, str, dict[str, list[str]]], bool]
    faults: list[Fault]
    taken: int = 0


@dataclass
class Seen:
    method: str
    path: str
    idempotency_key: str | None
    form: dict[str, list[str]]
    fault: str
    status: int | None
    replayed: bool = False
    at: float = field(default_factory=time.monotonic)


class StripeProxy:
    """The proxy's state: rules, the idempotency cache, and every request seen."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.delay_s: dict[str, float] = {}  # path prefix -> delay before forwarding (every request)
        self._lock = threading.Lock()
        self._idempotent: dict[str, tuple[str, int | None, bytes]] = {}  # key -> (request fingerprint, status, body)
        self._session = threading.local()
        self.url = ""

    def add_rule(self, matches: Callable[[str, str, dict[str, list[str]]], bool], faults: list[Fault]) -> Rule:
        rule = Rule(matches, list(faults))
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.delay_s.clear()

    def requests_for(self, predicate: Callable[[Seen], bool]) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if predicate(s)]

    def _next_fault(self, method: str, path: str, form: dict[str, list[str]]) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, form):
                    if rule.taken < len(rule.faults):
                        rule.taken += 1
                        return rule.faults[rule.taken - 1]
                    return None
        return None

    def _http(self) -> requests.Session:
        if not hasattr(self._session, "value"):
            self._session.value = requests.Session()
        return self._session.value

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes, hold_s: float = 0.0
    ) -> tuple[int, bytes, bool]:
        """Forward with Stripe's idempotency; returns (status, body, replayed)."""
        key = headers.get("Idempotency-Key") if method == "POST" else None
        fingerprint = f"{method} {path} {body!r}"
        if key:
            with self._lock:
                known = self._idempotent.get(key)
                if known is None:
                    self._idempotent[key] = (fingerprint, None, b"")  # executing
            if known is not None:
                if known[0] != fingerprint:
                    return (
                        400,
                        _error(
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters.",
                        ),
                        False,
                    )
                if known[1] is None:
                    return (
                        409,
                        _error(
                            "invalid_request_error",
                            "Another request with this key is in progress.",
                            code="idempotency_key_in_use",
                        ),
                        False,
                    )
                return known[1], known[2], True
        for prefix, delay in list(self.delay_s.items()):
            if path.startswith(prefix):
                time.sleep(delay)
        time.sleep(hold_s)
        forward_headers = {
            k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "stripe-version")
        }
        try:
            answer = self._http().request(method, self.upstream + path, data=body, headers=forward_headers, timeout=60)
            status, content = answer.status_code, answer.content
        except requests.RequestException:
            status, content = 502, _error("api_error", "localstripe unreachable")
        if key:
            with self._lock:
                if status < 500 and status not in (409, 429):
                    self._idempotent[key] = (fingerprint, status, content)  # Stripe saves what began executing
                else:
                    self._idempotent.pop(key, None)
        return status, content, False


def _error(error_type: str, message: str, **extra: str) -> bytes:
    return json.dumps({"error": {"type": error_type, "message": message, **extra}}).encode()


def _reset(connection: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
    except OSError:
        pass


@contextmanager
def stripe_proxy(upstream: str) -> Iterator[StripeProxy]:
    """Run a StripeProxy on a free 127.0.0.1 port; `proxy.url` is its base URL."""
    proxy = StripeProxy(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            method, path = self.command, self.path
            form = parse_qs(body.decode("utf-8", "replace")) if method == "POST" else {}
            headers = {k: v for k, v in self.headers.items()}
            fault = proxy._next_fault(method, path, form)
            seen = Seen(method, path, headers.get("Idempotency-Key"), form, fault.kind if fault else "pass", None)
            with proxy._lock:
                proxy.seen.append(seen)
            if fault is not None and fault.kind == "status":
                self._send(fault.status, json.dumps(fault.body).encode())
                seen.status = fault.status
                return
            if fault is not None and fault.kind == RESET_BEFORE:
                self.close_connection = True
                _reset(self.connection)
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.hold_s)
            hold_s = fault.hold_s if fault is not None and fault.kind == "slow" else 0.0
            status, content, replayed = proxy.forward(method, path, headers, body, hold_s)
            seen.status, seen.replayed = status, replayed
            if fault is not None and fault.kind == RESET_AFTER:
                self.close_connection = True
                _reset(self.connection)
                return
            if fault is not None and fault.kind == TIMEOUT_AFTER_SENT:
                time.sleep(fault.hold_s)
                self.close_connection = True
                _reset(self.connection)
                return
            self._send(status, content, replayed)

        def _send(self, status: int, content: bytes, replayed: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            if replayed:
                self.send_header("Idempotent-Replayed", "true")
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="stripe-proxy", daemon=True)
    thread.start()
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
