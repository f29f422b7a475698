"""Sentry events (captured through a custom transport) carry no card data, client secret, key or auth header."""

from __future__ import annotations

import dataclasses
import json

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from observability.sentry import init_sentry
from settings import get_settings

CARD = "4242424242424242"
CLIENT_SECRET = "pi_3Abc_secret_Xyz123"
STRIPE_KEY = "sk_test_51SentryProbeKey"
API_KEY = "sentry-probe-api-key"


class CapturingTransport(Transport):
    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.envelopes: list[str] = []

    def capture_envelope(self, envelope) -> None:
        self.envelopes.append(envelope.serialize().decode("utf-8", "replace"))


@pytest.fixture()
def sentry(monkeypatch):
    transport = CapturingTransport()
    settings = dataclasses.replace(
        get_settings(), sentry_dsn="https://public@127.0.0.1/1", node_env="staging", api_keys=(API_KEY,)
    )
    assert init_sentry(settings, "test", transport=transport, default_integrations=False)
    yield settings, transport
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None)


def test_a_web_failure_reaches_sentry_scrubbed(sentry, monkeypatch):
    import api.routes
    from api import create_app

    settings, transport = sentry
    app = create_app(dataclasses.replace(settings, sentry_dsn=""))  # Sentry is already on, with our transport

    def explode(operation, payload, **kwargs):
        stripe_key = STRIPE_KEY  # noqa: F841 (a local the SDK would record)
        raise RuntimeError(f"failed for card {CARD} with {CLIENT_SECRET}")

    monkeypatch.setattr(api.routes, "run_operation", explode)
    response = app.test_client().post(
        "/payment-intents",
        json={"customerId": "c", "amount": 100, "currency": "usd", "description": CARD},
        headers={"Authorization": f"Bearer {API_KEY}", "X-Trace-Id": "trace-for-sentry-1"},
    )
    assert response.status_code == 500 and response.json["traceId"] == "trace-for-sentry-1"
    sentry_sdk.flush()
    sent = "\n".join(transport.envelopes)
    assert "RuntimeError" in sent and "staging" in sent  # the event is there, with its environment
    assert '"traceId":"trace-for-sentry-1"' in sent.replace(" ", "")  # a tag: found by the trace a caller got
    for secret in (CARD, CLIENT_SECRET, STRIPE_KEY, API_KEY):
        assert secret not in sent


def test_a_task_failure_reaches_sentry_scrubbed(sentry, monkeypatch):
    from tasks.operations import TASKS

    _, transport = sentry
    operation = TASKS["get-refund"].operation

    def explode(ctx, inp):
        secrets = {"client_secret": CLIENT_SECRET, "number": CARD}  # noqa: F841
        raise RuntimeError(f"{STRIPE_KEY} {CLIENT_SECRET}")

    monkeypatch.setattr(type(operation), "resolve_handler", lambda self: explode)
    envelope = TASKS["get-refund"].apply(args=[{"refundId": "vyre_x"}, {"door": "test"}]).get()
    assert envelope["error"]["code"] == "internal_error"
    sentry_sdk.flush()
    sent = "\n".join(transport.envelopes)
    assert "operation failed unexpectedly" in sent
    for secret in (CARD, CLIENT_SECRET, STRIPE_KEY):
        assert secret not in sent


def test_without_a_dsn_sentry_stays_off():
    assert init_sentry(dataclasses.replace(get_settings(), sentry_dsn=""), "test") is False


def test_scrubbing_covers_nested_values():
    from observability.sentry import before_send

    event = {
        "extra": {"body": json.dumps({"card": {"number": CARD}, "client_secret": CLIENT_SECRET})},
        "request": {"headers": {"Authorization": f"Bearer {API_KEY}"}},
    }
    text = json.dumps(before_send(event, {}))
    assert CARD not in text and CLIENT_SECRET not in text and API_KEY not in text
