"""The Socket.IO door: the platform gateway's WebSocket dialect, in front of the same Celery tasks as REST and Kafka.

- Namespace `/finance-payments`. A client emits an event named after an operation's topic with its payload; the
  socket gets `<topic>-result` (the response) or `<topic>-error` (the message, then the structured error), and an
  acknowledgement callback, when given, gets the Kafka-style envelope `{response|error, kafkaResponseKey,
  kafkaResponseStatus, traceId}`.
- Who: a server connects with an API key and may act on every record; a browser connects with a customer token
  (POST /socket-tokens) and acts on, and hears about, that customer's records only (others are `not_found`).
- Rooms, as the gateway's: a user's (handshake query `?userId=`, `register-user`, `join {room: userId}`) and an
  intent's (`join {room: paymentIntentId}`, `subscribe-payment-intent`), within the caller's scope.
- Pushes: `payment-status-update` to the customer's room and to the sockets in the intent's room, and the gateway
  webhook handler's `payment-status-update-result` to the intent's room, fed by the `payment-status-changed` events
  (socket_door/pushes.py) through Socket.IO's Redis queue, so every process's sockets hear them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import socketio
from flask import Flask, Response, abort, jsonify, send_from_directory

from domain.answers import widen_envelope
from domain.schemas import parse_input, platform_id_problem
from doors.auth import bearer, key_id, socket_token_claims
from doors.dispatch import run_operation
from doors.envelope import IDEMPOTENCY_KEY, error_envelope
from doors.platform import translate
from errors import OperationError
from observability import metrics
from registry import OPERATIONS, Operation
from settings import Settings
from socket_door.pushes import StatusFeed, status_result

log = logging.getLogger("socket_door")

NAMESPACE = "/finance-payments"
PUSH_EVENT = "payment-status-update"
# What the gateway's Stripe webhook handler emits to the intent's room (its `-error` twin: see status_result).
RESULT_EVENT = f"{PUSH_EVENT}-result"
# Operations a socket may run: every one of the registry but Stripe's webhooks (the service's own).
SOCKET_OPERATIONS = {name: op for name, op in OPERATIONS.items() if name != "process-stripe-webhook"}
# Requests a socket may have running at once; more are refused (rate_limited) rather than queued without end.
MAX_IN_FLIGHT = 32
# How often sockets whose token expired are found and disconnected.
EXPIRY_SWEEP_S = 10.0
# Time for a last message to go out before its socket is disconnected.
GRACE_S = 0.5
TRACE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
EVENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
# Our intent ids (domain/ids.py): a `join` room of this shape is an intent's, any other a user's.
INTENT_ID = re.compile(r"^vypi_[0-9a-z]{26}$")
STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"


@dataclass
class Caller:
    """Who a socket is: a server (API key) or one customer (token, until it expires)."""

    scope: str  # scopes idempotency keys: the API key's id, or the customer's hash
    customer: str | None = None
    expires: int | None = None
    in_flight: int = 0

    @property
    def kind(self) -> str:
        return "server" if self.customer is None else "customer"

    def expired(self) -> bool:
        return self.expires is not None and time.time() >= self.expires


def customer_room(customer_id: str) -> str:
    return f"customer:{customer_id}"


def intent_room(payment_intent_id: str) -> str:
    return f"intent:{payment_intent_id}"


def handshake_user(environ: dict[str, Any]) -> str | None:
    """The gateway's handshake query `?userId=`, or None: absent, empty or given twice, the gateway ignores it too
    (its query parser makes an array of a repeated name, and it takes only a non-empty string)."""
    values = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get("userId", [])
    return values[0] if len(values) == 1 and values[0] else None


def user_problem(caller: Caller, user: Any, field: str = "userId") -> dict[str, Any] | None:
    """Why `caller` may not hear user `user`'s room (an error envelope), or None. A server may name any valid id;
    a customer token its own only, and any other is answered as an unknown id."""
    problem = platform_id_problem(user)
    if problem is not None:
        return error_envelope("validation_error", f"{field} is required: a customer id ({problem}).")
    if caller.customer is not None and user != caller.customer:
        return error_envelope("not_found", "No customer has this id.")
    return None


def enveloped(envelope: dict[str, Any], trace_id: str | None = None) -> dict[str, Any]:
    """The Kafka contract's envelope: `{response|error, kafkaResponseKey, kafkaResponseStatus, traceId}`."""
    if "kafkaResponseStatus" in envelope:
        return envelope
    return {
        **envelope,
        # Shaped like the gateway's own request keys (<service>-<epoch ms>-<random>).
        "kafkaResponseKey": f"ws-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}",
        "kafkaResponseStatus": "response" in envelope,
        "traceId": trace_id or str(uuid.uuid4()),
    }


class SocketLimits:
    """The per-caller limits over the socket door too, counted where the REST limits are: a customer token's
    RATE_LIMIT_CUSTOMER (one browser), an API key's RATE_LIMIT_SERVER or its own RATE_LIMIT_CALLERS entry."""

    def __init__(self, settings: Settings) -> None:
        from limits import storage, strategies

        from doors.limits import storage_uri

        self.settings = settings
        self.limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri(settings)))
        self.namespace = f"vyp-limits:{settings.kafka_group}:socket"
        self._parsed: dict[str, list[Any]] = {}  # by limit string: a handful (the defaults, RATE_LIMIT_CALLERS)

    def _items(self, limit: str) -> list[Any]:
        from limits import parse_many

        if limit not in self._parsed:
            self._parsed[limit] = parse_many(limit) if limit else []
        return self._parsed[limit]

    def limit_of(self, caller: Caller) -> str:
        """The limit this caller's requests count against ('' for none)."""
        from doors.limits import server_limit

        if caller.kind == "customer":
            return self.settings.rate_limit_customer
        return server_limit(caller.scope, self.settings)

    def allow(self, caller: Caller) -> bool:
        try:
            items = self._items(self.limit_of(caller))
            return all(self.limiter.hit(item, self.namespace, caller.scope) for item in items)
        except Exception as exc:  # the counters' Redis away: fail open, as REST does
            log.warning("socket rate limit not counted (%s)", type(exc).__name__)
            return True


class PushQueue(socketio.RedisManager):
    """Socket.IO's Redis queue, but a message it gives up on raises instead of vanishing: the push feed then keeps
    the change unconsumed and tries again (python-socketio only logs "giving up")."""

    def _publish(self, data: Any) -> Any:
        receivers = super()._publish(data)
        if receivers is None:
            raise ConnectionError("the Socket.IO queue (Redis) did not take the message")
        return receivers


def _client_manager(settings: Settings) -> socketio.PubSubManager:
    """Socket.IO's queue between processes: the service's Redis when it has one, else its AMQP broker."""
    channel = f"vyp-socketio:{settings.kafka_group}"
    if settings.redis_url:
        return PushQueue(settings.redis_url, channel=channel)
    return socketio.KombuManager(settings.broker_url, channel=channel)


class SocketDoor:
    """One process's Socket.IO server, its push feed and its small HTTP side (health, metrics, demo page)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sio = socketio.Server(
            async_mode="gevent",
            client_manager=_client_manager(settings),
            # None: the door's own origin only; a list: those origins (CORS).
            cors_allowed_origins=list(settings.socket_allowed_origins) or None,
            transports=list(settings.socket_transports),
            max_http_buffer_size=1024 * 1024,
            logger=False,
            engineio_logger=False,
        )
        self.callers: dict[str, Caller] = {}
        self.limits = SocketLimits(settings)
        self.feed = StatusFeed(settings, self.push)
        self._register()
        self.app = socketio.WSGIApp(self.sio, self._side_app())

    # -- connections
    def _register(self) -> None:
        on = self.sio.on
        on("connect", namespace=NAMESPACE)(self.connect)
        on("disconnect", namespace=NAMESPACE)(self.disconnect)
        on("register-user", namespace=NAMESPACE)(self.register_user)
        on("join", namespace=NAMESPACE)(self.join)
        on("subscribe-payment-intent", namespace=NAMESPACE)(self.subscribe)
        on("unsubscribe-payment-intent", namespace=NAMESPACE)(self.unsubscribe)
        for operation in SOCKET_OPERATIONS.values():
            on(operation.name, namespace=NAMESPACE)(self._operation_handler(operation))
        on("*", namespace=NAMESPACE)(self.unknown_event)

    def _authenticate(self, environ: dict[str, Any], auth: Any) -> Caller | None:
        given = auth if isinstance(auth, dict) else {}
        credential = given.get("token") or given.get("apiKey") or bearer(environ.get("HTTP_AUTHORIZATION", ""))
        if not isinstance(credential, str) or not credential:
            return None
        if credential.count(".") == 2:  # a signed token (header.claims.signature)
            claims = socket_token_claims(credential, self.settings)
            if claims is None:
                return None
            customer, expires = claims
            digest = hashlib.sha256(customer.encode()).hexdigest()[:16]
            return Caller(scope=f"c-{digest}", customer=customer, expires=expires)
        ident = key_id(credential, self.settings.api_keys)
        return Caller(scope=ident) if ident else None

    def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            caller = self._authenticate(environ, auth)
        except Exception:  # whatever a client sends as credentials: refused, never a half-made connection
            caller = None
        if caller is None:
            metrics.SOCKET_REFUSED.labels("unauthorized").inc()
            message = "A valid API key or customer token (POST /socket-tokens) is required: auth {token}."
            raise socketio.exceptions.ConnectionRefusedError(message, {"code": "unauthorized", "message": message})
        user = handshake_user(environ)
        refusal = None if user is None else user_problem(caller, user)
        if refusal is not None:
            # Refused at the handshake like bad credentials (connect_error): a client that asked for a room it may
            # not hear learns it at once, rather than holding a socket that seems fine and hears nothing.
            error = refusal["error"]
            metrics.SOCKET_REFUSED.labels(error["code"]).inc()
            raise socketio.exceptions.ConnectionRefusedError(error["message"], error)
        self.callers[sid] = caller
        for room in {customer_room(c) for c in (caller.customer, user) if c is not None}:
            self.sio.enter_room(sid, room, namespace=NAMESPACE)
        metrics.SOCKET_CONNECTIONS.labels(caller.kind).inc()

    def disconnect(self, sid: str, *reason: Any) -> None:
        caller = self.callers.pop(sid, None)
        if caller is not None:
            metrics.SOCKET_CONNECTIONS.labels(caller.kind).dec()

    def _caller(self, sid: str) -> Caller | dict[str, Any]:
        """The socket's caller, or the error to answer (its token expired: it is disconnected too)."""
        caller = self.callers.get(sid)
        if caller is None:
            return error_envelope("unauthorized", "Not connected.")
        if caller.expired():
            self._expire(sid)
            return error_envelope("unauthorized", "The token expired: connect again with a new one.")
        return caller

    def _expire(self, sid: str) -> None:
        body = OperationError("unauthorized", "The token expired: connect again with a new one.").to_error()
        self.sio.emit("session-expired", body, to=sid, namespace=NAMESPACE, ignore_queue=True)

        def later() -> None:
            self.sio.sleep(GRACE_S)  # the notice goes out first
            self.sio.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)

        self.sio.start_background_task(later)

    def sweep_expired(self) -> None:
        """Disconnect, every EXPIRY_SWEEP_S, the sockets whose token expired (even idle ones)."""
        while True:
            self.sio.sleep(EXPIRY_SWEEP_S)
            for sid, caller in list(self.callers.items()):
                if caller.expired():
                    self._expire(sid)

    # -- operations
    def _operation_handler(self, operation: Operation) -> Any:
        def handler(sid: str, data: Any = None) -> dict[str, Any]:
            return self.answer(sid, operation.name, self.run(sid, operation, data))

        handler.__name__ = operation.name.replace("-", "_")
        return handler

    def answer(self, sid: str, event: str, envelope: dict[str, Any], error_object: bool = False) -> dict[str, Any]:
        """`<event>-result` or `<event>-error` to the socket; the envelope is the acknowledgement.

        `<event>-error` carries the message (a string, as the gateway's operations send it) then the structured
        error; with `error_object`, the structured error alone (an object with `message`, as the gateway's `join`)."""
        envelope = enveloped(envelope)
        if "error" in envelope:
            error = envelope["error"]
            args = error if error_object else (error["message"], error)
            self.sio.emit(f"{event}-error", args, to=sid, namespace=NAMESPACE, ignore_queue=True)
        else:
            self.sio.emit(f"{event}-result", envelope["response"], to=sid, namespace=NAMESPACE, ignore_queue=True)
        return envelope

    def run(self, sid: str, operation: Operation, data: Any) -> dict[str, Any]:
        """One request through the operation's Celery task, as REST runs it; the Kafka-style envelope."""
        found = self._caller(sid)
        if isinstance(found, dict):
            return found
        caller = found
        payload = dict(data) if isinstance(data, dict) else data
        # The gateway's trace id rides along with the payload: taken out before it is validated.
        presented = payload.pop("traceId", None) if isinstance(payload, dict) else None
        trace_id = presented if isinstance(presented, str) and TRACE_ID.fullmatch(presented) else str(uuid.uuid4())
        # The platform's field names beside ours, as the web app reads them.
        return enveloped(widen_envelope(operation.name, self._run(caller, operation, payload, trace_id)), trace_id)

    def _run(self, caller: Caller, operation: Operation, payload: Any, trace_id: str) -> dict[str, Any]:
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            return error_envelope("validation_error", "The payload must be a JSON object.")
        key = payload.pop("idempotencyKey", None)
        if key is not None and (not isinstance(key, str) or not IDEMPOTENCY_KEY.fullmatch(key)):
            return error_envelope("validation_error", "idempotencyKey must be 1 to 255 printable ASCII characters.")
        # The platform's dialect, read into ours; a browser's own customer is who pays for its cart.
        payload = translate(operation.name, payload, self.settings, customer=caller.customer)
        if caller.customer is not None and "customer_id" in operation.schema.model_fields:
            payload.setdefault("customerId", caller.customer)  # a browser need not repeat who it is
        try:
            parse_input(operation.schema, payload)  # bad input is refused here, before anything is queued
        except OperationError as exc:
            return {"error": exc.to_error()}
        if caller.in_flight >= MAX_IN_FLIGHT:
            return error_envelope(
                "rate_limited", f"At most {MAX_IN_FLIGHT} requests at once per socket; wait for an answer."
            )
        if not self.limits.allow(caller):
            return error_envelope("rate_limited", "Too many requests from this caller; slow down.")
        caller_key = scoped = None
        if operation.mutating:
            caller_key = key or f"auto-{uuid.uuid4()}"
            scoped = f"ws:{caller.scope}:{caller_key}"
        caller.in_flight += 1
        try:
            with metrics.track(operation.name, "websocket", "door"):
                envelope = run_operation(
                    operation,
                    payload,
                    trace_id=trace_id,
                    idempotency_key=scoped,
                    caller_key=caller_key,
                    door="websocket",
                    customer_scope=caller.customer,
                )
            envelope.pop("replayed", None)  # REST says it in a header; the gateway's envelope has no such field
        except OperationError as exc:
            envelope = {"error": exc.to_error()}
        except Exception:
            log.exception("socket request failed unexpectedly")
            # It may have been queued already: a mutating request's outcome is unknown, never "nothing happened".
            if operation.mutating:
                message = "The request's outcome is not known; retry with the same idempotencyKey."
                envelope = error_envelope("outcome_unknown", message)
            else:
                envelope = error_envelope("internal_error", "Internal error; retry the request.")
        finally:
            caller.in_flight -= 1
        error = envelope.get("error")
        if error and error.get("code") in ("outcome_unknown", "timeout") and caller_key:
            # The one thing to do next: retry with this very key (made here when the client sent none).
            envelope = {"error": {**error, "details": {**(error.get("details") or {}), "idempotencyKey": caller_key}}}
        return envelope

    # -- rooms
    def register_user(self, sid: str, data: Any = None) -> dict[str, Any]:
        """The gateway's `register-user`: hear that customer's pushes. `{userId}`, or the bare id the gateway's
        handler takes. A customer token: its own only."""
        found = self._caller(sid)
        if isinstance(found, dict):
            return self.answer(sid, "register-user", found)
        user: Any = data.get("userId") if isinstance(data, dict) else data
        refusal = user_problem(found, user)
        if refusal is not None:
            return self.answer(sid, "register-user", refusal)
        self.sio.enter_room(sid, customer_room(user), namespace=NAMESPACE)
        return self.answer(sid, "register-user", {"response": {"userId": user, "registered": True}})

    def join(self, sid: str, data: Any = None) -> dict[str, Any]:
        """The gateway's `join {room}`: an intent's room (its id: that intent's pushes) or a user's (that customer's
        pushes), within the caller's scope; answered `join-result {room, success: true, …}` or `join-error
        {message, code, …}`."""
        found = self._caller(sid)
        if isinstance(found, dict):
            return self.answer(sid, "join", found, error_object=True)
        room = data.get("room") if isinstance(data, dict) else None
        if not isinstance(room, str) or not room:
            missing = error_envelope("validation_error", "Room field is required: a payment intent's id or a user id.")
            return self.answer(sid, "join", missing, error_object=True)
        if INTENT_ID.fullmatch(room):
            status = self._enter_intent(sid, {"paymentIntentId": room})
            if "error" in status:
                return self.answer(sid, "join", status, error_object=True)
            joined = {"room": room, "success": True, **status["response"]}
            return self.answer(sid, "join", {**status, "response": joined}, error_object=True)
        refusal = user_problem(found, room, "room")
        if refusal is not None:
            return self.answer(sid, "join", refusal, error_object=True)
        self.sio.enter_room(sid, customer_room(room), namespace=NAMESPACE)
        joined = {"room": room, "success": True, "userId": room}
        return self.answer(sid, "join", {"response": joined}, error_object=True)

    def subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Hear one intent's pushes (of the socket's own customer), answered with its status now: a client that
        (re)subscribes knows where the payment stands and misses nothing after it."""
        return self.answer(sid, "subscribe-payment-intent", self._enter_intent(sid, data))

    def _enter_intent(self, sid: str, data: Any) -> dict[str, Any]:
        """Into the room of `data["paymentIntentId"]` if the caller may see it: the envelope of its status read."""
        caller = self.callers.get(sid)
        wanted = data.get("paymentIntentId") if isinstance(data, dict) else None
        room = intent_room(wanted) if isinstance(wanted, str) and wanted else None
        # A server may see every intent: in the room before the status is read, so a change between the two is
        # pushed, never missed. A customer's socket already hears its own intents in its customer room; it joins
        # only once the read proved the intent is its own (never, even for an instant, another customer's room).
        early = room is not None and caller is not None and caller.customer is None
        if early:
            self.sio.enter_room(sid, room, namespace=NAMESPACE)
        status = self.run(sid, OPERATIONS["get-payment-intent-status"], data)
        if "response" in status and room and not early:
            self.sio.enter_room(sid, room, namespace=NAMESPACE)
        elif "response" not in status and early:
            self.sio.leave_room(sid, room, namespace=NAMESPACE)
        return status

    def unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        found = self._caller(sid)
        if isinstance(found, dict):
            return self.answer(sid, "unsubscribe-payment-intent", found)
        intent = data.get("paymentIntentId") if isinstance(data, dict) else None
        if not isinstance(intent, str) or not intent:
            return self.answer(
                sid, "unsubscribe-payment-intent", error_envelope("validation_error", "paymentIntentId?")
            )
        self.sio.leave_room(sid, intent_room(intent), namespace=NAMESPACE)
        return self.answer(sid, "unsubscribe-payment-intent", {"response": {"paymentIntentId": intent}})

    def unknown_event(self, event: str, sid: str, data: Any = None) -> dict[str, Any]:
        message = "Unknown event: emit an operation's topic (see /openapi.json), or subscribe-payment-intent."
        envelope = error_envelope("not_found", message, {"event": event[:64]})
        if EVENT_NAME.fullmatch(event):
            return self.answer(sid, event, envelope)
        return enveloped(envelope)  # a name not fit to answer under: the acknowledgement only

    # -- pushes
    def push(self, customer_id: str, body: dict[str, Any]) -> None:
        """To the customer's sockets and the intent's room, on every process (through the queue); and, for a change
        the gateway's webhook handler reports, its `payment-status-update-result` to the intent's room, as it does."""
        room = intent_room(body["paymentIntentId"])
        self.sio.emit(PUSH_EVENT, body, to=[customer_room(customer_id), room], namespace=NAMESPACE)
        result = status_result(body)
        if result is not None:
            self.sio.emit(RESULT_EVENT, result, to=room, namespace=NAMESPACE)
        metrics.SOCKET_PUSHES.inc()

    # -- the HTTP side
    def _side_app(self) -> Flask:
        app = Flask("socket_door", static_folder=None)
        door = self

        @app.get("/healthz")
        def healthz() -> Response:
            return jsonify({"status": "ok"})

        @app.get("/readyz")
        def readyz() -> Response:
            ready = door.feed.assigned
            response = jsonify({"statusFeed": "ok" if ready else "unavailable"})
            response.status_code = 200 if ready else 503
            return response

        @app.get("/metrics")
        def metrics_page() -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

            return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

        @app.get("/demo/")
        def demo() -> Response:
            door._demo_allowed()
            return send_from_directory(STATIC, "index.html", max_age=0)

        @app.get("/demo/<path:name>")
        def demo_file(name: str) -> Response:
            door._demo_allowed()
            if name == "config.json":
                return jsonify(door.demo_config())
            return send_from_directory(STATIC, name, max_age=0)

        @app.get("/vendor/<path:name>")
        def vendor(name: str) -> Response:
            return send_from_directory(VENDOR, name, max_age=3600)

        return app

    def _demo_allowed(self) -> None:
        # The demo page vaults a raw card number as Stripe.js would: only ever with Stripe's test keys.
        if not self.settings.stripe_publishable_key.startswith("pk_test_"):
            abort(404)

    def demo_config(self) -> dict[str, Any]:
        return {
            "namespace": NAMESPACE,
            "transports": list(self.settings.socket_transports),
            "stripeApi": self.settings.stripe_api_url,
            "publishableKey": self.settings.stripe_publishable_key,
        }
