"""The REST door's reply channel: answers come over one Redis subscription per web process, no Celery result is
stored, and the subscriber survives losing its Redis connection."""

from __future__ import annotations

import redis

from tests.api.conftest import Client
from tests.api.test_rest_api import customer, vault
from tests.support import services

REDIS_URL = "redis://127.0.0.1:6379/1"


def _reply_subscribers(conn: redis.Redis) -> list[str]:
    return [c.decode() for c in conn.pubsub_channels("vyp-rest-replies:*")]


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


def test_each_web_process_answers_through_its_own_subscribed_channel(client: Client):
    assert client.get("/healthz").ok
    assert client.get("/payment-intents/vypi_unknown").status_code == 404  # a read over the channel
    assert len(_reply_subscribers(redis.Redis.from_url(REDIS_URL))) >= 1


def test_the_reply_subscriber_comes_back_after_redis_drops_its_connection(client: Client, stripe_api):
    conn = redis.Redis.from_url(REDIS_URL)
    assert client.get("/payment-intents/vypi_unknown").status_code == 404
    subscribers = [c for c in conn.client_list() if c.get("name") == "vyp-rest-replies" and int(c["sub"]) > 0]
    assert subscribers
    for c in subscribers:
        conn.client_kill_filter(_id=c["id"])
    services.wait_until(lambda: _reply_subscribers(conn), 10, "the reply channel subscribed again")
    customer_id = customer()
    vault(client, stripe_api, customer_id)
    response = client.post("/payment-intents", json={"customerId": customer_id, "amount": 900, "currency": "usd"})
    assert response.status_code == 201, response.text
    assert client.get(f"/payment-intents/{response.json()['id']}").status_code == 200
