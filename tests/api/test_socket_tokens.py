"""POST /socket-tokens: a server's API key buys a browser a short-lived token for one customer."""

from __future__ import annotations

import time

import jwt
import pytest

from doors.auth import socket_token_claims
from settings import get_settings

pytestmark = pytest.mark.integration


def test_a_token_names_one_customer_expires_in_15_minutes_and_is_never_cached(client):
    answer = client.post("/socket-tokens", json={"customerId": "customer-tok-1"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"token", "customerId", "expiresAt", "expiresIn"}
    assert body["customerId"] == "customer-tok-1" and body["expiresIn"] == 900
    assert answer.headers["Cache-Control"] == "no-store"
    customer, expires = socket_token_claims(body["token"], get_settings())
    assert customer == "customer-tok-1" and abs(expires - (time.time() + 900)) < 30
    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "HS256"


def test_a_token_needs_an_api_key_and_a_valid_customer(client, anonymous):
    assert anonymous.post("/socket-tokens", json={"customerId": "c"}).status_code == 401
    for body in (
        {},
        {"customerId": ""},
        {"customerId": 42},
        {"customerId": "c", "extra": 1},
        {"customerId": "alice "},  # ids are compared byte for byte: written one way only
        {"customerId": " alice"},
        {"customerId": "ali\u0085ce"},
    ):
        answer = client.post("/socket-tokens", json=body)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "validation_error", body
    assert client.post("/socket-tokens", data="customerId=c").status_code == 415


def test_a_tampered_or_foreign_token_is_not_valid(client):
    token = client.post("/socket-tokens", json={"customerId": "victim"}).json()["token"]
    header, claims, signature = token.split(".")
    other = client.post("/socket-tokens", json={"customerId": "attacker"}).json()["token"].split(".")
    assert socket_token_claims(f"{header}.{other[1]}.{signature}", get_settings()) is None  # claims swapped
    assert socket_token_claims(f"{header}.{claims}.{other[2]}", get_settings()) is None
    assert socket_token_claims(token, get_settings()) == (
        "victim",
        jwt.decode(token, options={"verify_signature": False})["exp"],
    )


def test_without_a_secret_or_api_keys_no_token_is_made_or_accepted():
    import dataclasses

    import pytest

    from doors.auth import issue_socket_token

    keyed = get_settings()
    token, _ = issue_socket_token("someone", keyed)
    bare = dataclasses.replace(keyed, api_keys=(), socket_token_secret="")
    with pytest.raises(ValueError):
        issue_socket_token("someone", bare)
    assert socket_token_claims(token, bare) is None  # no secret anyone could compute from the source
