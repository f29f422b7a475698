"""The Socket.IO door with python-socketio's client over WebSocket, against real processes: two Socket.IO
processes sharing a Redis queue, the REST API, the suite's Celery worker, Tansu and the events publisher."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import urllib.parse
import uuid
import zlib

import jwt
import pytest
import requests
import socketio

from doors.auth import issue_socket_token
from registry import OPERATIONS
from settings import get_settings
from socket_door.server import SOCKET_OPERATIONS
from tests.conftest import API_KEY, WEBHOOK_SECRET, make_card
from tests.support.lifecycle import DECLINED, SCENARIOS, THREE_D_SECURE
from tests.support.sockets import SocketClient, SocketIODoor
from tests.support.stripe_objects import intents_of_customers
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def customer() -> str:
    return f"sock-{uuid.uuid4().hex[:12]}"


def ok(envelope: dict) -> dict:
    assert envelope.get("kafkaResponseStatus") is True and "response" in envelope, envelope
    return envelope["response"]


def refused(envelope: dict, code: str) -> dict:
    assert envelope.get("kafkaResponseStatus") is False and envelope["error"]["code"] == code, envelope
    return envelope["error"]


def vault(client: SocketClient, stripe_api, customer_id: str | None = None, number: str = "4242424242424242") -> dict:
    body = {"stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": True}
    if customer_id:
        body["customerId"] = customer_id
    return ok(client.call("create-payment-method", body))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_the_payment_lifecycle_over_socketio(scenario, server_socket, stripe_api, localstripe_url):
    scenario(SocketIODoor(server_socket), stripe_api, localstripe_url)


def test_every_operation_but_stripes_webhooks_is_an_event_answered_by_result_and_acknowledgement(
    server_socket, stripe_api
):
    assert set(SOCKET_OPERATIONS) == set(OPERATIONS) - {"process-stripe-webhook"}
    owner = customer()
    method = vault(server_socket, stripe_api, owner)
    assert server_socket.wait_for("create-payment-method-result")[0] == method
    listed = ok(server_socket.call("list-payment-methods", {"customerId": owner}))
    assert [m["id"] for m in listed["data"]] == [method["id"]]
    paid = ok(
        server_socket.call(
            "create-payment-intent", {"customerId": owner, "amount": 1500, "currency": "usd", "confirm": True}
        )
    )
    refund = ok(server_socket.call("create-refund", {"paymentIntentId": paid["id"], "amount": 500}))
    assert ok(server_socket.call("get-refund", {"refundId": refund["id"]}))["amount"] == 500
    deleted = ok(server_socket.call("delete-payment-method", {"paymentMethodId": method["id"]}))
    assert deleted == {"id": method["id"], "deleted": True}
    heard = {name.removesuffix("-result") for name, _ in server_socket.events if name.endswith("-result")}
    assert {
        "create-payment-method",
        "list-payment-methods",
        "create-payment-intent",
        "create-refund",
        "get-refund",
        "delete-payment-method",
    } <= heard
    # The webhook operation is Stripe's alone: not an event of this door.
    refused(server_socket.call("process-stripe-webhook", {"payload": "{}", "signature": "t=1,v1=0"}), "not_found")


def test_errors_answer_the_error_event_with_the_message_then_the_structured_error(server_socket):
    bad = refused(
        server_socket.call("create-payment-intent", {"customerId": "c", "amount": "ten", "currency": "usd"}),
        "validation_error",
    )
    message, structured = server_socket.wait_for("create-payment-intent-error")
    assert isinstance(message, str) and message == bad["message"] and structured == bad
    assert structured["status"] == 400 and structured["details"]["fields"][0]["field"] == "amount"
    refused(server_socket.call("get-payment-intent", {"paymentIntentId": "vypi_nothing_here"}), "not_found")
    message, structured = server_socket.wait_for("get-payment-intent-error")
    assert structured["code"] == "not_found" and message == structured["message"]
    refused(server_socket.call("get-payment-intent", ["not", "an", "object"]), "validation_error")
    refused(
        server_socket.call(
            "create-payment-intent", {"customerId": "c", "amount": 900, "currency": "usd", "idempotencyKey": "\n"}
        ),
        "validation_error",
    )
    refused(server_socket.call("no-such-operation", {}), "not_found")
    assert server_socket.wait_for("no-such-operation-error")[1]["code"] == "not_found"
    assert server_socket.connected  # errors are answers: the socket stays


def test_a_customer_token_acts_on_its_own_customers_records_and_nothing_else(socket_stack, server_socket, stripe_api):
    mine, theirs = customer(), customer()
    their_card = vault(server_socket, stripe_api, theirs)
    other = ok(
        server_socket.call(
            "create-payment-intent", {"customerId": theirs, "amount": 800, "currency": "usd", "confirm": True}
        )
    )
    their_refund = ok(server_socket.call("create-refund", {"paymentIntentId": other["id"], "amount": 100}))
    # Another customer's failed attempt (a declined card): real, and retried by a server it answers invalid_state.
    declined_customer = customer()
    vault(server_socket, stripe_api, declined_customer, DECLINED)
    declined = refused(
        server_socket.call(
            "create-payment-intent",
            {"customerId": declined_customer, "amount": 700, "currency": "usd", "confirm": True},
        ),
        "card_declined",
    )
    their_attempt = declined["details"]["attemptId"]
    refused(server_socket.call("retry-payment-attempt", {"attemptId": their_attempt}), "invalid_state")
    browser = SocketClient(socket_stack.sockets[1], token=socket_stack.token(mine)).connect()
    try:
        method = vault(browser, stripe_api)  # customerId comes from the token
        assert method["customerId"] == mine
        intent = ok(browser.call("create-payment-intent", {"amount": 1200, "currency": "usd", "confirm": True}))
        assert intent["customerId"] == mine and intent["status"] == "succeeded"
        assert ok(browser.call("get-payment-intent", {"paymentIntentId": intent["id"]}))["id"] == intent["id"]
        # Another customer's records are answered as if they did not exist, whatever the operation.
        for event, payload in (
            ("get-payment-intent", {"paymentIntentId": other["id"]}),
            ("get-payment-intent-status", {"paymentIntentId": other["id"]}),
            ("get-ztracking-payment-intent", {"paymentIntentId": other["id"]}),
            ("list-refunds", {"paymentIntentId": other["id"]}),
            ("payment-status-update", {"paymentIntentId": other["stripePaymentIntentId"]}),
            ("list-payment-methods", {"customerId": theirs}),
            ("list-payment-intents", {"customerId": theirs}),
            ("create-payment-intent", {"customerId": theirs, "amount": 900, "currency": "usd"}),
            ("confirm-payment-intent", {"paymentIntentId": intent["id"], "paymentMethodId": their_card["id"]}),
            ("confirm-payment-intent", {"paymentIntentId": other["id"], "paymentMethodId": method["id"]}),
            ("delete-payment-method", {"paymentMethodId": their_card["id"]}),
            ("get-refund", {"refundId": their_refund["id"]}),
            ("retry-payment-attempt", {"attemptId": their_attempt}),
            ("subscribe-payment-intent", {"paymentIntentId": other["id"]}),
            ("subscribe-payment-intent", {"paymentIntentId": other["stripePaymentIntentId"]}),
            ("register-user", {"userId": theirs}),
            ("register-user", theirs),  # the bare id, as the gateway's handler takes it
        ):
            refused(browser.call(event, payload), "not_found")
        # Their card is still theirs, and still there (the server sees it).
        listed = ok(server_socket.call("list-payment-methods", {"customerId": theirs}))
        assert [m["id"] for m in listed["data"]] == [their_card["id"]]
        assert ok(server_socket.call("get-refund", {"refundId": their_refund["id"]}))["amount"] == 100
        # Giving money back or taking back a hold is the merchant's, even on the customer's own payment.
        for event, payload in (
            ("create-refund", {"paymentIntentId": intent["id"], "amount": 100}),
            ("create-refund", {"paymentIntentId": other["id"], "amount": 100}),
            ("capture-payment-intent", {"paymentIntentId": intent["id"]}),
            ("cancel-payment-intent", {"paymentIntentId": intent["id"]}),
        ):
            assert refused(browser.call(event, payload), "forbidden")["status"] == 403
        assert ok(server_socket.call("get-payment-intent", {"paymentIntentId": intent["id"]}))["amountRefunded"] == 0
        assert ok(server_socket.call("get-payment-intent", {"paymentIntentId": other["id"]}))["amountRefunded"] == 100
        # The same idempotencyKey from two customers is two requests: each its own intent, never the other's answer.
        shared = f"shared-{uuid.uuid4()}"
        neighbour = SocketClient(socket_stack.sockets[0], token=socket_stack.token(theirs)).connect()
        try:
            body = {"amount": 1300, "currency": "usd", "idempotencyKey": shared}
            first = ok(browser.call("create-payment-intent", body))
            second = ok(neighbour.call("create-payment-intent", {**body, "amount": 1400}))
            assert (first["customerId"], first["amount"]) == (mine, 1300)
            assert (second["customerId"], second["amount"]) == (theirs, 1400)
            # Positive control: within one customer the key does replay.
            assert ok(browser.call("create-payment-intent", body))["id"] == first["id"]
        finally:
            neighbour.close()
        # A customer's own card is its to delete.
        assert ok(browser.call("delete-payment-method", {"paymentMethodId": method["id"]}))["deleted"] is True
    finally:
        browser.close()


def test_a_token_for_alice_written_another_way_sees_and_moves_nothing_of_alices(
    socket_stack, server_socket, stripe_api
):
    """Issue 24, point 1, at the door: `Alice` and `alicé` are other customers than `alice`, on MariaDB too."""
    alice = f"alice-{uuid.uuid4().hex[:10]}"
    vault(server_socket, stripe_api, alice)
    hers = ok(server_socket.call("create-payment-intent", {"customerId": alice, "amount": 800, "currency": "usd"}))
    for other in (alice.replace("alice", "Alice"), alice.replace("alice", "alicé")):
        browser = SocketClient(socket_stack.sockets[0], token=socket_stack.token(other)).connect()
        try:
            assert ok(browser.call("list-payment-methods", {}))["data"] == []
            assert ok(browser.call("list-payment-intents", {}))["data"] == []
            refused(browser.call("get-payment-intent", {"paymentIntentId": hers["id"]}), "not_found")
            # Without a paymentMethodId a confirm charges the token's customer's default card: it has none.
            create = {"amount": 800, "currency": "usd", "confirm": True}
            refused(browser.call("create-payment-intent", create), "validation_error")
        finally:
            browser.close()
    mine = SocketClient(socket_stack.sockets[0], token=socket_stack.token(alice)).connect()
    try:  # positive control: alice's own token sees her card and intent
        assert len(ok(mine.call("list-payment-methods", {}))["data"]) == 1
        assert [i["id"] for i in ok(mine.call("list-payment-intents", {}))["data"]] == [hers["id"]]
    finally:
        mine.close()
    refused(server_socket.call("register-user", {"userId": f"{alice} "}), "validation_error")
    assert ok(server_socket.call("register-user", {"userId": alice}))["registered"] is True


def failed_capture(intent_id: str) -> str:
    """A capture attempt of the intent that failed without Stripe acting (as the janitor leaves one)."""
    from domain import payment_attempts
    from domain.ids import new_id
    from models import PaymentIntent, unit_of_work, write_transaction

    with unit_of_work(), write_transaction():
        intent = PaymentIntent.get_by_id(intent_id)
        attempt = payment_attempts.open_attempt(intent, new_id("payment_attempt"), "capture", amount=intent.amount)
        payment_attempts.settle(attempt, intent, {"code": "stripe_error", "message": "not done at Stripe"})
        return attempt.id


def test_a_customer_token_cannot_capture_by_retrying_a_failed_capture_and_a_server_can(
    socket_stack, server_socket, stripe_api
):
    browser = SocketClient(socket_stack.sockets[1], token=socket_stack.token(customer())).connect()
    try:
        vault(browser, stripe_api)
        authorise = {"amount": 1600, "currency": "usd", "confirm": True, "captureMethod": "manual"}
        intent = ok(browser.call("create-payment-intent", authorise))
        attempt_id = failed_capture(intent["id"])
        # What capture-payment-intent answers the token, a retry of a capture answers it too.
        assert refused(browser.call("retry-payment-attempt", {"attemptId": attempt_id}), "forbidden")["status"] == 403
        held = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
        assert (held.status, held.amount_received) == ("requires_capture", 0)
        retried = ok(server_socket.call("retry-payment-attempt", {"attemptId": attempt_id}))  # the merchant may
        assert (retried["status"], retried["retryOf"]) == ("succeeded", attempt_id)
    finally:
        browser.close()


def test_missing_forged_expired_and_revoked_credentials_are_refused_at_the_handshake(socket_stack):
    settings = get_settings()
    base = socket_stack.sockets[0]
    expired, _ = issue_socket_token("someone", dataclasses.replace(settings, socket_token_ttl_s=-30))
    forged, _ = issue_socket_token("someone", dataclasses.replace(settings, socket_token_secret="not-the-secret-" * 4))
    unsigned = jwt.encode(
        {"sub": "someone", "exp": int(time.time()) + 600, "aud": "vy-finance-payments:socket"},
        key=None,
        algorithm="none",
    )
    before = socket_stack.metric(base, "payments_socket_refused_total")
    for auth in (
        {},
        {"token": expired},
        {"token": forged},
        {"token": unsigned},
        {"apiKey": "not-a-key"},
        {"token": "garbage"},
        {"apiKey": "\ud800"},  # not even text: refused, never a traceback
    ):
        client = SocketClient(
            base, **({"token": auth["token"]} if "token" in auth else {"api_key": auth.get("apiKey")})
        )
        with pytest.raises(socketio.exceptions.ConnectionError) as refusal:
            client.connect()
        assert "/finance-payments" in str(refusal.value)
        (error,) = client.wait_for("connect_error", timeout=5)
        assert error["data"]["code"] == "unauthorized" and "API key or customer token" in error["message"]
        client.close()
    assert socket_stack.metric(base, "payments_socket_refused_total") - before == 7
    # A token is only had with an API key.
    assert requests.post(f"{socket_stack.api}/socket-tokens", json={"customerId": "x"}, timeout=10).status_code == 401


def test_a_token_that_expires_while_connected_is_told_so_and_disconnected(socket_stack):
    short, _ = issue_socket_token("soon-gone", dataclasses.replace(get_settings(), socket_token_ttl_s=2))
    browser = SocketClient(socket_stack.sockets[0], token=short).connect()
    try:
        time.sleep(2.5)
        refused(browser.call("list-payment-intents", {}), "unauthorized")
        assert browser.wait_for("session-expired")[0]["code"] == "unauthorized"
        deadline = time.monotonic() + 10
        while browser.connected and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not browser.connected
    finally:
        browser.close()


def test_an_origin_not_allowed_is_refused(socket_stack):
    client = SocketClient(socket_stack.sockets[0], api_key=API_KEY, headers={"Origin": "https://evil.example"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect()
    client.close()


def test_an_idempotency_key_replays_the_first_answer_per_caller_and_another_body_is_refused(socket_stack, stripe_api):
    owner = customer()
    browser = SocketClient(socket_stack.sockets[0], token=socket_stack.token(owner)).connect()
    again = SocketClient(socket_stack.sockets[1], token=socket_stack.token(owner)).connect()
    try:
        vault(browser, stripe_api)
        key = f"ws-{uuid.uuid4()}"
        create = {"amount": 1300, "currency": "usd", "confirm": True, "idempotencyKey": key}
        first = ok(browser.call("create-payment-intent", create))
        assert ok(again.call("create-payment-intent", create))["id"] == first["id"]  # a retry from a new socket
        refused(browser.call("create-payment-intent", {**create, "amount": 1400}), "idempotency_key_reused")
        listed = ok(browser.call("list-payment-intents", {}))
        assert [i["id"] for i in listed["data"]] == [first["id"]]  # charged once
        (charged,) = intents_of_customers(stripe_api, [owner])  # and once at Stripe
        assert (charged["id"], charged["status"]) == (first["stripePaymentIntentId"], "succeeded")
    finally:
        browser.close()
        again.close()


def _webhook(socket_stack, stripe_api, stripe_intent_id: str) -> None:
    """Stripe tells the service the intent moved: a signed event with the intent as Stripe has it."""
    at_stripe = stripe_api.v1.payment_intents.retrieve(stripe_intent_id).to_dict()
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": f"payment_intent.{at_stripe['status']}",
            "created": int(time.time()) + 1,
            "data": {"object": at_stripe},
        }
    )
    answer = requests.post(
        f"{socket_stack.api}/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def test_a_webhook_that_moves_an_intent_is_pushed_once_to_its_sockets_on_every_process(
    socket_stack, server_socket, stripe_api, localstripe_url
):
    owner = customer()
    token = socket_stack.token(owner)
    on_a = SocketClient(socket_stack.sockets[0], token=token).connect()
    on_b = SocketClient(socket_stack.sockets[1], token=token).connect()
    stranger = SocketClient(socket_stack.sockets[1], token=socket_stack.token(customer())).connect()
    watcher = SocketClient(socket_stack.sockets[1], api_key=API_KEY).connect()
    try:
        vault(on_a, stripe_api, number=THREE_D_SECURE)
        intent = ok(
            on_a.call(
                "create-payment-intent", {"amount": 2100, "currency": "usd", "confirm": True, "orderId": "order-77"}
            )
        )
        assert intent["status"] == "requires_action"
        assert (
            ok(watcher.call("subscribe-payment-intent", {"paymentIntentId": intent["id"]}))["status"]
            == "requires_action"
        )
        pushed_before = sum(socket_stack.metric(b, "payments_socket_pushes_total") for b in socket_stack.sockets)
        requests.post(
            f"{localstripe_url}/v1/payment_intents/{intent['stripePaymentIntentId']}/_authenticate",
            data={"client_secret": intent["clientSecret"], "success": "true", "key": "pk_test_browser"},
            timeout=10,
        ).raise_for_status()
        _webhook(socket_stack, stripe_api, intent["stripePaymentIntentId"])
        for client in (on_a, on_b, watcher):
            push = client.wait_for(
                "payment-status-update",
                lambda p: p["paymentIntentId"] == intent["id"] and p["status"] == "succeeded",
                60,
            )[0]
            assert push == {
                "paymentIntentId": intent["id"],
                "orderId": "order-77",
                "subscriptionId": None,
                "status": "succeeded",
                "intentStatus": "succeeded",
                "previousStatus": "requires_action",
                "errorCode": None,
                "errorMessage": None,
                "version": push["version"],
                "occurredAt": push["occurredAt"],
            }
        # A later change on the same partition of the status topic (keyed by intent, crc32 like the producer), heard
        # by every socket: a duplicate of the first push would have come before it.
        ok(watcher.call("register-user", {"userId": owner}))
        partition = zlib.crc32(intent["id"].encode()) % 2
        for _ in range(12):
            later = ok(on_a.call("create-payment-intent", {"amount": 500, "currency": "usd"}))
            if zlib.crc32(later["id"].encode()) % 2 == partition:
                break
        else:
            raise AssertionError("no intent on the first one's partition in 12 tries")
        for client in (on_a, on_b, watcher):
            client.wait_for("payment-status-update", lambda p: p["paymentIntentId"] == later["id"], 60)
        for client in (on_a, on_b, watcher):
            assert [p["status"] for p in client.pushes(intent["id"])].count("succeeded") == 1
        assert stranger.pushes(intent["id"]) == []  # another customer hears nothing of it
        # The gateway's webhook handler's event, to the intent's room: its subscriber hears it, its customer's
        # sockets (in the customer's room only) do not.
        (result,) = watcher.received("payment-status-update-result")
        assert result == ({**push, "error": None},)
        assert [c.received("payment-status-update-result") for c in (on_a, on_b, stranger)] == [[], [], []]
        # One process consumed the change; the queue carried it to the sockets of the other.
        line = f"pushed {intent['id']} version {push['version']} (succeeded)"
        logs = [(socket_stack.log_dir / f"{name}.log").read_text() for name in ("sockets-a", "sockets-b")]
        assert sorted(text.count(line) for text in logs) == [0, 1]
        pushed = sum(socket_stack.metric(b, "payments_socket_pushes_total") for b in socket_stack.sockets)
        assert pushed > pushed_before
    finally:
        for client in (on_a, on_b, stranger, watcher):
            client.close()


def test_a_declined_payment_is_pushed_as_failed_with_its_error(socket_stack, stripe_api):
    browser = SocketClient(socket_stack.sockets[0], token=socket_stack.token(customer())).connect()
    try:
        vault(browser, stripe_api, number=DECLINED)
        declined = refused(
            browser.call("create-payment-intent", {"amount": 900, "currency": "usd", "confirm": True}), "card_declined"
        )
        intent_id = declined["details"]["paymentIntentId"]
        push = browser.wait_for(
            "payment-status-update", lambda p: p["paymentIntentId"] == intent_id and p["status"] == "failed", 60
        )[0]
        assert (push["intentStatus"], push["errorCode"]) == ("requires_payment_method", "card_declined")
        assert push["errorMessage"]
    finally:
        browser.close()


def test_a_socket_that_reconnects_and_subscribes_again_learns_the_status_now_and_hears_what_follows(
    socket_stack, server_socket, stripe_api
):
    owner = customer()
    vault(server_socket, stripe_api, owner)
    intent = ok(
        server_socket.call(
            "create-payment-intent",
            {"customerId": owner, "amount": 1700, "currency": "usd", "captureMethod": "manual", "confirm": True},
        )
    )
    watcher = SocketClient(socket_stack.sockets[1], api_key=API_KEY).connect()
    ok(watcher.call("subscribe-payment-intent", {"paymentIntentId": intent["id"]}))
    watcher.close()
    ok(server_socket.call("capture-payment-intent", {"paymentIntentId": intent["id"], "amountToCapture": 1000}))
    back = SocketClient(socket_stack.sockets[1], api_key=API_KEY).connect()
    try:
        now = ok(back.call("subscribe-payment-intent", {"paymentIntentId": intent["id"]}))
        assert now["status"] == "succeeded"  # what happened while away is in the answer
        ok(server_socket.call("create-refund", {"paymentIntentId": intent["id"], "amount": 1000}))
        other = ok(
            server_socket.call(
                "create-payment-intent",
                {"customerId": owner, "amount": 600, "currency": "usd", "captureMethod": "manual", "confirm": True},
            )
        )
        ok(back.call("subscribe-payment-intent", {"paymentIntentId": other["id"]}))
        ok(
            server_socket.call(
                "cancel-payment-intent", {"paymentIntentId": other["id"], "cancellationReason": "abandoned"}
            )
        )
        assert (
            back.wait_for(
                "payment-status-update", lambda p: p["paymentIntentId"] == other["id"] and p["status"] == "canceled", 60
            )[0]["previousStatus"]
            == "requires_capture"
        )
        ok(back.call("unsubscribe-payment-intent", {"paymentIntentId": other["id"]}))
    finally:
        back.close()


def test_requests_are_counted_with_door_websocket_and_connections_by_kind(socket_stack):
    base = socket_stack.sockets[1]
    client = SocketClient(base, api_key=API_KEY).connect()
    try:
        ok(client.call("list-payment-intents", {"customerId": customer()}))
        text = requests.get(f"{base}/metrics", timeout=10).text
        assert (
            'payments_operation_seconds_count{door="websocket",operation="list-payment-intents",stage="door"}' in text
        )
        assert socket_stack.metric(base, 'payments_socket_connections{kind="server"}') >= 1
    finally:
        client.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_when_a_socket_process_goes_the_other_takes_its_partitions_and_every_change_is_still_pushed(
    socket_stack, stripe_api, how
):
    owner = customer()
    browser = SocketClient(socket_stack.sockets[1], token=socket_stack.token(owner)).connect()
    merchant = SocketClient(socket_stack.sockets[1], api_key=API_KEY).connect()  # captures are the merchant's
    try:
        vault(browser, stripe_api)
        authorised: list[dict] = []
        # Intents on both partitions of the status topic (the producer partitions by crc32 of the key): one of them
        # was the other process's.
        while len({zlib.crc32(i["id"].encode()) % 2 for i in authorised}) < 2 or len(authorised) < 3:
            create = {"amount": 1000, "currency": "usd", "captureMethod": "manual", "confirm": True}
            authorised.append(ok(browser.call("create-payment-intent", create)))
            assert len(authorised) < 12
        gone = socket_stack.processes.pop("sockets-a")
        gone.send_signal(how)
        gone.wait(30)
        for intent in authorised:
            ok(merchant.call("capture-payment-intent", {"paymentIntentId": intent["id"]}))
        for intent in authorised:
            browser.wait_for(
                "payment-status-update",
                lambda p, i=intent: p["paymentIntentId"] == i["id"] and p["status"] == "succeeded",
                60,
            )
    finally:
        browser.close()
        merchant.close()
        socket_stack.start_sockets("sockets-a")


# -- the gateway's rooms: the handshake's userId, `join`, and its webhook handler's status events


def as_user(base: str, user: str) -> str:
    """The door's URL with the gateway's handshake query `?userId=`."""
    return f"{base}?userId={urllib.parse.quote(user, safe='')}"


def test_the_handshake_user_id_and_a_join_of_a_user_room_hear_that_customers_pushes(
    socket_stack, server_socket, stripe_api
):
    owner = customer()
    listener = SocketClient(as_user(socket_stack.sockets[1], owner), api_key=API_KEY).connect()
    joiner = SocketClient(socket_stack.sockets[0], api_key=API_KEY).connect()
    # A customer token naming its own customer is accepted (it hears that room anyway).
    own = SocketClient(as_user(socket_stack.sockets[0], owner), token=socket_stack.token(owner)).connect()
    try:
        joined = ok(joiner.call("join", {"room": owner}))
        assert joined == {"room": owner, "success": True, "userId": owner}
        assert joiner.wait_for("join-result")[0] == joined
        vault(server_socket, stripe_api, owner)
        create = {"customerId": owner, "amount": 1100, "currency": "usd", "confirm": True}
        intent = ok(server_socket.call("create-payment-intent", create))
        for client in (listener, joiner, own):
            client.wait_for(
                "payment-status-update",
                lambda p: p["paymentIntentId"] == intent["id"] and p["status"] == "succeeded",
                60,
            )
    finally:
        for client in (listener, joiner, own):
            client.close()


def test_a_handshake_user_id_outside_the_tokens_scope_or_not_an_id_is_refused(socket_stack):
    mine, theirs = customer(), customer()
    base = socket_stack.sockets[0]
    before = socket_stack.metric(base, "payments_socket_refused_total")
    for url, credentials, code in (
        (as_user(base, theirs), {"token": socket_stack.token(mine)}, "not_found"),
        (as_user(base, f" {theirs}"), {"api_key": API_KEY}, "validation_error"),
        (as_user(base, "x" * 256), {"api_key": API_KEY}, "validation_error"),
    ):
        client = SocketClient(url, **credentials)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect()
        (error,) = client.wait_for("connect_error", timeout=5)
        assert error["data"]["code"] == code and error["message"] == error["data"]["message"]
        client.close()
    assert socket_stack.metric(base, "payments_socket_refused_total") - before == 3


def test_join_of_an_own_intent_answers_join_result_and_its_room_hears_the_gateways_status_result(
    socket_stack, server_socket, stripe_api
):
    owner = customer()
    token = socket_stack.token(owner)
    browser = SocketClient(socket_stack.sockets[0], token=token).connect()
    elsewhere = SocketClient(socket_stack.sockets[1], token=token).connect()  # the same customer, not joined
    merchant = SocketClient(socket_stack.sockets[1], api_key=API_KEY).connect()
    try:
        vault(browser, stripe_api)
        intent = ok(browser.call("create-payment-intent", {"amount": 1900, "currency": "usd"}))
        joined = ok(browser.call("join", {"room": intent["id"]}))
        assert joined == {
            "room": intent["id"],
            "success": True,
            "paymentIntentId": intent["id"],
            "status": intent["status"],
            "errorCode": None,
            "errorMessage": None,
        }
        assert browser.wait_for("join-result")[0] == joined
        assert ok(merchant.call("join", {"room": intent["id"]}))["success"] is True  # a server: any intent
        ok(browser.call("confirm-payment-intent", {"paymentIntentId": intent["id"]}))
        for client in (browser, merchant):
            result = client.wait_for("payment-status-update-result", lambda r: r["status"] == "succeeded", 60)[0]
            assert (result["paymentIntentId"], result["intentStatus"], result["error"]) == (
                intent["id"],
                "succeeded",
                None,
            )
        # The customer's other socket hears the push in its customer's room, not the intent room's event.
        elsewhere.wait_for(
            "payment-status-update", lambda p: p["paymentIntentId"] == intent["id"] and p["status"] == "succeeded", 60
        )
        time.sleep(1)  # the result, emitted right after the push, would have come by now
        assert elsewhere.received("payment-status-update-result") == []
    finally:
        for client in (browser, elsewhere, merchant):
            client.close()


def test_join_of_another_customers_intent_or_user_answers_join_error_and_hears_nothing_of_it(
    socket_stack, server_socket, stripe_api
):
    mine, theirs = customer(), customer()
    vault(server_socket, stripe_api, theirs)
    other = ok(server_socket.call("create-payment-intent", {"customerId": theirs, "amount": 1000, "currency": "usd"}))
    snoop = SocketClient(socket_stack.sockets[1], token=socket_stack.token(mine)).connect()
    owner = SocketClient(socket_stack.sockets[0], token=socket_stack.token(theirs)).connect()
    try:
        for payload, code in (
            ({"room": other["id"]}, "not_found"),
            ({"room": theirs}, "not_found"),
            ({"room": "finance-payments"}, "not_found"),  # what the platform's web app joins: not a room of its own
            ({"room": ""}, "validation_error"),
            ({}, "validation_error"),
            ("not-an-object", "validation_error"),
        ):
            error = refused(snoop.call("join", payload), code)
            # The gateway's join-error is an object with a message: the structured error is one.
            assert snoop.wait_for("join-error", lambda e, error=error: e == error)[0]["message"]
        assert "Room field is required" in refused(snoop.call("join", {}), "validation_error")["message"]
        assert snoop.connected  # refusals are answers: the socket stays
        ok(owner.call("join", {"room": other["id"]}))
        ok(server_socket.call("confirm-payment-intent", {"paymentIntentId": other["id"]}))
        owner.wait_for(
            "payment-status-update-result",
            lambda r: r["paymentIntentId"] == other["id"] and r["status"] == "succeeded",
            60,
        )
        time.sleep(1)  # anything sent to the snoop would have come by now
        assert snoop.pushes(other["id"]) == [] and snoop.received("payment-status-update-result") == []
    finally:
        snoop.close()
        owner.close()


def test_a_declined_payment_reaches_the_intents_room_as_a_failed_result_with_its_error_never_an_error_event(
    socket_stack,
    stripe_api,
):
    browser = SocketClient(socket_stack.sockets[0], token=socket_stack.token(customer())).connect()
    try:
        vault(browser, stripe_api, number=DECLINED)
        intent = ok(browser.call("create-payment-intent", {"amount": 900, "currency": "usd"}))
        ok(browser.call("join", {"room": intent["id"]}))
        refused(browser.call("confirm-payment-intent", {"paymentIntentId": intent["id"]}), "card_declined")
        result = browser.wait_for("payment-status-update-result", lambda r: r["paymentIntentId"] == intent["id"], 60)[0]
        assert (result["status"], result["intentStatus"], result["errorCode"]) == (
            "failed",
            "requires_payment_method",
            "card_declined",
        )
        assert result["error"] and result["error"] == result["errorMessage"]
        # The gateway's -error said it could not record a webhook's status; a failed payment is a -result.
        assert browser.received("payment-status-update-error") == []
    finally:
        browser.close()
