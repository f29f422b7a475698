"""`make demo`: use the running service as a user would — over REST, then over Kafka like the platform's gateway,
then as the platform's own checkout does.

Vault a test card, create and confirm a payment intent, refund part of it, show its history; then a manual-capture
payment: authorise, capture part (the rest is released), refund part, history. Last the platform's checkout: the web
app's cart and customer details and its confirm with Stripe.js's card over Socket.IO, the order service's capture over
Kafka (no reply awaited), and the `PaymentSucceeded` the order service consumes.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import requests
import socketio
from confluent_kafka import Consumer, Producer

from messaging.wire import message_headers
from settings import PROJECT_ROOT, get_settings
from stand_ins.local import Endpoints, endpoints

NAMESPACE = "/finance-payments"


def test_card(ends: Endpoints) -> str:
    """What Stripe.js does in a browser: a `pm_…` for a test card (the service never sees the number)."""
    if not ends.stripe_is_local:
        return "pm_card_visa"  # Stripe's own test-mode payment method
    card = {
        "type": "card",
        "card[number]": "4242424242424242",
        "card[exp_month]": "12",
        "card[exp_year]": "2034",
        "card[cvc]": "123",
    }
    response = requests.post(f"{ends.stripe_api}/v1/payment_methods", data=card, auth=(ends.stripe_key, ""), timeout=10)
    response.raise_for_status()
    return response.json()["id"]


def rest(ends: Endpoints) -> Callable[[str, dict[str, Any]], Any]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {ends.api_key}"
    routes = {
        "create-payment-method": ("POST", "/payment-methods"),
        "create-payment-intent": ("POST", "/payment-intents"),
        "create-refund": ("POST", "/refunds"),
        "get-ztracking-payment-intent": ("GET", "/payment-intents/{paymentIntentId}/history"),
        "capture-payment-intent": ("POST", "/payment-intents/{paymentIntentId}/capture"),
    }

    def send(operation: str, payload: dict[str, Any]) -> Any:
        method, path = routes[operation]
        url = ends.api + path.format(**payload)
        body = None if method == "GET" else {k: v for k, v in payload.items() if "{" + k + "}" not in path}
        response = session.request(method, url, json=body, headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=60)
        if response.status_code >= 400:
            raise SystemExit(f"{operation} failed: {response.status_code} {response.text}")
        return response.json()

    return send


def kafka(ends: Endpoints) -> Callable[[str, dict[str, Any]], Any]:
    producer = Producer({"bootstrap.servers": ends.kafka})
    consumer = Consumer(
        {
            "bootstrap.servers": ends.kafka,
            "group.id": f"demo-gateway-{uuid.uuid4()}",
            "auto.offset.reset": "latest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,
        }
    )
    topics = [
        "create-payment-method",
        "create-payment-intent",
        "create-refund",
        "get-ztracking-payment-intent",
        "capture-payment-intent",
    ]
    consumer.subscribe([f"{topic}-response" for topic in topics])
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.2)  # join the group before sending, so no reply is missed

    def send(operation: str, payload: dict[str, Any]) -> Any:
        key = str(uuid.uuid4())
        value = json.dumps({**payload, "traceId": f"demo-{key[:8]}"})
        producer.produce(operation, key=key, value=value)
        producer.flush(10)
        until = time.monotonic() + 60
        while time.monotonic() < until:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            body = message.value()
            if body is None:  # no body: not a reply of ours
                continue
            reply = json.loads(body)
            if reply.get("kafkaResponseKey") == key:
                if "error" in reply:
                    raise SystemExit(f"{operation} failed: {reply['error']}")
                return reply["response"]
        raise SystemExit(f"{operation}: no reply on {operation}-response within 60 s")

    return send


def show_events(ends: Endpoints, intent_ids: list[str], wanted: int, timeout_s: float = 20.0) -> None:
    """The payment events the demo's payments produced, as the platform's other services read them."""
    topics = list(get_settings().event_topics.values())
    consumer = Consumer(
        {
            "bootstrap.servers": ends.kafka,
            "group.id": f"demo-events-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe(topics)
    found: dict[str, dict[str, Any]] = {}
    keys = {i.encode() for i in intent_ids}
    deadline = time.monotonic() + timeout_s
    while len(found) < wanted and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() or message.key() not in keys:
            continue
        headers = dict(message_headers(message))
        event = json.loads(message.value() or b"")
        found[headers["eventId"].decode()] = {"sequence": int(headers["sequence"]), **event}
    consumer.close()
    print(f"\n== payment events ({len(found)}; the publisher sends them, `make run` runs it)")
    for event in sorted(found.values(), key=lambda e: e["sequence"]):
        extra = {
            k: v
            for k, v in event.items()
            if k not in ("sequence", "eventId", "type", "occurredAt", "traceId", "paymentIntentId") and v is not None
        }
        print(f"  {event['type']:<25} {event['paymentIntentId']}  {json.dumps(extra, separators=(',', ':'))}")


def walk(door: str, send: Callable[[str, dict[str, Any]], Any], ends: Endpoints) -> list[str]:
    customer = f"demo-{door.lower()}-{uuid.uuid4().hex[:6]}"
    print(f"\n== {door}: customer {customer}")
    method = send(
        "create-payment-method",
        {"customerId": customer, "stripePaymentMethodId": test_card(ends), "setAsDefault": True},
    )
    card = method["card"]
    print(
        f"vaulted      {method['id']}  {card['brand']} •••• {card['last4']}  exp {card['expMonth']}/{card['expYear']}"
    )
    intent = send(
        "create-payment-intent",
        {"customerId": customer, "amount": 4200, "currency": "eur", "confirm": True, "description": "demo order"},
    )
    print(f"paid         {intent['id']}  {intent['amount'] / 100:.2f} {intent['currency'].upper()}  {intent['status']}")
    refund = send("create-refund", {"paymentIntentId": intent["id"], "amount": 1000, "reason": "requested_by_customer"})
    print(f"refunded     {refund['id']}  {refund['amount'] / 100:.2f} {refund['currency'].upper()}  {refund['status']}")
    show_history(send, intent["id"])

    held = send(
        "create-payment-intent",
        {
            "customerId": customer,
            "amount": 5000,
            "currency": "eur",
            "confirm": True,
            "captureMethod": "manual",
            "orderId": f"order-{uuid.uuid4().hex[:6]}",
            "description": "demo order, shipped later",
        },
    )
    print(
        f"authorised   {held['id']}  {held['amountCapturable'] / 100:.2f} EUR  {held['status']}"
        f"  capture before {held['captureBefore']}"
    )
    captured = send("capture-payment-intent", {"paymentIntentId": held["id"], "amountToCapture": 3500})
    received, amount = captured["amountReceived"] / 100, captured["amount"] / 100
    print(f"captured     {received:.2f} EUR of {amount:.2f}  {captured['status']}  (the rest is released)")
    refund = send("create-refund", {"paymentIntentId": held["id"], "amount": 500, "reason": "requested_by_customer"})
    print(f"refunded     {refund['id']}  {refund['amount'] / 100:.2f} EUR  {refund['status']}")
    show_history(send, held["id"])
    return [intent["id"], held["id"]]


def platform_key(service: str) -> str:
    """A Kafka key as the platform's services make them: `<ServiceName>-<epoch ms>-<random>`."""
    return f"{service}-{int(time.time() * 1000)}-{random.random()}"


def web_app(ends: Endpoints, person: str) -> tuple[socketio.Client, list[dict[str, Any]]]:
    """The web app's socket for `person` (its `?userId=`, with the token a browser gets from the API) and the
    status pushes it hears."""
    token = requests.post(
        f"{ends.api}/socket-tokens",
        json={"customerId": person},
        headers={"Authorization": f"Bearer {ends.api_key}"},
        timeout=30,
    )
    if token.status_code != 200:
        raise SystemExit(f"socket-tokens failed: {token.status_code} {token.text}")
    pushes: list[dict[str, Any]] = []
    client = socketio.Client(reconnection=False)
    client.on("payment-status-update", pushes.append, namespace=NAMESPACE)
    url = f"{ends.sockets}?{urllib.parse.urlencode({'userId': person})}"
    client.connect(
        url, namespaces=[NAMESPACE], auth={"token": token.json()["token"]}, transports=["websocket"], wait_timeout=15
    )
    return client, pushes


def emit(client: socketio.Client, event: str, body: dict[str, Any]) -> Any:
    """Emit as the web app does; the answer (the acknowledgement's envelope holds what `<event>-result` carries)."""
    envelope = client.call(event, body, namespace=NAMESPACE, timeout=60)
    if not isinstance(envelope, dict) or "response" not in envelope:
        raise SystemExit(f"{event} failed: {envelope}")
    return envelope["response"]


def order_service_consumer(ends: Endpoints, topic: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": ends.kafka,
            "group.id": f"demo-order-service-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe([topic])
    return consumer


def checkout_body(email: str) -> dict[str, Any]:
    """The web app's create (create-payment-intent-payload.dto.ts): a two-line cart of 29.99 USD and who pays."""
    return {
        "items": [
            {"id": str(uuid.uuid4()), "quantity": 2, "priceCents": 1250, "currency": "USD"},
            {"id": str(uuid.uuid4()), "quantity": 1, "priceCents": 499, "currency": "USD"},
        ],
        "customerDetails": {
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": email,
            "address": {
                "street": "12 Harbour Road",
                "city": "Portland",
                "state": "OR",
                "zip": "97201",
                "country": "US",
            },
        },
    }


def platform_checkout(ends: Endpoints) -> str:
    """The platform's checkout, as its web app and order service (GitHub jazzyrana29/vyarna-copy) send it."""
    person = str(uuid.uuid4())  # the platform's person id: the web app's userId
    print("\n== Platform: the web app's checkout over Socket.IO, the order service's capture over Kafka")
    client, pushes = web_app(ends, person)
    try:
        email = f"ada.{uuid.uuid4().hex[:8]}@example.com"
        body = checkout_body(email)
        cart = body["items"]
        created = emit(client, "create-payment-intent", body)
        intent_id = created["paymentIntentId"]
        print(
            f"checkout     {intent_id}  {created['totalAmount'] / 100:.2f} {created['currency'].upper()}"
            f"  {len(cart)} cart lines  success={created['success']}  (clientSecret for Stripe.js)"
        )
        confirmed = emit(
            client,
            "confirm-payment-intent",
            {
                "paymentIntentId": intent_id,
                "paymentMethodId": test_card(ends),  # Stripe.js's pm_…, never vaulted with us
                "receiptEmail": email,
                "returnUrl": "https://app.example.com/payment-success",
            },
        )
        print(f"confirmed    success={confirmed['success']}  {confirmed['status']}  (authorised until the order ships)")

        settings = get_settings()
        routes = settings.event_routes.get("succeeded-payment", ())
        topic = next((t for t, dialect in routes if dialect == "platform"), "PaymentSucceeded")
        consumer = order_service_consumer(ends, topic)
        producer = Producer({"bootstrap.servers": ends.kafka})
        key = platform_key("OrderService")
        value = {"paymentIntentId": intent_id, "traceId": f"order-{uuid.uuid4().hex[:8]}"}
        producer.produce("capture-payment-intent", key=key, value=json.dumps(value))
        producer.flush(10)
        print(f"capture      sent by the order service under {key}, no reply awaited")
        try:
            event = wait_for_event(consumer, intent_id, 60)
        finally:
            consumer.close()
        print(f"{topic:<12} consumed: paymentIntentId {event['paymentIntentId']}  orderId {event.get('orderId')}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(p.get("status") == "succeeded" for p in pushes):
            time.sleep(0.2)
        heard = [p["status"] for p in pushes if p.get("paymentIntentId") == intent_id]
        print(f"pushed       to the web app's socket: {', '.join(heard) or 'nothing yet'}")
        return intent_id
    finally:
        # The client's reader threads end with the connection; do not wait for websocket-client's close timeout.
        threading.Thread(target=client.disconnect, daemon=True).start()


def wait_for_event(consumer: Consumer, intent_id: str, timeout_s: float) -> dict[str, Any]:
    """The first event on the consumer's topic about `intent_id`, as the order service reads it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() or message.value() is None:
            continue
        event = json.loads(message.value() or b"{}")
        if event.get("paymentIntentId") == intent_id:
            if message.key() is None:  # the order service calls key.toString()
                raise SystemExit("an event without a key: the order service would throw on it")
            return event
    raise SystemExit(f"no event about {intent_id} within {timeout_s:.0f} s: is the publisher running?")


def show_history(send: Callable[[str, dict[str, Any]], Any], intent_id: str) -> None:
    history = send("get-ztracking-payment-intent", {"paymentIntentId": intent_id})
    print("history")
    for row in history:
        print(
            f"  v{row['ztrackingVersion']}  {row['versionDate']}  {row['status']:<16}"
            f"  received {row['amountReceived']:>5}  refunded {row['amountRefunded']:>5}  ({row['cause']})"
        )


def main() -> int:
    ends = endpoints(get_settings(), PROJECT_ROOT / "var")
    try:
        requests.get(f"{ends.api}/readyz", timeout=5).raise_for_status()
    except requests.RequestException:
        print(f"The service is not ready at {ends.api}: start it with `make run` first.", file=sys.stderr)
        return 1
    paid = walk("REST", rest(ends), ends) + walk("Kafka", kafka(ends), ends)
    checkout = platform_checkout(ends)
    # Per door: the paid intent (created, succeeded, refund created and succeeded) and the held one (the same); the
    # platform's checkout: created and succeeded.
    show_events(ends, [*paid, checkout], wanted=4 * len(paid) + 2)
    print("\ndemo finished: every door answered every step, and the platform's checkout was paid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
