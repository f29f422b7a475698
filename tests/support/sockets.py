"""Socket.IO for the tests: python-socketio's own client (WebSocket transport), recording every event it hears,
and a door adapter so the payment lifecycle scenarios run through the Socket.IO door as through REST and Kafka."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import socketio

from registry import OPERATIONS
from tests.support.doors import Answer, Door, envelope_answer

NAMESPACE = "/finance-payments"


class SocketClient:
    """One connection to the door; `events` holds every event received, in order, with its arguments."""

    def __init__(self, url: str, *, token: str | None = None, api_key: str | None = None, **options: Any) -> None:
        self.url = url
        self.auth = {"token": token} if token else {"apiKey": api_key} if api_key else None
        self.options = options
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", self._record, namespace=NAMESPACE)
        self.sio.on("connect_error", lambda data: self._record("connect_error", data), namespace=NAMESPACE)

    def _record(self, event: str, *args: Any) -> None:
        with self._lock:
            self.events.append((event, args))

    def connect(self) -> SocketClient:
        self.sio.connect(
            self.url,
            namespaces=[NAMESPACE],
            auth=self.auth,
            transports=["websocket"],
            wait_timeout=15,
            **self.options,
        )
        return self

    def call(self, event: str, payload: Any = None, timeout: float = 90) -> Any:
        """Emit with an acknowledgement callback; its answer (the Kafka-style envelope)."""
        return self.sio.call(event, payload, namespace=NAMESPACE, timeout=timeout)

    def emit(self, event: str, payload: Any = None) -> None:
        self.sio.emit(event, payload, namespace=NAMESPACE)

    def received(self, event: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [args for name, args in self.events if name == event]

    def wait_for(self, event: str, predicate: Any = None, timeout: float = 30) -> tuple[Any, ...]:
        """The first `event` whose arguments satisfy `predicate`, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for args in self.received(event):
                if predicate is None or predicate(*args):
                    return args
            time.sleep(0.05)
        raise AssertionError(f"no {event} within {timeout} s; heard {[name for name, _ in self.events]}")

    def pushes(self, payment_intent_id: str) -> list[dict[str, Any]]:
        return [
            args[0]
            for args in self.received("payment-status-update")
            if args[0]["paymentIntentId"] == payment_intent_id
        ]

    @property
    def connected(self) -> bool:
        return self.sio.connected

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()
        # websocket-client holds a closed connection's reader for its 3 s close timeout: do not wait for it here.
        threading.Thread(target=self.sio.wait, daemon=True).start()


class SocketIODoor(Door):
    """The lifecycle scenarios' door (tests/support/doors.py) over Socket.IO, as a server with an API key; its client
    is a SocketClient."""

    name = "websocket"
    client: SocketClient

    def call(self, operation: str, payload: dict[str, Any], key: str | None = None) -> Answer:
        op = OPERATIONS[operation]
        body = dict(payload)
        if key and op.mutating:
            body["idempotencyKey"] = key
        trace_id = f"trace-{uuid.uuid4()}"
        body["traceId"] = trace_id
        heard = len(self.client.received(f"{operation}-result")) + len(self.client.received(f"{operation}-error"))
        envelope = self.client.call(operation, body)
        assert envelope["traceId"] == trace_id and envelope["kafkaResponseKey"], envelope
        # The answer is also an event on the socket, as the gateway sends it.
        self.client.wait_for(
            f"{operation}-result" if "response" in envelope else f"{operation}-error",
            lambda *_: (
                len(self.client.received(f"{operation}-result")) + len(self.client.received(f"{operation}-error"))
                > heard
            ),
            10,
        )
        return envelope_answer(operation, envelope, op.success_status)
