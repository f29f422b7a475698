"""The operator page (/ops/): behind the API key, every number also a metric, a payment's timeline; and in a real
browser (Debian's Chromium through Playwright): no console error, the payment made here shown, a screenshot kept."""

from __future__ import annotations

import base64
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.api.test_metrics import samples
from tests.conftest import API_KEY, LOG_DIR, make_card

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def authorised_intent(client, stripe_api, amount: int = 4100, currency: str = "usd") -> dict:
    """A manual-capture intent confirmed with a new customer's default card: authorised, not captured yet."""
    owner = f"ops-{uuid.uuid4().hex[:10]}"
    method = {"customerId": owner, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True}
    assert client.post("/payment-methods", json=method).status_code == 201
    create = {"customerId": owner, "amount": amount, "currency": currency, "captureMethod": "manual", "confirm": True}
    return client.post("/payment-intents", json=create).json()


@contextmanager
def chromium_page(
    username: str, password: str, problems: list[str], **options: Any
) -> Iterator[tuple[Browser, BrowserContext, Page]]:
    """Chromium logged in as a person logs in: the browser answers the 401's Basic challenge with what they typed
    (no header set by hand). Every console error and page error is added to `problems`."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(http_credentials={"username": username, "password": password}, **options)
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield browser, context, page
        finally:
            browser.close()


def paid_and_refunded(client, stripe_api) -> dict:
    intent = authorised_intent(client, stripe_api)
    assert client.post(f"/payment-intents/{intent['id']}/capture", json={"amountToCapture": 3000}).status_code == 200
    assert client.post("/refunds", json={"paymentIntentId": intent["id"], "amount": 1000}).status_code == 201
    return intent


def test_the_ops_page_needs_the_api_key_and_offers_a_browser_basic(api_url, anonymous, client):
    refused = anonymous.get("/ops/")
    # One challenge per header: a browser offers its prompt only for a header that is Basic's alone.
    challenges = refused.raw.headers.getlist("WWW-Authenticate")
    assert refused.status_code == 401 and challenges == [
        'Basic realm="vy-finance-payments"',
        'Bearer realm="vy-finance-payments"',
    ]
    as_password = base64.b64encode(f"operator:{API_KEY}".encode()).decode()
    page = anonymous.get("/ops/", headers={"Authorization": f"Basic {as_password}"})
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    wrong = base64.b64encode(b"operator:not-the-key").decode()
    assert anonymous.get("/ops/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert "Basic" not in anonymous.get("/payment-methods").headers["WWW-Authenticate"]  # the API: Bearer only


def test_every_number_of_the_ops_page_is_also_a_metric(client, anonymous):
    page = client.get("/ops/").text
    found = samples(anonymous.get("/metrics").text)
    names = {name for name, _ in found}
    for metric in (
        "payments_dependency_up",
        "payments_claims",
        "payments_claims_oldest_seconds",
        "payments_webhook_events",
        "payments_webhook_backlog_oldest_seconds",
        "payments_outbox_waiting",
        "payments_outbox_waiting_oldest_seconds",
        "payments_queue_depth",
    ):
        assert metric in names, metric
    up = {
        dict(labels)["dependency"]: value for (name, labels), value in found.items() if name == "payments_dependency_up"
    }
    assert set(up) == {"database", "broker", "worker", "stripe", "kafka"} and up["database"] == 1.0
    for section in (
        "readiness",
        "queues",
        "outbox",
        "claims",
        "webhooks",
        "webhook-backlog",
        "dead-letters",
        "intents",
    ):
        assert f'id="{section}"' in page
    # Without Kafka the page says so rather than failing; with it, each dead-letter topic is counted.
    if up["kafka"] == 0.0:
        assert "unknown: Kafka does not answer" in page
    else:
        assert "payments_dlq_messages" in names and "create-payment-intent-dlq" in page


def test_a_payments_timeline_shows_each_version_its_cause_and_change_with_refunds_and_attempts(client, stripe_api):
    intent = paid_and_refunded(client, stripe_api)
    page = client.get(f"/ops/intents/{intent['id']}")
    assert page.status_code == 200
    text = page.text
    assert "create-payment-intent" in text and "capture-payment-intent" in text and "create-refund" in text
    assert "requires_capture → <strong>succeeded</strong>" in text  # the capture's change
    assert "amountRefunded: 0.00 USD → <strong>10.00 USD</strong>" in text
    # Money in the currency's major unit, times as UTC <time> elements.
    assert '<td class="n" id="amount">41.00 USD</td>' in text and '<td class="n">10.00 USD</td>' in text
    assert '<time datetime="' in text and ' UTC">' in text
    assert "41.00 USD" in client.get("/ops/").text
    assert text.count("<td>capture</td>") == 1 and text.count("<td>confirm</td>") == 1
    assert client.get("/ops/intents/vypi_nothing_here").status_code == 404
    assert client.get("/ops/intents/not an id").status_code == 404


def test_the_ops_page_in_chromium_shows_a_payment_made_here_with_no_console_error(api_url, client, stripe_api):
    intent = paid_and_refunded(client, stripe_api)
    problems: list[str] = []
    # The API key typed into the browser's Basic prompt.
    with chromium_page("operator", API_KEY, problems, locale="en-US", timezone_id="Asia/Tokyo") as (_, _, page):
        page.goto(f"{api_url}/ops/")
        expect(page.locator("#readiness")).to_contain_text("database")
        expect(page.locator("#intents")).to_contain_text(intent["id"])
        expect(page.locator("#intents")).to_contain_text("41.00 USD")
        (LOG_DIR / "ops").mkdir(exist_ok=True)
        page.screenshot(path=str(LOG_DIR / "ops" / "ops-page.png"), full_page=True)
        page.click(f"text={intent['id']}")
        expect(page.locator("#status")).to_have_text("succeeded")
        expect(page.locator("#refunds")).to_contain_text("10.00 USD")
        expect(page.locator("#amount")).to_have_text("41.00 USD")
        # Times in the operator's zone (Tokyo here), UTC on hover.
        first = page.locator("#timeline time").first
        expect(first).to_contain_text("GMT+9")
        assert first.get_attribute("title").endswith(" UTC")
        expect(page.locator("#timeline")).to_contain_text("capture-payment-intent")
        page.screenshot(path=str(LOG_DIR / "ops" / "ops-intent-timeline.png"), full_page=True)
        assert page.locator('meta[http-equiv="refresh"]').count() == 1  # it refreshes itself
    assert problems == []


def test_the_web_door_learns_stripes_readiness_from_a_worker_never_calling_stripe_itself(worker, monkeypatch):
    import stripe_client
    from operations.view import dependency_checks

    def no_stripe_here() -> None:
        raise AssertionError("the web process called Stripe")

    monkeypatch.setattr(stripe_client, "client", no_stripe_here)
    assert dependency_checks()["stripe"]() is True  # answered by the worker's probe task
    with pytest.raises(AssertionError):
        dependency_checks(stripe_directly=True)["stripe"]()  # what `payments check` does, from an operator's shell
