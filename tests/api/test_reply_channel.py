"""The REST door's reply channel: answers come over one Redis subscription per web process, no Celery result is
stored, and the subscriber survives losing its Redis connection."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import redis

from doors.dispatch import CHANNEL_PREFIX, RestReplies
from tests.api.conftest import Client, running_api
from tests.api.test_rest_api import customer, vault
from tests.conftest import REDIS_URL
from tests.support import services


def _reply_subscribers(conn: redis.Redis) -> list[str]:
    return [c.decode() for c in conn.pubsub_channels(f"{CHANNEL_PREFIX}:*")]


def _our_subscriber_connections(conn: redis.Redis) -> list[dict]:
    """This run's web processes' reply subscribers: pub/sub spans Redis databases, so other runs' are there too."""
    db = str(conn.connection_pool.connection_kwargs["db"])
    return [
        c
        for c in conn.client_list()
        if c.get("name") == CHANNEL_PREFIX and str(c.get("db")) == db and int(c["sub"]) > 0
    ]


def test_a_rest_answer_leaves_no_celery_result_in_redis(client: Client, stripe_api):
    customer_id = customer()
    vault(client, stripe_api, customer_id)
    conn = redis.Redis.from_url(REDIS_URL)
    before = set(conn.scan_iter("celery-task-meta-*"))
    response = client.post(
        "/payment-intents", json={"customerId": customer_id, "amount": 1700, "currency": "usd", "confirm": True}
    )
    assert response.status_code == 201
    secret = response.json()["clientSecret"]
    assert set(conn.scan_iter("celery-task-meta-*")) == before
    # Nothing in the result store holds the client secret the caller was just given.
    assert not any(secret.encode() in (conn.get(k) or b"") for k in conn.scan_iter("*") if conn.type(k) == b"string")


def test_a_rest_read_is_answered_through_a_web_process_s_own_subscribed_channel(client: Client):
    assert client.get("/payment-intents/vypi_unknown").status_code == 404  # a read over the channel
    conn = redis.Redis.from_url(REDIS_URL)
    channels = _reply_subscribers(conn)
    # Named after the web process (prefix:pid:random), and read by that process's one subscriber alone.
    assert any(channel.split(":")[1] != str(os.getpid()) for channel in channels)
    assert all(count == 1 for _, count in conn.pubsub_numsub(*channels))


def test_the_reply_subscriber_comes_back_after_redis_drops_its_connection(client: Client, stripe_api):
    conn = redis.Redis.from_url(REDIS_URL)
    assert client.get("/payment-intents/vypi_unknown").status_code == 404
    subscribers = _our_subscriber_connections(conn)  # every web process of this run (never another run's)
    assert subscribers
    for c in subscribers:
        conn.client_kill_filter(_id=c["id"])
    killed = {c["id"] for c in subscribers}
    services.wait_until(
        lambda: len([c for c in _our_subscriber_connections(conn) if c["id"] not in killed]) == len(subscribers),
        10,
        "every reply channel subscribed again",
    )
    customer_id = customer()
    vault(client, stripe_api, customer_id)
    response = client.post("/payment-intents", json={"customerId": customer_id, "amount": 900, "currency": "usd"})
    assert response.status_code == 201, response.text
    assert client.get(f"/payment-intents/{response.json()['id']}").status_code == 200


def test_without_its_reply_channel_the_door_refuses_with_503_and_dispatches_nothing(client: Client, mariadb):
    from models import IdempotencyRecord

    before = IdempotencyRecord.select().count()
    # The web's Redis is unreachable: no answer could come back, so nothing may be charged.
    with running_api("api-no-redis.log", CELERY_RESULT_BACKEND="redis://127.0.0.1:9/1") as base:
        response = Client(base).post(
            "/payment-intents", json={"customerId": customer(), "amount": 500, "currency": "usd"}
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert "Traceback" not in response.text
    # A request dispatched after it, on the same queue, is answered: a task dispatched anyway would have been taken
    # before it and claimed its key. Only that request's key is there (the count sees a claim).
    marker = client.post("/payment-intents", json={"customerId": customer(), "amount": 500, "currency": "usd"})
    assert marker.status_code == 201, marker.text
    assert IdempotencyRecord.select().count() == before + 1


def test_a_worker_keeps_publishing_an_answer_until_the_web_process_is_subscribed_again():
    from tasks import replies

    channel = f"{CHANNEL_PREFIX}:test:{uuid.uuid4().hex}"
    conn = redis.Redis.from_url(REDIS_URL)
    received: list[dict] = []

    def subscribe_late() -> None:
        time.sleep(0.5)  # the web process is between subscriptions (Redis restarted)
        pubsub = conn.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel)
        end = time.monotonic() + 10
        while not received and time.monotonic() < end:
            message = pubsub.get_message(timeout=0.5)
            if message:
                received.append(json.loads(message["data"]))
        pubsub.close()

    listener = threading.Thread(target=subscribe_late)
    listener.start()
    replies.deliver({"response": {"ok": True}}, {"reply": {"channel": channel, "id": "r1", "until": time.time() + 10}})
    listener.join(15)
    assert received == [{"id": "r1", "envelope": {"response": {"ok": True}}}]


def test_an_answer_nobody_can_receive_is_given_up_at_the_callers_deadline_without_raising():
    from tasks import replies

    channel = f"{CHANNEL_PREFIX}:test:{uuid.uuid4().hex}"
    until = time.time() + 1.0
    replies.deliver({"response": {}}, {"reply": {"channel": channel, "id": "r2", "until": until}})
    # It kept trying until its next pause would pass the deadline (a slow machine only makes that later), and
    # stopped there: it returned, and not long after (a margin a loaded machine keeps).
    assert until - replies.REST_RETRY_PAUSE_S[1] <= time.time() < until + 30


def test_no_reply_a_subscriber_received_is_lost_when_its_connection_is_killed_or_redis_restarts(tmp_path):
    from tests.support.private_servers import PrivateRedis

    with PrivateRedis(tmp_path, "replies") as server:
        door = RestReplies(server.url)
        try:
            assert door.ready.wait(10)
            admin = redis.Redis.from_url(server.url)
            publisher = redis.Redis.from_url(server.url)
            accepted: list[tuple[str, threading.Event]] = []  # published with a receiver: the worker stops there
            done = threading.Event()
            # A reply still in Redis's output buffer when the connection dies is lost to pub/sub by nature (the caller
            # gets 504 and replays with its key); drops here come between publishes, so only the door can lose one.
            between_publishes = threading.Lock()

            def publish_without_pause() -> None:
                while not done.is_set():
                    request_id, waiter = door.expect()
                    body = json.dumps({"id": request_id, "envelope": {"response": {"n": len(accepted)}}})
                    try:
                        with between_publishes:
                            received = publisher.publish(door.channel, body)
                    except redis.ConnectionError:
                        time.sleep(0.01)
                        continue
                    if received > 0:
                        accepted.append((request_id, waiter.event))

            thread = threading.Thread(target=publish_without_pause)
            thread.start()
            try:
                for _ in range(8):  # the window right after a drop is where a reply used to vanish
                    time.sleep(0.25)
                    with between_publishes:
                        for c in admin.client_list():
                            if c.get("name") == CHANNEL_PREFIX:
                                admin.client_kill_filter(_id=c["id"])
                with between_publishes:
                    server.restart(down_for_s=0.5)
                services.wait_until(lambda: door.ready.is_set(), 15, "the reply channel subscribed after the restart")
                time.sleep(0.5)
            finally:
                done.set()
                thread.join(10)
            assert len(accepted) > 100
            deadline = time.monotonic() + 5
            lost = [rid for rid, event in accepted if not event.wait(max(0.0, deadline - time.monotonic()))]
            assert lost == [], f"{len(lost)} of {len(accepted)} replies with a receiver never reached their request"
            # And a reply published now, after all of it, is received and handed over.
            request_id, waiter = door.expect()
            assert publisher.publish(door.channel, json.dumps({"id": request_id, "envelope": {"ok": True}})) == 1
            assert waiter.event.wait(5) and waiter.envelope == {"ok": True}
        finally:
            door.close()  # its listener would otherwise retry the stopped server for the rest of the run
