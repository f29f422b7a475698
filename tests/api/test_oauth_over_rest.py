"""OAuth2 access tokens end to end: gunicorn (gevent) checks tokens against a JWKS served on 127.0.0.1, and the real
worker creates the payment — each token's client a caller of its own for its idempotency keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.api.conftest import Client, running_api
from tests.conftest import API_KEY
from tests.support.oauth import AUDIENCE, ISSUER, JwksServer, Provider

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def provider() -> Provider:
    return Provider("key-1")


@pytest.fixture(scope="module")
def oauth_api(worker, provider: Provider) -> Iterator[str]:
    with JwksServer(provider).running() as jwks:
        env = {"OAUTH_ISSUER": ISSUER, "OAUTH_AUDIENCE": AUDIENCE, "OAUTH_JWKS_URL": jwks.url}
        with running_api("api-oauth.log", **env) as base:
            yield base


def intent_body(amount: int) -> dict:
    return {"customerId": "cust-oauth-e2e", "amount": amount, "currency": "usd"}


def test_a_token_creates_an_intent_through_the_worker_and_reads_it_back(oauth_api, provider):
    writer = Client(oauth_api, key=provider.token("checkout", scope="payments:write"))
    created = writer.post("/payment-intents", json=intent_body(1200), headers={"Idempotency-Key": uuid.uuid4().hex})
    assert created.status_code == 201, created.text
    intent = created.json()
    assert intent["amount"] == 1200 and intent["status"] == "requires_payment_method" and intent["clientSecret"]
    reader = Client(oauth_api, key=provider.token("reporting", scope="payments:read"))
    fetched = reader.get(f"/payment-intents/{intent['id']}")
    assert fetched.status_code == 200 and fetched.json()["id"] == intent["id"]
    # The reader may not pay, nor the writer give money back.
    refused = reader.post("/payment-intents", json=intent_body(100))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert 'error="insufficient_scope", scope="payments:write"' in refused.headers["WWW-Authenticate"]
    no_refund = writer.post("/refunds", json={"paymentIntentId": intent["id"]})
    assert no_refund.status_code == 403 and 'scope="payments:refund"' in no_refund.headers["WWW-Authenticate"]


def test_two_clients_sending_the_same_idempotency_key_never_get_each_others_payment(oauth_api, provider):
    key = f"order-{uuid.uuid4().hex}"
    first = Client(oauth_api, key=provider.token("shop-eu"))
    second = Client(oauth_api, key=provider.token("shop-us"))
    a = first.post("/payment-intents", json=intent_body(700), headers={"Idempotency-Key": key})
    b = second.post("/payment-intents", json=intent_body(900), headers={"Idempotency-Key": key})
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"] and b.json()["amount"] == 900  # not 422 idempotency_key_reused
    assert "Idempotent-Replayed" not in b.headers
    again = first.post("/payment-intents", json=intent_body(700), headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.json()["id"] == a.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # An API key caller with that very key is a third caller.
    keyed = Client(oauth_api, key=API_KEY).post(
        "/payment-intents", json=intent_body(300), headers={"Idempotency-Key": key}
    )
    assert keyed.status_code == 201 and keyed.json()["id"] not in {a.json()["id"], b.json()["id"]}


def test_an_expired_token_is_refused_before_anything_is_queued(oauth_api, provider):
    expired = Client(oauth_api, key=provider.token(exp=int(time.time()) - 600))
    answer = expired.post("/payment-intents", json=intent_body(100))
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    assert "Idempotency-Key" not in answer.headers
