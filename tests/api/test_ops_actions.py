"""Support actions of the operator page: the same registry operations as the doors, confirmed first, once per form,
refused without ops:act or the session's CSRF token, written to the audit trail; in Chromium as a person uses it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import expect
from werkzeug.security import generate_password_hash

from tests.api.conftest import Client, running_api
from tests.api.test_ops_page import authorised_intent, chromium_page, paid_and_refunded
from tests.conftest import API_KEY, LOG_DIR

pytestmark = pytest.mark.integration

SUPPORT_KEY = f"support-{uuid.uuid4().hex}"
USERS = {"alice": ("alice-pass-1", "act"), "bob": ("bob-pass-2", "read")}


@pytest.fixture(scope="module")
def ops_url(worker) -> Iterator[str]:
    users = ",".join(f"{name}:{generate_password_hash(pw)}:{role}" for name, (pw, role) in USERS.items())
    with running_api(
        "api-ops-actions.log",
        API_KEYS=f"{API_KEY},support:{SUPPORT_KEY}",
        OPS_USERS=users,
        OPS_KEY_SCOPES="support=ops:act",
    ) as base:
        yield base


@pytest.fixture()
def api(ops_url: str) -> Client:
    return Client(ops_url)


def operator_session(ops_url: str, user: str | None = None, key: str | None = None) -> requests.Session:
    session = requests.Session()
    if user:
        session.auth = (user, USERS[user][0])
    if key:
        session.headers["Authorization"] = f"Bearer {key}"
    return session


def form_of(html: str, form_id: str) -> dict[str, str]:
    """The hidden and named fields of one form of a page, as a browser would send them untouched."""
    form = re.search(rf'<form[^>]*id="{form_id}"[^>]*>(.*?)</form>', html, re.S)
    assert form, form_id
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))


def confirm_fields(html: str) -> dict[str, str]:
    form = re.search(r'<section id="confirm">.*?<form[^>]*>(.*?)</form>', html, re.S)
    assert form, html[:2000]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))


def refunds_of(api: Client, intent_id: str) -> list[dict[str, Any]]:
    return api.get(f"/payment-intents/{intent_id}/refunds").json()["data"]


def audit_rows(**where: Any) -> list[Any]:
    import models
    from models import OpsAudit

    with models.unit_of_work():
        query = OpsAudit.select()
        for name, value in where.items():
            query = query.where(getattr(OpsAudit, name) == value)
        return list(query.order_by(OpsAudit.id))


def act(session: requests.Session, base: str, intent_id: str, form_id: str, **fields: str) -> requests.Response:
    """Open the intent's page, fill one action's form, confirm it: the confirming POST's answer (not followed)."""
    page = session.get(f"{base}/ops/intents/{intent_id}")
    assert page.status_code == 200
    action = re.search(rf'<form[^>]*id="{form_id}"[^>]*action="([^"]+)"', page.text).group(1)
    review = session.post(base + action, data={**form_of(page.text, form_id), **fields})
    assert review.status_code == 200, review.text[:500]
    return session.post(base + action, data=confirm_fields(review.text), allow_redirects=False)


def test_a_refund_asks_for_confirmation_runs_the_registry_operation_once_per_form_and_is_audited(
    ops_url, api, stripe_api
):
    intent = paid_and_refunded(api, stripe_api)  # 41.00 USD, 30.00 captured, 10.00 refunded
    alice = operator_session(ops_url, "alice")
    page = alice.get(f"{ops_url}/ops/intents/{intent['id']}").text
    fields = {**form_of(page, "refund-form"), "amount": "5.25", "reason": "requested_by_customer", "note": "asked"}
    review = alice.post(f"{ops_url}/ops/actions/refund", data=fields)
    assert review.status_code == 200
    assert f"Refund 5.25 USD to customer {intent['customerId']}." in review.text  # amount, currency, customer
    assert len(refunds_of(api, intent["id"])) == 1  # the review ran nothing
    confirm = confirm_fields(review.text)
    done = alice.post(f"{ops_url}/ops/actions/refund", data=confirm, allow_redirects=False)
    assert done.status_code == 302 and f"/ops/intents/{intent['id']}" in done.headers["Location"]
    again = alice.post(f"{ops_url}/ops/actions/refund", data=confirm, allow_redirects=False)  # a reload, a resubmit
    assert again.status_code == 302
    refunds = refunds_of(api, intent["id"])
    assert sorted(r["amount"] for r in refunds) == [525, 1000]  # once, in minor units
    ours = next(r for r in refunds if r["amount"] == 525)
    assert ours["reason"] == "requested_by_customer" and ours["metadata"].get("opsNote") == "asked"

    (row,) = audit_rows(payment_intent_id=intent["id"])
    assert (row.operator, row.action, row.outcome) == ("alice", "refund", "ok")
    assert row.params == {
        "paymentIntentId": intent["id"],
        "amount": 525,
        "reason": "requested_by_customer",
        "metadata": {"opsNote": "asked"},
    }
    assert row.answer["id"] == ours["id"] and row.idempotency_key == f"ops:alice:{fields['formKey']}"
    assert row.trace_id == done.headers["X-Trace-Id"] and row.finished_at is not None

    history = api.get(f"/payment-intents/{intent['id']}/history").json()
    assert f"ops:alice:create-refund:{ours['id']}" in [h["cause"] for h in history]  # ztracking names the operator
    timeline = alice.get(f"{ops_url}/ops/intents/{intent['id']}").text
    assert f"ops:alice:create-refund:{ours['id']}" in timeline and 'id="audit"' in timeline
    trail = alice.get(f"{ops_url}/ops/audit").text
    assert row.trace_id in trail and "alice" in trail
    assert alice.get(f"{ops_url}/ops/audit/{row.id}").status_code == 200


def test_the_registry_money_rules_hold_on_the_page_a_refund_too_large_is_refused_and_audited(ops_url, api, stripe_api):
    intent = paid_and_refunded(api, stripe_api)  # 20.00 USD left to refund
    support = operator_session(ops_url, key=SUPPORT_KEY)  # an API key given ops:act by OPS_KEY_SCOPES
    done = act(support, ops_url, intent["id"], "refund-form", amount="25.00")
    assert done.status_code == 302
    (row,) = audit_rows(payment_intent_id=intent["id"])
    assert (row.operator, row.outcome) == ("key:support", "refund_exceeds_amount")
    assert len(refunds_of(api, intent["id"])) == 1
    shown = support.get(ops_url + done.headers["Location"]).text
    assert "refund_exceeds_amount" in shown


def test_a_sync_and_a_cancel_from_the_page_name_their_operator_in_the_audit_trail(ops_url, api, stripe_api):
    intent = authorised_intent(api, stripe_api, 1500, "jpy")
    alice = operator_session(ops_url, "alice")
    page = alice.get(f"{ops_url}/ops/intents/{intent['id']}").text
    review = alice.post(f"{ops_url}/ops/actions/cancel", data=form_of(page, "cancel-form"))
    assert "1500 JPY is released" in review.text  # a zero-decimal currency
    assert alice.post(f"{ops_url}/ops/actions/cancel", data=confirm_fields(review.text)).status_code == 200
    assert act(alice, ops_url, intent["id"], "sync-form").status_code == 302
    rows = audit_rows(payment_intent_id=intent["id"])
    assert [(r.action, r.outcome, r.operator) for r in rows] == [("cancel", "ok", "alice"), ("sync", "ok", "alice")]
    assert api.get(f"/payment-intents/{intent['id']}").json()["status"] == "canceled"


def test_a_read_only_operator_and_an_unlisted_api_key_see_no_actions_and_are_refused(ops_url, api, stripe_api):
    intent = paid_and_refunded(api, stripe_api)
    for reader in (operator_session(ops_url, "bob"), operator_session(ops_url, key=API_KEY)):
        page = reader.get(f"{ops_url}/ops/intents/{intent['id']}")
        assert page.status_code == 200 and 'id="read-only"' in page.text and "refund-form" not in page.text
        fields = {"formKey": uuid.uuid4().hex, "paymentIntentId": intent["id"], "amount": "1.00"}
        refused = reader.post(f"{ops_url}/ops/actions/refund", data=fields)
        assert refused.status_code == 403 and "Read-only" in refused.text
    assert len(refunds_of(api, intent["id"])) == 1 and audit_rows(payment_intent_id=intent["id"]) == []


def test_a_post_without_the_sessions_csrf_token_or_confirmation_runs_nothing(ops_url, api, stripe_api):
    intent = paid_and_refunded(api, stripe_api)
    alice = operator_session(ops_url, "alice")
    page = alice.get(f"{ops_url}/ops/intents/{intent['id']}").text
    fields = {**form_of(page, "refund-form"), "amount": "1.00"}
    review = alice.post(f"{ops_url}/ops/actions/refund", data=fields)
    confirmed = confirm_fields(review.text)
    no_token = {k: v for k, v in confirmed.items() if k != "csrf_token"}
    refused = alice.post(f"{ops_url}/ops/actions/refund", data=no_token)
    assert refused.status_code == 400 and "CSRF" in refused.text
    # Another session (a forged page's browser) has its own token: this one's is no good there.
    other = operator_session(ops_url, "alice")
    assert other.post(f"{ops_url}/ops/actions/refund", data=confirmed).status_code == 400
    forged = {**confirmed, "confirm": confirmed["confirm"][:-4] + "AAAA"}
    assert alice.post(f"{ops_url}/ops/actions/refund", data=forged).status_code == 400
    assert len(refunds_of(api, intent["id"])) == 1 and audit_rows(payment_intent_id=intent["id"]) == []


def test_an_outbox_event_is_re_published_from_the_page_once_per_form(ops_url, api, stripe_api):
    import models
    from models import PaymentEvent

    intent = paid_and_refunded(api, stripe_api)
    with models.unit_of_work():
        event = PaymentEvent.select().where(PaymentEvent.payment_intent_id == intent["id"]).first()
        PaymentEvent.update(published_at=models.utcnow()).where(PaymentEvent.id == event.id).execute()
    support = operator_session(ops_url, key=SUPPORT_KEY)
    fields = {"csrf_token": "", "formKey": uuid.uuid4().hex, "eventId": event.event_id}
    page = support.get(f"{ops_url}/ops/").text
    fields["csrf_token"] = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    review = support.post(f"{ops_url}/ops/actions/republish-event", data=fields)
    assert event.event_id in review.text
    done = support.post(f"{ops_url}/ops/actions/republish-event", data=confirm_fields(review.text))
    assert done.status_code == 200 and "republish-event" in done.text
    (row,) = audit_rows(action="republish-event", target=event.event_id)
    assert row.outcome == "ok" and row.answer == {"queued": 1} and row.operator == "key:support"


def test_in_chromium_a_person_logs_in_refunds_part_and_a_double_click_refunds_once(ops_url, api, stripe_api):
    intent = paid_and_refunded(api, stripe_api)
    problems: list[str] = []
    with chromium_page("alice", USERS["alice"][0], problems) as (browser, context, page):
        assert page.goto(f"{ops_url}/ops/intents/{intent['id']}").status == 200
        expect(page.locator("#operator")).to_contain_text("alice (may act)")
        page.fill("#refund-form input[name=amount]", "4.50")
        page.fill("#refund-form input[name=note]", "partial, by phone")
        page.click("#refund-form button[type=submit]")
        expect(page.locator("#what")).to_have_text(f"Refund 4.50 USD to customer {intent['customerId']}.")
        (LOG_DIR / "ops").mkdir(exist_ok=True)
        page.screenshot(path=str(LOG_DIR / "ops" / "ops-confirm-refund.png"), full_page=True)
        page.click("#confirm-button")
        expect(page.locator("#done")).to_contain_text("refund by alice")
        expect(page.locator("#done")).to_contain_text("ok")
        expect(page.locator("#refunds")).to_contain_text("4.50 USD")
        expect(page.locator("#audit")).to_contain_text("opsNote")
        page.screenshot(path=str(LOG_DIR / "ops" / "ops-actions.png"), full_page=True)

        page.fill("#refund-form input[name=amount]", "1.25")
        page.click("#refund-form button[type=submit]")
        expect(page.locator("#what")).to_contain_text("Refund 1.25 USD")
        fields = {
            name: page.locator(f"#confirm input[name={name}]").input_value()
            for name in ("csrf_token", "formKey", "confirm")
        }
        page.dblclick("#confirm-button")
        expect(page.locator("#done")).to_contain_text("refund by alice")
        # And a resubmit of the very same confirmation (a reload of the POST), in this session.
        replayed = context.request.post(f"{ops_url}/ops/actions/refund", form=fields)
        assert replayed.status == 200
        # A POST without the session's CSRF token, from this logged-in browser: refused.
        forged = context.request.post(
            f"{ops_url}/ops/actions/refund",
            form={"formKey": uuid.uuid4().hex, "paymentIntentId": intent["id"], "amount": "2.00"},
        )
        assert forged.status == 400 and "CSRF" in forged.text()

        wrong = browser.new_context(http_credentials={"username": "alice", "password": "not-hers"})
        assert wrong.new_page().goto(f"{ops_url}/ops/").status == 401
        wrong.close()
        # A read-only person: no actions on the page, and a POST refused.
        reader = browser.new_context(http_credentials={"username": "bob", "password": USERS["bob"][0]})
        reader_page = reader.new_page()
        assert reader_page.goto(f"{ops_url}/ops/intents/{intent['id']}").status == 200
        expect(reader_page.locator("#read-only")).to_be_visible()
        assert reader_page.locator("#refund-form").count() == 0
        refused = reader.request.post(
            f"{ops_url}/ops/actions/refund",
            form={"formKey": uuid.uuid4().hex, "paymentIntentId": intent["id"], "amount": "2.00"},
        )
        assert refused.status == 403
        reader.close()
    assert problems == []
    assert sorted(r["amount"] for r in refunds_of(api, intent["id"])) == [125, 450, 1000]
    rows = audit_rows(payment_intent_id=intent["id"])
    assert [(r.operator, r.params.get("amount"), r.outcome) for r in rows] == [
        ("alice", 450, "ok"),
        ("alice", 125, "ok"),
    ]


def test_a_partial_capture_from_the_page_captures_what_was_confirmed(ops_url, api, stripe_api):
    intent = authorised_intent(api, stripe_api, 5000, "eur")
    owner = intent["customerId"]
    alice = operator_session(ops_url, "alice")
    page = alice.get(f"{ops_url}/ops/intents/{intent['id']}").text
    review = alice.post(f"{ops_url}/ops/actions/capture", data={**form_of(page, "capture-form"), "amount": "30"})
    assert f"Capture 30.00 EUR of the authorisation of customer {owner}." in review.text
    assert alice.post(f"{ops_url}/ops/actions/capture", data=confirm_fields(review.text)).status_code == 200
    captured = api.get(f"/payment-intents/{intent['id']}").json()
    assert (captured["status"], captured["amountReceived"]) == ("succeeded", 3000)
    (row,) = audit_rows(payment_intent_id=intent["id"])
    assert (row.action, row.params["amountToCapture"], row.outcome) == ("capture", 3000, "ok")


def test_a_declined_attempt_is_retried_from_the_page_under_the_registrys_rules(ops_url, api, stripe_api):
    from tests.conftest import make_card

    owner = f"ops-{uuid.uuid4().hex[:10]}"
    card = make_card(stripe_api, "4000000000000341")  # attaches, then declines
    assert api.post("/payment-methods", json={"customerId": owner, "stripePaymentMethodId": card, "setAsDefault": True})
    declined = api.post(
        "/payment-intents", json={"customerId": owner, "amount": 700, "currency": "usd", "confirm": True}
    )
    intent_id = declined.json()["error"]["details"]["paymentIntentId"]
    alice = operator_session(ops_url, "alice")
    page = alice.get(f"{ops_url}/ops/intents/{intent_id}").text
    retry = re.search(r'<form class="inline" method="post" action="/ops/actions/retry">(.*?)</form>', page, re.S)
    assert retry, "a failed attempt offers a retry"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', retry.group(1)))
    review = alice.post(f"{ops_url}/ops/actions/retry", data=fields)
    assert "Retry the failed confirm (attempt 1, card_declined)" in review.text and "7.00 USD" in review.text
    done = alice.post(f"{ops_url}/ops/actions/retry", data=confirm_fields(review.text))
    assert "invalid_state" in done.text  # the registry's rule: a declined card is retried only with another one
    (row,) = audit_rows(payment_intent_id=intent_id)
    assert (row.action, row.outcome) == ("retry", "invalid_state") and "declined" in row.answer["message"]


def test_a_form_sent_again_with_another_amount_is_refused_not_run_as_a_second_action(ops_url, api, stripe_api):
    intent = paid_and_refunded(api, stripe_api)
    alice = operator_session(ops_url, "alice")
    page = alice.get(f"{ops_url}/ops/intents/{intent['id']}").text
    form = form_of(page, "refund-form")
    first = alice.post(f"{ops_url}/ops/actions/refund", data={**form, "amount": "1.00"})
    assert alice.post(f"{ops_url}/ops/actions/refund", data=confirm_fields(first.text)).status_code == 200
    # Back to the form (its key unchanged), another amount, confirmed: the key already stands for the first refund.
    second = alice.post(f"{ops_url}/ops/actions/refund", data={**form, "amount": "2.00"})
    refused = alice.post(f"{ops_url}/ops/actions/refund", data=confirm_fields(second.text))
    assert refused.status_code == 422 and "reload the page" in refused.text
    assert sorted(r["amount"] for r in refunds_of(api, intent["id"])) == [100, 1000]
    (row,) = audit_rows(payment_intent_id=intent["id"])
    assert (row.params["amount"], row.outcome) == (100, "ok")
