"""Rate limits scoped by kind of caller (issue 27), in process with the task stubbed: a server caller (API key, OAuth2
client) has RATE_LIMIT_SERVER (sized to the PRD's 1 000 intents/s) or its own RATE_LIMIT_CALLERS entry, a customer
token (the socket door's browsers) the tight RATE_LIMIT_CUSTOMER, Stripe's webhooks RATE_LIMIT_WEBHOOKS."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import pytest

import settings as settings_module
from api import create_app
from settings import DEFAULT_SERVER_RATE_LIMIT, get_settings
from socket_door.server import Caller, SocketLimits

KEYS = {"orders": "orders-key", "reports": "reports-key", "batch": "batch-key"}


@pytest.fixture()
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every dispatch the door makes, answered at once: these requests measure the limiter, not a worker."""
    import api.routes

    calls: list[str] = []

    def run_operation(operation: Any, payload: Any, **_: Any) -> dict[str, Any]:
        calls.append(operation.name)
        return {"response": {"id": "vyre_stubbed"}}

    monkeypatch.setattr(api.routes, "run_operation", run_operation)
    return calls


def make_app(**limits: Any) -> Any:
    settings = dataclasses.replace(
        get_settings(),
        api_keys=tuple(f"{name}:{key}" for name, key in KEYS.items()),
        rate_limit_storage="memory://",
        kafka_group=f"vyp-scoped-{uuid.uuid4().hex[:8]}",  # counters of its own
        **limits,
    )
    return create_app(settings)


def burst(app: Any, key: str, count: int) -> list[int]:
    http = app.test_client()
    return [http.get("/refunds/vyre_x", headers={"Authorization": f"Bearer {key}"}).status_code for _ in range(count)]


def test_a_server_key_under_the_default_limit_is_not_held_at_the_old_100_per_second(dispatched):
    app = make_app(rate_limit_server=DEFAULT_SERVER_RATE_LIMIT, rate_limit_callers={})
    started = time.monotonic()
    statuses = burst(app, KEYS["orders"], 150)
    # Within one second (the old default refused everything past 100 in it); a slower machine proves nothing here.
    if time.monotonic() - started >= 1.0:
        pytest.skip("150 requests took over a second on this machine")
    assert statuses == [200] * 150
    assert len(dispatched) == 150


def test_the_server_default_is_sized_to_the_prd_and_the_customer_one_to_a_browser(monkeypatch):
    from limits import parse_many

    for name in ("RATE_LIMIT", "RATE_LIMIT_SERVER", "RATE_LIMIT_CUSTOMER"):
        monkeypatch.delenv(name, raising=False)
    try:
        fresh = settings_module.reload_settings()
        # PRD: >= 1 000 intents/s across the cluster, and the order service is one caller.
        assert min(i.amount / i.get_expiry() for i in parse_many(fresh.rate_limit_server)) >= 1000
        assert max(i.amount / i.get_expiry() for i in parse_many(fresh.rate_limit_customer)) <= 20
    finally:
        monkeypatch.undo()
        settings_module.reload_settings()


def test_a_callers_own_limit_from_rate_limit_callers_applies_to_it_alone(dispatched):
    app = make_app(rate_limit_server="100/second", rate_limit_callers={"reports": "3/minute", "batch": ""})
    assert burst(app, KEYS["reports"], 5) == [200, 200, 200, 429, 429]
    limited = app.test_client().get("/refunds/vyre_x", headers={"Authorization": f"Bearer {KEYS['reports']}"})
    assert limited.json["error"]["code"] == "rate_limited" and limited.headers["RateLimit-Limit"] == "3"
    ok = app.test_client().get("/refunds/vyre_x", headers={"Authorization": f"Bearer {KEYS['orders']}"})
    assert ok.status_code == 200 and ok.headers["RateLimit-Limit"] == "100"  # the others keep the default
    # An empty entry lifts that caller's limit: no counting, no RateLimit headers.
    assert (
        burst(make_app(rate_limit_server="2/minute", rate_limit_callers={"batch": ""}), KEYS["batch"], 5) == [200] * 5
    )


def test_rate_limit_callers_can_set_a_limit_while_the_server_default_is_off(dispatched):
    app = make_app(rate_limit_server="", rate_limit_callers={"reports": "2/minute"})
    assert burst(app, KEYS["reports"], 3) == [200, 200, 429]
    assert burst(app, KEYS["orders"], 5) == [200] * 5


def test_a_customer_token_on_the_socket_door_has_the_tight_limit_and_a_server_key_its_own():
    limits = SocketLimits(
        dataclasses.replace(
            get_settings(),
            rate_limit_server="100/second",
            rate_limit_customer="3/minute",
            rate_limit_callers={"reports": "2/minute"},
            rate_limit_storage="memory://",
            kafka_group=f"vyp-scoped-{uuid.uuid4().hex[:8]}",
        )
    )
    browser = Caller(scope="c-0123456789abcdef", customer="cus_1", expires=int(time.time()) + 60)
    assert [limits.allow(browser) for _ in range(4)] == [True, True, True, False]
    server = Caller(scope="n:orders")
    assert all(limits.allow(server) for _ in range(50))  # far past the customer's 3
    assert [limits.allow(Caller(scope="n:reports")) for _ in range(3)] == [True, True, False]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DEFAULT_SERVER_RATE_LIMIT),
        ({"RATE_LIMIT": "100/second;5000/minute"}, "100/second;5000/minute"),  # a deployment's old setting stays
        ({"RATE_LIMIT": "", "RATE_LIMIT_SERVER": "3000/second"}, "3000/second"),
        ({"RATE_LIMIT": "50/second", "RATE_LIMIT_SERVER": ""}, ""),
    ],
)
def test_rate_limit_server_falls_back_to_the_old_rate_limit_then_the_default(monkeypatch, env, expected):
    for name in ("RATE_LIMIT", "RATE_LIMIT_SERVER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        assert settings_module.reload_settings().rate_limit_server == expected
    finally:
        monkeypatch.undo()
        settings_module.reload_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_CALLERS", "orders"),
        ("RATE_LIMIT_CALLERS", "orders=lots"),
        ("RATE_LIMIT_CALLERS", "9bad=10/second"),
        ("RATE_LIMIT_SERVER", "fast"),
        ("RATE_LIMIT_CUSTOMER", "20/fortnight"),
    ],
)
def test_a_malformed_limit_is_refused_at_start_with_its_setting_named(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    try:
        with pytest.raises(ValueError, match=r"RATE_LIMIT_CALLERS|not a rate limit"):
            settings_module.reload_settings()
    finally:
        monkeypatch.undo()
        settings_module.reload_settings()


def test_rate_limit_callers_reads_several_entries_with_multi_window_limits(monkeypatch):
    monkeypatch.setenv("RATE_LIMIT_CALLERS", "orders=8000/second;200000/minute, reports=10/second,batch=")
    try:
        callers = settings_module.reload_settings().rate_limit_callers
        assert callers == {"orders": "8000/second;200000/minute", "reports": "10/second", "batch": ""}
    finally:
        monkeypatch.undo()
        settings_module.reload_settings()
