"""The process's one Stripe HTTP session: proxies read from the environment once, not on every call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

import settings
import stripe_client


@pytest.fixture()
def fresh_client() -> Iterator[None]:
    stripe_client.reset_client()
    yield
    stripe_client.reset_client()


def _session() -> Any:
    return stripe_client.client()._requestor._get_http_client()._session


def test_the_environment_proxy_for_stripe_is_read_once_when_the_client_is_made(fresh_client, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    session = _session()
    # Stripe's address goes through the proxy the environment named when the client was made ...
    assert session.proxies.get(settings.get_settings().stripe_api_url.split(":")[0]) == "http://proxy.invalid:3128"
    # ... and requests no longer reads the environment on each call (it cost a tenth of a create's CPU).
    assert session.trust_env is False
    calls: list[str] = []
    monkeypatch.setattr(requests.utils, "get_environ_proxies", lambda *a, **k: calls.append("read") or {})
    session.merge_environment_settings("http://127.0.0.1:1/v1/x", {}, None, None, None)
    assert calls == []


def test_a_stripe_address_the_environment_exempts_from_the_proxy_goes_direct(fresh_client, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert settings.get_settings().stripe_api_url.startswith("http://127.0.0.1:")  # the suite's localstripe
    assert _session().proxies == {}
