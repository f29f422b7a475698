"""OAuth2 bearer tokens (JWT) at the REST door, in process: which tokens are accepted, which refused and how, what
each scope opens, and that each token's client is a caller of its own. The task behind a route is stubbed: these are
the door's checks (tests/api/test_oauth_over_rest.py runs a token through the real worker)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from api import create_app
from doors.oauth import JwtVerifier, KeysUnavailable, TokenRefused, caller_id
from registry import OPERATIONS
from settings import get_settings
from tests.support.oauth import (
    ALL_SCOPES,
    AUDIENCE,
    HS256_SECRET,
    ISSUER,
    JwksServer,
    Provider,
    access_claims,
    forged,
    hs256_token,
)

API_KEY = "k1"
# What each operation asks of a token, written out here rather than derived from the code under test.
NEEDED_SCOPE = {
    "create-payment-intent": "payments:write",
    "get-payment-intent": "payments:read",
    "get-ztracking-payment-intent": "payments:read",
    "create-refund": "payments:refund",
    "get-refund": "payments:read",
    "create-payment-method": "payments:write",
    "list-payment-methods": "payments:read",
    "delete-payment-method": "payments:write",
    "confirm-payment-intent": "payments:write",
    "capture-payment-intent": "payments:write",
    "cancel-payment-intent": "payments:write",
    "get-payment-intent-status": "payments:read",
    "list-payment-intents": "payments:read",
    "list-refunds": "payments:read",
    "retry-payment-attempt": "payments:write",
    "payment-status-update": "payments:write",
}


@pytest.fixture(scope="module")
def provider() -> Provider:
    return Provider("key-1", "key-2")


def make_app(**oauth: Any) -> Any:
    settings = dataclasses.replace(get_settings(), api_keys=(API_KEY, "dotted.api.key"), **oauth)
    return create_app(settings)


@pytest.fixture()
def jwks_file(provider: Provider, tmp_path: Path) -> Path:
    return provider.write_jwks(tmp_path / "jwks.json")


@pytest.fixture()
def app(jwks_file: Path) -> Any:
    """RS256 from a JWKS file and HS256 with a secret."""
    return make_app(
        oauth_issuer=ISSUER,
        oauth_audience=AUDIENCE,
        oauth_jwks_file=str(jwks_file),
        oauth_hs256_secret=HS256_SECRET,
    )


@pytest.fixture()
def jwks_only_app(jwks_file: Path) -> Any:
    return make_app(oauth_issuer=ISSUER, oauth_audience=AUDIENCE, oauth_jwks_file=str(jwks_file))


@pytest.fixture()
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every dispatch the door makes, answered at once (no worker: the checks under test come before it)."""
    import api.routes

    calls: list[dict[str, Any]] = []

    def run_operation(operation, payload, **kwargs):
        calls.append({"operation": operation.name, "payload": payload, **kwargs})
        return {"response": {"id": "vypi_01stubbed"}}

    monkeypatch.setattr(api.routes, "run_operation", run_operation)
    return calls


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_intent(client: Any, token: str, key: str | None = None, amount: int = 500) -> Any:
    headers = bearer(token) | ({"Idempotency-Key": key} if key else {})
    return client.post(
        "/payment-intents", json={"customerId": "cust-oauth", "amount": amount, "currency": "usd"}, headers=headers
    )


def test_an_rs256_token_from_the_jwks_file_is_accepted_and_its_client_is_its_own_caller(app, provider, dispatched):
    http = app.test_client()
    answer = create_intent(http, provider.token("shop-backend"), key="order-1")
    assert answer.status_code == 201, answer.json
    scoped = dispatched[-1]["idempotency_key"]
    assert re.fullmatch(r"rest:oauth:[0-9a-f]{8}:shop-backend:order-1", scoped), scoped
    assert http.get("/refunds/vyre_x", headers=bearer(provider.token(kid="key-2"))).status_code == 200


def test_an_hs256_token_signed_with_the_shared_secret_is_accepted(app, dispatched):
    answer = create_intent(app.test_client(), hs256_token("hs-client"), key="k")
    assert answer.status_code == 201
    assert ":hs-client:k" in dispatched[-1]["idempotency_key"]


def test_a_jwks_url_is_fetched_once_and_cached_across_requests(provider, dispatched):
    with JwksServer(provider).running() as jwks:
        app = make_app(oauth_issuer=ISSUER, oauth_audience=AUDIENCE, oauth_jwks_url=jwks.url)
        http = app.test_client()
        for kid in ("key-1", "key-2", "key-1"):
            assert http.get("/refunds/vyre_x", headers=bearer(provider.token(kid=kid))).status_code == 200
        assert jwks.fetches == 1
        unknown = http.get("/refunds/vyre_x", headers=bearer(provider.token(kid="key-9")))
        assert unknown.status_code == 401 and 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
        # A kid it has never heard of refetches at most once per cooldown: forged kids cannot flood the provider.
        for _ in range(5):
            http.get("/refunds/vyre_x", headers=bearer(provider.token(kid="key-9")))
        assert jwks.fetches == 1


def test_a_key_the_provider_adds_later_is_fetched_when_a_token_first_names_it(tmp_path):
    rotating = Provider("old")
    with JwksServer(rotating).running() as jwks:
        verifier = JwtVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks.url, refresh_cooldown_s=0)
        assert verifier.verify(rotating.token("c", kid="old")).scopes == frozenset(ALL_SCOPES.split())
        rotating.add_key("new")
        assert verifier.verify(rotating.token("c", kid="new")).caller_id.endswith(":c")
        assert jwks.fetches == 2
    # The same for a JWKS file, read again once it changed.
    path = rotating.write_jwks(tmp_path / "jwks.json")
    from_file = JwtVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(path))
    rotating.add_key("newer")
    with pytest.raises(TokenRefused):
        from_file.verify(rotating.token("c", kid="newer"))
    time.sleep(0.01)
    rotating.write_jwks(path)
    assert from_file.verify(rotating.token("c", kid="newer")).caller_id.endswith(":c")


def refused_tokens(provider: Provider) -> dict[str, str]:
    stranger = Provider("key-1")  # its own key under our provider's kid: a forged signature
    pem = provider.public_pem("key-1")
    return {
        "expired": provider.token(exp=int(time.time()) - 120),
        "issued for another API": provider.token(aud="another-api"),
        "from another issuer": provider.token(iss="https://evil.example"),
        "without exp": provider.token(drop=("exp",)),
        "without aud": provider.token(drop=("aud",)),
        "without iss": provider.token(drop=("iss",)),
        "an unknown kid": provider.token(kid="key-9"),
        "no kid": provider.token(kid=None, key=provider.keys["key-1"]),
        "another key's signature": provider.token(key=stranger.keys["key-1"]),
        "alg none": forged({"alg": "none", "typ": "JWT"}, access_claims("c", ALL_SCOPES), None),
        "alg None, with a kid": forged({"alg": "None", "kid": "key-1"}, access_claims("c", ALL_SCOPES), None),
        "HS256 keyed with the RSA public key": forged(
            {"alg": "HS256", "typ": "JWT", "kid": "key-1"}, access_claims("c", ALL_SCOPES), pem
        ),
        "HS256 with another secret": hs256_token(secret="not-the-secret-but-32-bytes-long-anyway"),
        "RS512": jwt.encode(
            access_claims("c", ALL_SCOPES), provider.keys["key-1"], algorithm="RS512", headers={"kid": "key-1"}
        ),
        "no client": provider.token(drop=("client_id", "sub")),
        "not yet valid": provider.token(nbf=int(time.time()) + 600),
        "exp not a number": provider.token(exp="tomorrow"),
        # The attacker's own key offered in the header (`jwk`, `jku`): never used, the JWKS alone names keys.
        "its own key in the header": jwt.encode(
            access_claims("c", ALL_SCOPES),
            stranger.keys["key-1"],
            algorithm="RS256",
            headers={"kid": "key-1", "jku": "http://127.0.0.1:9/jwks.json", "jwk": stranger.jwks()["keys"][0]},
        ),
        "a tampered payload": tampered(provider.token("victim")),
        "not base64": "abc.def.ghi",
    }


def tampered(token: str) -> str:
    header, _, signature = token.split(".")
    claims = base64.urlsafe_b64encode(b'{"iss":"x"}').rstrip(b"=").decode()
    return f"{header}.{claims}.{signature}"


@pytest.mark.parametrize("fixture", ["app", "jwks_only_app"])
def test_a_token_that_is_not_valid_is_401_unauthorized_with_an_invalid_token_challenge(
    fixture, request, provider, dispatched
):
    http = request.getfixturevalue(fixture).test_client()
    for name, token in refused_tokens(provider).items():
        answer = http.post("/refunds", json={"paymentIntentId": "vypi_x"}, headers=bearer(token))
        assert answer.status_code == 401, name
        assert answer.json["error"]["code"] == "unauthorized", name
        challenge = answer.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, (name, challenge)
    assert dispatched == []


def test_hs256_is_refused_when_no_secret_is_configured_even_when_signed_with_a_real_key(jwks_only_app, dispatched):
    answer = create_intent(jwks_only_app.test_client(), hs256_token())
    assert answer.status_code == 401 and "algorithm" in answer.json["error"]["message"]
    assert dispatched == []


def test_the_reason_of_a_refusal_is_answered(app, provider):
    http = app.test_client()
    reasons = {
        "expired": provider.token(exp=int(time.time()) - 120),
        "(aud)": provider.token(aud="another-api"),
        "(iss)": provider.token(iss="https://evil.example"),
        "(kid)": provider.token(kid="key-9"),
        "'exp'": provider.token(drop=("exp",)),
    }
    for reason, token in reasons.items():
        answer = http.get("/refunds/vyre_x", headers=bearer(token))
        assert reason in answer.json["error"]["message"] and reason in answer.headers["WWW-Authenticate"]


def test_an_audience_list_naming_this_api_among_others_is_accepted(app, provider, dispatched):
    token = provider.token(aud=["another-api", AUDIENCE])
    assert app.test_client().get("/refunds/vyre_x", headers=bearer(token)).status_code == 200


def test_the_leeway_allows_a_little_clock_skew_and_no_more(app, provider, dispatched):
    http = app.test_client()
    just_expired = provider.token(exp=int(time.time()) - 5)  # within OAUTH_LEEWAY_S (30)
    assert http.get("/refunds/vyre_x", headers=bearer(just_expired)).status_code == 200
    long_expired = provider.token(exp=int(time.time()) - 60)
    assert http.get("/refunds/vyre_x", headers=bearer(long_expired)).status_code == 401


def test_each_operation_needs_its_scope_and_lacking_it_is_403_insufficient_scope(app, provider, dispatched):
    http = app.test_client()
    rules = {
        rule.endpoint.rpartition(".")[2]: (rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert set(NEEDED_SCOPE) == set(OPERATIONS) - {"process-stripe-webhook"}
    for name, needed in NEEDED_SCOPE.items():
        rule, method = rules[name]
        path = re.sub(r"<(?:\w+:)?(\w+)>", "vypi_x", rule.rule)
        others = " ".join(scope for scope in ALL_SCOPES.split() if scope != needed)
        denied = http.open(path, method=method, json={}, headers=bearer(provider.token(scope=others)))
        assert denied.status_code == 403, name
        assert denied.json["error"]["code"] == "forbidden" and denied.json["error"]["details"] == {"scope": needed}
        assert denied.headers["WWW-Authenticate"] == (
            f'Bearer realm="vy-finance-payments", error="insufficient_scope", scope="{needed}"'
        )
        allowed = http.open(path, method=method, json={}, headers=bearer(provider.token(scope=needed)))
        assert allowed.status_code not in (401, 403), (name, allowed.json)
    assert dispatched == [] or all(call["operation"] in NEEDED_SCOPE for call in dispatched)


def test_a_token_without_any_scope_reads_nothing(app, provider, dispatched):
    answer = app.test_client().get("/refunds/vyre_x", headers=bearer(provider.token(scope=None)))
    assert answer.status_code == 403 and dispatched == []


def test_scopes_may_come_as_scp_a_list_as_some_providers_write_them(app, provider, dispatched):
    token = provider.token(scope=None, scp=["payments:read"])
    assert app.test_client().get("/refunds/vyre_x", headers=bearer(token)).status_code == 200


def test_a_refund_needs_payments_refund_and_payments_write_is_not_enough(app, provider, dispatched):
    http = app.test_client()
    body = {"paymentIntentId": "vypi_01hx0000000000000000000000", "amount": 100}
    writer = http.post("/refunds", json=body, headers=bearer(provider.token(scope="payments:read payments:write")))
    assert writer.status_code == 403 and 'scope="payments:refund"' in writer.headers["WWW-Authenticate"]
    refunder = http.post("/refunds", json=body, headers=bearer(provider.token(scope="payments:refund")))
    assert refunder.status_code == 201 and [c["operation"] for c in dispatched] == ["create-refund"]


def test_the_operator_page_stays_api_key_only_and_socket_tokens_need_payments_write(app, provider):
    http = app.test_client()
    page = http.get("/ops/", headers=bearer(provider.token(scope=ALL_SCOPES)))
    assert page.status_code == 403 and page.json["error"]["code"] == "forbidden"
    minted = http.post(
        "/socket-tokens", json={"customerId": "c1"}, headers=bearer(provider.token(scope="payments:write"))
    )
    assert minted.status_code == 200 and minted.json["customerId"] == "c1"
    reader = http.post(
        "/socket-tokens", json={"customerId": "c1"}, headers=bearer(provider.token(scope="payments:read"))
    )
    assert reader.status_code == 403


def test_two_clients_with_the_same_idempotency_key_never_share_it(app, provider, dispatched):
    http = app.test_client()
    for token in (provider.token("client-a"), provider.token("client-b"), provider.token("client-a"), hs256_token()):
        assert create_intent(http, token, key="same-key").status_code == 201
    assert create_intent(http, API_KEY, key="same-key").status_code == 201
    keys = [call["idempotency_key"] for call in dispatched]
    assert keys[0] == keys[2]  # the same client: the same scope, so its retry replays
    assert len({keys[0], keys[1], keys[3], keys[4]}) == 4


def test_the_issuer_is_part_of_the_caller_so_another_providers_client_of_the_same_name_is_another_caller():
    assert caller_id(ISSUER, "shop") != caller_id("https://other.example", "shop")
    assert caller_id(ISSUER, "shop") == caller_id(ISSUER, "shop")


@pytest.mark.parametrize(
    "client",
    ["someone@example.com", "https://apps.example/client", "a" * 65, "spaces in it", "colon:in:it", "é", "#x"],
)
def test_a_client_id_that_is_not_a_short_safe_name_is_named_by_its_hash(client):
    named = caller_id(ISSUER, client)
    assert re.fullmatch(r"oauth:[0-9a-f]{8}:#[0-9a-f]{32}", named), named
    assert "@" not in named and len(named) <= 64


def test_the_client_is_client_id_else_azp_else_sub(app, provider, dispatched):
    http = app.test_client()
    tokens = [
        provider.token("cid", azp="the-azp", sub="the-sub"),
        provider.token(drop=("client_id",), azp="the-azp", sub="the-sub"),
        provider.token(drop=("client_id",), sub="the-sub"),
    ]
    for token in tokens:
        assert create_intent(http, token, key="k").status_code == 201
    assert [call["idempotency_key"].split(":")[3] for call in dispatched] == ["cid", "the-azp", "the-sub"]


def test_api_keys_still_work_unchanged_beside_tokens(app, dispatched):
    http = app.test_client()
    assert http.get("/refunds/vyre_x", headers=bearer(API_KEY)).status_code == 200
    basic = base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert http.get("/refunds/vyre_x", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    # A key shaped like a JWT is still a key: keys are checked first.
    assert http.get("/refunds/vyre_x", headers=bearer("dotted.api.key")).status_code == 200
    wrong = http.get("/refunds/vyre_x", headers=bearer("not-a-key"))
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    scoped = create_intent(http, API_KEY, key="kk")
    assert scoped.status_code == 201
    assert dispatched[-1]["idempotency_key"] == f"rest:{hashlib.sha256(b'k1').hexdigest()[:16]}:kk"


def test_tokens_are_refused_while_oauth_is_not_configured(provider, dispatched):
    http = make_app().test_client()
    answer = http.get("/refunds/vyre_x", headers=bearer(provider.token()))
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    assert "API key is required" in answer.json["error"]["message"] and dispatched == []


def test_an_unreachable_jwks_url_is_503_service_unavailable_not_a_refusal(provider, dispatched):
    with JwksServer(provider).running() as jwks:
        url = jwks.url  # the port is closed once the server stops
    app = make_app(oauth_issuer=ISSUER, oauth_audience=AUDIENCE, oauth_jwks_url=url)
    answer = app.test_client().get("/refunds/vyre_x", headers=bearer(provider.token()))
    assert answer.status_code == 503 and answer.json["error"]["code"] == "service_unavailable"
    assert int(answer.headers["Retry-After"]) > 0 and dispatched == []


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"oauth_jwks_url": "https://idp.example/jwks"}, "OAUTH_ISSUER"),
        ({"oauth_issuer": ISSUER, "oauth_audience": AUDIENCE}, "OAUTH_JWKS_URL"),
        ({"oauth_issuer": ISSUER, "oauth_hs256_secret": HS256_SECRET}, "OAUTH_AUDIENCE"),
        ({"oauth_issuer": ISSUER, "oauth_audience": AUDIENCE, "oauth_hs256_secret": "short"}, "32 bytes"),
        ({"oauth_issuer": ISSUER, "oauth_audience": AUDIENCE, "oauth_jwks_url": "http://idp.example/jwks"}, "https"),
        (
            {
                "oauth_issuer": ISSUER,
                "oauth_audience": AUDIENCE,
                "oauth_jwks_url": "https://i/j",
                "oauth_jwks_file": "f",
            },
            "not both",
        ),
        ({"oauth_issuer": ISSUER, "oauth_audience": AUDIENCE, "oauth_jwks_file": "/nonexistent/jwks.json"}, "JWKS"),
        (
            {
                "oauth_issuer": ISSUER,
                "oauth_audience": "vy-finance-payments:socket",
                "oauth_hs256_secret": HS256_SECRET,
            },
            "Socket.IO",
        ),
    ],
)
def test_a_partial_or_unsafe_configuration_stops_the_door_with_a_clear_message(settings, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        make_app(**settings)


def test_no_token_is_ever_written_to_the_logs(app, provider, dispatched, caplog):
    good, expired = provider.token("logged-client"), provider.token(exp=int(time.time()) - 300)
    with caplog.at_level(logging.DEBUG):
        http = app.test_client()
        create_intent(http, good, key="log-key")
        http.get("/refunds/vyre_x", headers=bearer(expired))
        http.get("/ops/", headers=bearer(good))
    text = caplog.text + " ".join(repr(record.__dict__) for record in caplog.records)
    for token in (good, expired):
        assert token not in text and token.split(".")[2] not in text
    assert "access token refused: the token has expired" in caplog.text


def test_rate_limits_count_per_token_client(jwks_file, provider, dispatched):
    app = make_app(
        oauth_issuer=ISSUER,
        oauth_audience=AUDIENCE,
        oauth_jwks_file=str(jwks_file),
        rate_limit_server="3/minute",
        rate_limit_storage="memory://",
    )
    http = app.test_client()
    busy = [http.get("/refunds/vyre_x", headers=bearer(provider.token("busy"))).status_code for _ in range(4)]
    assert busy == [200, 200, 200, 429]
    assert http.get("/refunds/vyre_x", headers=bearer(provider.token("calm"))).status_code == 200


def test_the_verifier_says_keys_unavailable_rather_than_refusing_while_the_provider_is_away(provider):
    with JwksServer(provider).running() as jwks:
        url = jwks.url
    verifier = JwtVerifier(issuer=ISSUER, audience=AUDIENCE, jwks_url=url)
    with pytest.raises(KeysUnavailable):
        verifier.verify(provider.token())
