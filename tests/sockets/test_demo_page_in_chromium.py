"""The demo page in a real browser: Debian's Chromium, driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
import uuid

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import LOG_DIR
from tests.support.lifecycle import THREE_D_SECURE

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_the_demo_page_pays_through_3d_secure_and_shows_succeeded_pushed_over_the_socket(socket_stack):
    token = socket_stack.token(f"browser-{uuid.uuid4().hex[:10]}")
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            # The token in the fragment: a link can carry it, and a fragment is never sent to a server.
            page.goto(f"{socket_stack.sockets[0]}/demo/#token={token}")
            expect(page.locator("#connect")).to_be_enabled(timeout=20_000)  # the page has its configuration
            assert page.input_value("#token") == token and "#" not in page.url
            page.click("#connect")
            expect(page.locator("#connection")).to_have_text("connected", timeout=20_000)
            page.select_option("#card", THREE_D_SECURE)
            page.fill("#amount", "3100")
            page.click("#pay")
            expect(page.locator("#status")).to_have_text("succeeded", timeout=90_000)
            intent_id = page.inner_text("#intent")
            log = page.inner_text("#log")
            assert "payment " + intent_id + ": requires_action" in log  # the card asked for 3-D Secure...
            assert f"pushed: {intent_id} succeeded" in log  # ...and the success came by push
            page.screenshot(path=str(LOG_DIR / "sockets" / "demo-page-succeeded.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    # The card number went from the browser to Stripe only: the service never saw it.
    assert THREE_D_SECURE not in socket_stack.log_text()
