"""A Stripe stand-in in front of localstripe: Stripe's idempotency, and faults on cue.

Every request is forwarded to localstripe unless a rule says otherwise. Stripe's idempotency is kept by
stand_ins/stripe_idempotency.py (the one emulation in the tree): a POST with an answered `Idempotency-Key` is
replayed (5xx included), other parameters under the key are an `idempotency_error`, and a key still executing
is a 409. Faults (`Fault`) are taken in order by the requests a rule matches — before or after the request
reached Stripe — so a drill can play the outage it needs: a timeout once the request was sent, a connection
reset, a 409/429/500 without acting, a 500 after acting (saved under the key), a decline, an idempotency error.
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
from urllib.parse import parse_qs

import requests
from requests.structures import CaseInsensitiveDict

from stand_ins.stripe_idempotency import SHOULD_RETRY, Answer, StripeIdempotency, endpoint_acted, stripe_error
from tests.support.local_http import QuietHandler, serving


@dataclass(frozen=True)
class Fault:
    """What to do with one request: `kind` is one of
    status (answer `status` with `body` without forwarding; a 5xx says `Stripe-Should-Retry: true`, nothing saved),
    reset_before (close with RST, nothing forwarded), reset_after (forward, then RST: Stripe did it, the caller
    cannot know), timeout_after (forward, then hold the answer `hold_s` and close), delay (hold `hold_s`, then
    forward and answer), slow (Stripe has the request — a second one with its key meanwhile is a 409 — and takes
    `hold_s` to act on it), act_then_500 (forward, discard the answer, answer a 500 with `Stripe-Should-Retry:
    false`, saved under the key and replayed to every retry with it), fail_while_executing (the same 500, saved,
    but nothing forwarded: Stripe failed before making anything)."""

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
ACT_THEN_500 = "act_then_500"
# Stripe began executing and failed before making anything: a 500 saying `Stripe-Should-Retry: false`, saved under
# the key (every retry with it gets the same 500), while a look-up finds nothing.
FAIL_WHILE_EXECUTING = "fail_while_executing"


@dataclass
class Rule:
    """Faults for the requests that `matches` accepts, taken one per request, then pass-through."""

    matches: Callable[[str, str, dict[str, list[str]]], bool]
    faults: list[Fault]
    taken: int = 0


@dataclass
class Seen:
    """One request the proxy took: `body` is its raw bytes, `headers` those of the answer it sent (if any)."""

    method: str
    path: str
    idempotency_key: str | None
    form: dict[str, list[str]]
    fault: str
    status: int | None
    replayed: bool = False
    at: float = field(default_factory=time.monotonic)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class StripeProxy:
    """The proxy's state: rules, Stripe's idempotency, and every request seen."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.delay_s: dict[str, float] = {}  # path prefix -> delay before forwarding (every request)
        self.idempotency = StripeIdempotency()
        self._lock = threading.Lock()
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
        self,
        method: str,
        path: str,
        headers: CaseInsensitiveDict[str],
        body: bytes,
        hold_s: float = 0.0,
        act_then_500: bool = False,
    ) -> Answer:
        """Forward with Stripe's idempotency; a replay's answer carries `Idempotent-Replayed: true`."""
        started = self.idempotency.begin(
            method, path, body, authorization=headers.get("Authorization", ""), key=headers.get("Idempotency-Key")
        )
        if isinstance(started, Answer):
            return started  # a replay, an idempotency_error, or a key in use: localstripe never sees it
        try:
            for prefix, delay in list(self.delay_s.items()):
                if path.startswith(prefix):
                    time.sleep(delay)
            time.sleep(hold_s)
            forward_headers = {
                k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "stripe-version")
            }
            answer = self._http().request(method, self.upstream + path, data=body, headers=forward_headers, timeout=60)
        except requests.RequestException:
            return self.idempotency.finish(
                started, stripe_error(502, "api_error", "localstripe unreachable"), acted=False
            )
        except BaseException:
            self.idempotency.abandon(started)
            raise
        if act_then_500 and endpoint_acted(answer.status_code):
            # Stripe acted (localstripe has the object), then failed: the 500 is what the key keeps.
            return self.idempotency.finish(started, stripe_error(500, "api_error", "injected after acting"))
        kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "idempotent-replayed")}
        # localstripe's own 5xx that did not act (its 500_without_acting fault) stays retryable.
        did_act = answer.headers.get(SHOULD_RETRY, "").lower() != "true"
        return self.idempotency.finish(started, Answer(answer.status_code, answer.content, kept), acted=did_act)


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

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            method, path = self.command, self.path
            form = parse_qs(body.decode("utf-8", "replace")) if method == "POST" else {}
            headers = CaseInsensitiveDict(dict(self.headers.items()))
            fault = proxy._next_fault(method, path, form)
            seen = Seen(
                method, path, headers.get("Idempotency-Key"), form, fault.kind if fault else "pass", None, body=body
            )
            with proxy._lock:
                proxy.seen.append(seen)
            if fault is not None and fault.kind == "status":
                # Refused before Stripe executed anything: a 5xx says so, and nothing is saved under the key.
                extra = {SHOULD_RETRY: "true"} if fault.status >= 500 else {}
                self._send(
                    Answer(
                        fault.status, json.dumps(fault.body).encode(), {"Content-Type": "application/json", **extra}
                    ),
                    seen,
                )
                return
            if fault is not None and fault.kind == FAIL_WHILE_EXECUTING:
                started = proxy.idempotency.begin(
                    method,
                    path,
                    body,
                    authorization=headers.get("Authorization", ""),
                    key=headers.get("Idempotency-Key"),
                )
                if not isinstance(started, Answer):
                    started = proxy.idempotency.finish(
                        started, stripe_error(500, "api_error", "injected while executing")
                    )
                self._send(started, seen)
                return
            if fault is not None and fault.kind == RESET_BEFORE:
                self.close_connection = True
                _reset(self.connection)
                return
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.hold_s)
            hold_s = fault.hold_s if fault is not None and fault.kind == "slow" else 0.0
            act_then_500 = fault is not None and fault.kind == ACT_THEN_500
            answer = proxy.forward(method, path, headers, body, hold_s, act_then_500)
            seen.status, seen.replayed = answer.status, answer.headers.get("Idempotent-Replayed") == "true"
            if fault is not None and fault.kind == RESET_AFTER:
                self.close_connection = True
                _reset(self.connection)
                return
            if fault is not None and fault.kind == TIMEOUT_AFTER_SENT:
                time.sleep(fault.hold_s)
                self.close_connection = True
                _reset(self.connection)
                return
            self._send(answer, seen)

        def _send(self, answer: Answer, seen: Seen) -> None:
            headers = CaseInsensitiveDict({"Content-Type": "application/json"})
            headers.update(answer.headers)
            headers["Content-Length"] = str(len(answer.body))
            seen.status, seen.headers = answer.status, dict(headers)
            self.send_response(answer.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_DELETE = _answer

    with serving(Handler, "stripe-proxy") as port:
        proxy.url = f"http://127.0.0.1:{port}"
        yield proxy
