"""Drill 20 (issue 29.2): money paths that had no drill — a retried payment attempt under Stripe's faults, the janitor
on an abandoned card vaulting, and webhooks arriving in the middle of a refund or a capture.

Against the drills' faithful Stripe (localstripe behind the proxy that keeps Stripe's idempotency and plays the
faults; a refund larger than what a charge has left is refused, as Stripe refuses it). The service's own code runs in
this process (fixture `service`) on a database of its own, since the janitor works on every claim it finds. Webhooks
are signed as Stripe signs them; a race is played at its worst moment (the event is applied between Stripe acting
and the service recording Stripe's answer), and once through the drills' stack with everything at once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import stripe

import stripe_client
from domain import idempotency, janitor
from domain.schemas import CreatePaymentMethodInput
from errors import OperationError, TransientError
from models import PaymentAttempt, PaymentEvent, PaymentIntent, PaymentMethod, Refund, ZtrackingPaymentIntent
from tests.domain.helpers import Killed, call, context
from tests.drills.conftest import WEBHOOK_SECRET, make_card, size
from tests.drills.helpers import customer, invariant_violations, paid_intent, vaulted
from tests.drills.report import report
from tests.drills.test_drill_14_unknown_outcomes import (  # noqa: F401  (service_database: a fixture)
    SAVED_500,
    age,
    paid,
    record_of,
    service_database,
)
from tests.drills.test_drill_15_webhooks_and_input import deliver
from tests.support.stripe_objects import refunds_of
from tests.support.stripe_proxy import ACT_THEN_500, TIMEOUT_AFTER_SENT, Fault, StripeProxy
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration

AUTHORISED = 4000


# -- retry-payment-attempt under Stripe's faults


def authorised(stripe_api: Any, prefix: str) -> dict:
    create = {"customerId": vaulted(stripe_api, prefix), "amount": AUTHORISED, "currency": "usd"}
    return call("create-payment-intent", {**create, "confirm": True, "captureMethod": "manual"})


def capture_path(intent: dict) -> str:
    return f"/v1/payment_intents/{intent['stripePaymentIntentId']}/capture"


def on_capture(intent: dict):
    return lambda method, path, form: method == "POST" and path == capture_path(intent)


def capture_posts(proxy: StripeProxy, intent: dict) -> list:
    return proxy.requests_for(lambda s: s.method == "POST" and s.path == capture_path(intent))


def failed_capture(proxy: StripeProxy, stripe_api: Any, prefix: str) -> tuple[dict, str]:
    """An authorised intent whose capture Stripe refused: its capture attempt failed and may be retried."""
    intent = authorised(stripe_api, prefix)
    proxy.add_rule(
        on_capture(intent), [Fault.error(400, "invalid_request_error", code="payment_intent_unexpected_state")]
    )
    with pytest.raises(OperationError):
        call("capture-payment-intent", {"paymentIntentId": intent["id"]})
    proxy.clear()
    attempt = PaymentAttempt.get(
        PaymentAttempt.payment_intent_id == intent["id"], PaymentAttempt.operation == "capture"
    )
    assert attempt.status == "failed"
    return intent, attempt.id


def captured_once(stripe_api: Any, intent: dict) -> None:
    """Stripe captured the authorisation once, and the service stored it so."""
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])
    stored = PaymentIntent.get_by_id(intent["id"])
    assert (at_stripe.status, at_stripe.amount_received) == ("succeeded", AUTHORISED)
    assert (stored.status, stored.amount_received) == ("succeeded", AUTHORISED)
    told = PaymentEvent.select().where(
        PaymentEvent.payment_intent_id == intent["id"], PaymentEvent.type == "succeeded-payment"
    )
    assert told.count() == 1


def test_a_retried_capture_stripe_made_before_answering_500_is_found_by_a_look_up_not_sent_again(service, stripe_api):
    intent, failed = failed_capture(service, stripe_api, "retry-acted")
    service.add_rule(on_capture(intent), [Fault(ACT_THEN_500)])
    ctx = context(final_attempt=False)
    retried = call("retry-payment-attempt", {"attemptId": failed}, ctx)
    replayed = call("retry-payment-attempt", {"attemptId": failed}, context(key=ctx.scoped_key))
    posts = capture_posts(service, intent)
    report(
        "20", "a retried capture Stripe made, then answered 500 (saved)", answered=retried["status"], posts=len(posts)
    )
    assert (retried["status"], retried["operation"], retried["retryOf"]) == ("succeeded", "capture", failed)
    assert len(posts) == 2  # the refused capture, and the retry's one: never sent again after its 500
    assert replayed == retried  # the caller's retry with its key replays the answer
    captured_once(stripe_api, intent)


def test_a_retried_capture_whose_answer_was_lost_is_sent_again_under_its_key_and_captured_once(service, stripe_api):
    intent, failed = failed_capture(service, stripe_api, "retry-lost")
    service.add_rule(on_capture(intent), [Fault(TIMEOUT_AFTER_SENT, hold_s=1.5)])
    ctx = context(final_attempt=False)
    with pytest.raises(TransientError):
        call("retry-payment-attempt", {"attemptId": failed}, ctx)
    retried = call("retry-payment-attempt", {"attemptId": failed}, ctx)  # the task's retry
    posts = capture_posts(service, intent)
    report("20", "a retried capture Stripe made whose answer was lost", posts=len(posts), replayed=posts[-1].replayed)
    assert (retried["status"], retried["retryOf"]) == ("succeeded", failed)
    assert len(posts) == 3 and posts[1].idempotency_key == posts[2].idempotency_key and posts[2].replayed
    captured_once(stripe_api, intent)


def test_a_retried_capture_stripe_refused_with_a_500_before_acting_goes_again_under_a_new_key(service, stripe_api):
    intent, failed = failed_capture(service, stripe_api, "retry-notacted")
    service.add_rule(on_capture(intent), [Fault.error(500, "api_error")])
    ctx = context(final_attempt=False)
    with pytest.raises(TransientError) as first:
        call("retry-payment-attempt", {"attemptId": failed}, ctx)
    retried = call("retry-payment-attempt", {"attemptId": failed}, ctx)
    keys = [p.idempotency_key for p in capture_posts(service, intent)][1:]
    report("20", "a retried capture answered 500 that Stripe did not act on", first=first.value.code, keys=len(keys))
    assert first.value.code == "stripe_error" and retried["status"] == "succeeded"
    assert keys == [keys[0], keys[0] + "-s2"]
    captured_once(stripe_api, intent)


def test_a_retried_capture_left_unknown_is_settled_by_the_janitor_and_a_new_retry_captures_once(service, stripe_api):
    intent, failed = failed_capture(service, stripe_api, "retry-unknown")
    service.add_rule(on_capture(intent), [SAVED_500])
    ctx = context(final_attempt=True)
    with pytest.raises(TransientError) as unknown:
        call("retry-payment-attempt", {"attemptId": failed}, ctx)
    age(record_of(ctx.scoped_key).id, dt.timedelta(minutes=30))
    counts = janitor.run()
    with pytest.raises(OperationError) as settled:
        call("retry-payment-attempt", {"attemptId": failed}, context(key=ctx.scoped_key))
    attempts = list(
        PaymentAttempt.select().where(PaymentAttempt.payment_intent_id == intent["id"]).order_by(PaymentAttempt.id)
    )
    newest = max(attempts, key=lambda a: a.attempt_number)
    again = call("retry-payment-attempt", {"attemptId": newest.id})
    report(
        "20",
        "a retried capture Stripe failed on (500 saved, nothing made), then the janitor",
        answered=unknown.value.code,
        janitor=str(counts),
        final=settled.value.code,
        then=again["status"],
    )
    assert unknown.value.code == "outcome_unknown"
    assert settled.value.code == "stripe_error" and settled.value.details["foundAtStripe"] is False
    assert newest.status == "failed" and newest.retry_of == failed
    assert again["status"] == "succeeded" and again["retryOf"] == newest.id
    captured_once(stripe_api, intent)


def test_a_retried_confirm_stripe_charged_before_answering_500_is_found_by_a_look_up_and_charges_once(
    service, stripe_api
):
    customer_id = vaulted(stripe_api, "retry-confirm")
    method = call("list-payment-methods", {"customerId": customer_id})["data"][0]
    create = {"customerId": customer_id, "amount": AUTHORISED, "currency": "usd", "paymentMethodId": method["id"]}
    intent = call("create-payment-intent", create)
    confirm_path = f"/v1/payment_intents/{intent['stripePaymentIntentId']}/confirm"
    on_confirm = lambda verb, path, form: verb == "POST" and path == confirm_path  # noqa: E731
    service.add_rule(on_confirm, [Fault.error(400, "invalid_request_error", code="payment_intent_unexpected_state")])
    with pytest.raises(OperationError):
        call("confirm-payment-intent", {"paymentIntentId": intent["id"]})
    service.clear()
    failed = PaymentAttempt.get(PaymentAttempt.payment_intent_id == intent["id"], PaymentAttempt.operation == "confirm")
    assert failed.status == "failed"
    service.add_rule(on_confirm, [Fault(ACT_THEN_500)])
    retried = call("retry-payment-attempt", {"attemptId": failed.id}, context(final_attempt=False))
    posts = service.requests_for(lambda s: s.method == "POST" and s.path == confirm_path)
    listed = stripe_api.v1.charges.list(params={"limit": 100}).auto_paging_iter()
    charges = [c for c in listed if c.payment_intent == intent["stripePaymentIntentId"]]
    report(
        "20",
        "a retried confirm Stripe charged, then answered 500 (saved)",
        answered=retried["status"],
        charges=len(charges),
    )
    assert (retried["status"], retried["operation"], retried["retryOf"]) == ("succeeded", "confirm", failed.id)
    assert len(posts) == 2 and len(charges) == 1  # charged once: found by the look-up, never confirmed again
    captured_once(stripe_api, intent)


# -- the janitor on an abandoned create-payment-method


def test_the_janitor_finishes_a_card_vaulting_whose_worker_died_after_stripe_attached_it(
    service, stripe_api, monkeypatch
):
    customer_id, method = customer("pm-died"), make_card(stripe_api)
    payload = {"customerId": customer_id, "stripePaymentMethodId": method, "setAsDefault": True}
    ctx = context()

    def died(*args: Any, **kwargs: Any) -> dict:
        raise Killed()  # the worker is gone after the attach, before the default and the row

    with monkeypatch.context() as patched:
        patched.setattr(stripe_client, "set_default_payment_method", died)
        with pytest.raises(Killed):
            call("create-payment-method", payload, ctx)
    assert stripe_api.v1.payment_methods.retrieve(method).customer  # attached at Stripe
    assert PaymentMethod.get_or_none(PaymentMethod.customer_id == customer_id) is None
    age(record_of(ctx.scoped_key).id, dt.timedelta(minutes=30))
    counts = janitor.run()
    stored = PaymentMethod.get(PaymentMethod.customer_id == customer_id)
    replay = call("create-payment-method", payload, context(key=ctx.scoped_key))  # the caller's retry, later
    attaches = service.requests_for(lambda s: s.method == "POST" and s.path == f"/v1/payment_methods/{method}/attach")
    stripe_customer = stripe_api.v1.customers.retrieve(stripe_api.v1.payment_methods.retrieve(method).customer)
    report("20", "janitor on a card vaulting whose worker died after the attach", janitor=str(counts))
    assert counts.get("claim: finished", 0) >= 1 and record_of(ctx.scoped_key).state == "completed"
    assert replay["id"] == stored.id and stored.is_default and stored.stripe_payment_method_id == method
    assert len(attaches) == 1  # attached once: the janitor saw it attached and went on from there
    assert stripe_customer.invoice_settings.default_payment_method == method


def test_the_janitor_closes_a_card_vaulting_whose_worker_died_before_calling_stripe(service, stripe_api):
    customer_id, method = customer("pm-never"), make_card(stripe_api)
    payload = {"customerId": customer_id, "stripePaymentMethodId": method, "setAsDefault": True}
    ctx = context(owner="worker-that-died")
    canonical = CreatePaymentMethodInput.model_validate(payload).canonical()
    claim = idempotency.claim(
        "create-payment-method", ctx.scoped_key, canonical, ctx.owner, "payment_method", 86400, "t"
    )
    age(claim.record_id, dt.timedelta(minutes=30))
    counts = janitor.run()
    with pytest.raises(OperationError) as replay:
        call("create-payment-method", payload, context(key=ctx.scoped_key))
    report("20", "janitor on a card vaulting whose worker died before calling Stripe", janitor=str(counts))
    assert counts.get("claim: not processed", 0) >= 1
    assert replay.value.code == "internal_error" and replay.value.details == {"stripeCalled": False}
    assert stripe_api.v1.payment_methods.retrieve(method).customer is None  # never executed minutes later
    assert PaymentMethod.get_or_none(PaymentMethod.customer_id == customer_id) is None


# -- webhooks in the middle of a refund or a capture


def refunds_at_stripe(stripe_api: Any, intent: dict) -> dict[str, int]:
    return {r["id"]: r["amount"] for r in refunds_of(stripe_api, intent["stripePaymentIntentId"])}


def rows_of(stripe_refund_ids: list[str]) -> dict[str, int]:
    """How many refund rows each Stripe refund has here."""
    return {i: Refund.select().where(Refund.stripe_refund_id == i).count() for i in stripe_refund_ids}


def while_stripe_answers(
    monkeypatch: pytest.MonkeyPatch, name: str, around: Callable[[Callable[[], dict]], dict]
) -> None:
    """stripe_client.<name> runs `around(send)` instead: `send()` makes the real call, and what `around` does before
    or after it happens while the service waits for Stripe's answer."""
    real = getattr(stripe_client, name)

    def call_around(*args: Any, **kwargs: Any) -> dict:
        return around(lambda: real(*args, **kwargs))

    monkeypatch.setattr(stripe_client, name, call_around)


def dashboard_refund(stripe_api: Any, intent: dict, amount: int) -> Any:
    """A refund made at Stripe by someone else (the Dashboard): the service learns of it only from webhooks."""
    return stripe_api.v1.refunds.create(params={"payment_intent": intent["stripePaymentIntentId"], "amount": amount})


def charge_of(stripe_api: Any, intent: dict) -> dict:
    latest = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).latest_charge
    return stripe_api.v1.charges.retrieve(latest).to_dict()


def test_a_dashboard_refund_told_by_webhooks_while_a_refund_is_held_is_recorded_once_and_stripe_refuses_the_excess(
    service, stripe_api, monkeypatch
):
    intent = paid(stripe_api, "race-dash-first", amount=5000)
    seen: dict[str, Any] = {}

    def dashboard_first(send: Callable[[], dict]) -> dict:
        # Our 4000 is held; someone refunds 3000 in the Dashboard, and Stripe tells of it twice, before ours arrives.
        dashboard = dashboard_refund(stripe_api, intent, 3000)
        seen["dashboard"] = dashboard.id
        seen["events"] = [
            deliver("refund.created", dashboard.to_dict()),
            deliver("charge.refunded", charge_of(stripe_api, intent)),
        ]
        seen["held"] = PaymentIntent.get_by_id(intent["id"]).amount_refunded
        return send()

    while_stripe_answers(monkeypatch, "create_refund", dashboard_first)
    with pytest.raises(OperationError) as refused:
        call("create-refund", {"paymentIntentId": intent["id"], "amount": 4000})
    stored = PaymentIntent.get_by_id(intent["id"])
    at_stripe = refunds_at_stripe(stripe_api, intent)
    ours = Refund.get(Refund.payment_intent_id == intent["id"], Refund.stripe_refund_id.is_null())
    report(
        "20",
        "a Dashboard refund (3000, told by two events) while our refund (4000) of 5000 was held",
        events=",".join(seen["events"]),
        held_meanwhile=seen["held"],
        answered=refused.value.code,
        refunded=stored.amount_refunded,
        at_stripe=sum(at_stripe.values()),
    )
    assert seen["events"] == ["processed", "processed"]
    assert at_stripe == {seen["dashboard"]: 3000}  # Stripe refused the excess: never more back than was captured
    assert rows_of([seen["dashboard"]]) == {seen["dashboard"]: 1}  # two events, one refund recorded
    assert ours.status == "failed" and refused.value.details["refundId"] == ours.id
    # Told as when the service refuses it itself, with what is left now that its hold is given back.
    assert refused.value.code == "refund_exceeds_amount" and refused.value.details["refundable"] == 2000
    assert stored.amount_refunded == 3000 <= stored.amount_received


def test_a_webhook_naming_our_refund_and_a_dashboard_one_before_our_answer_records_each_refund_once(
    service, stripe_api, monkeypatch
):
    intent = paid(stripe_api, "race-dash-after", amount=5000)
    seen: dict[str, Any] = {}

    def events_before_the_answer(send: Callable[[], dict]) -> dict:
        made = send()
        dashboard = dashboard_refund(stripe_api, intent, 1000)
        seen["dashboard"] = dashboard.id
        # charge.refunded lists both refunds; refund.created tells each; all before our answer is recorded.
        seen["events"] = [
            deliver("charge.refunded", charge_of(stripe_api, intent)),
            deliver("refund.created", made),
            deliver("refund.created", dashboard.to_dict()),
        ]
        return made

    while_stripe_answers(monkeypatch, "create_refund", events_before_the_answer)
    refund = call("create-refund", {"paymentIntentId": intent["id"], "amount": 2500})
    stored = PaymentIntent.get_by_id(intent["id"])
    at_stripe = refunds_at_stripe(stripe_api, intent)
    accepted = PaymentEvent.select().where(
        PaymentEvent.payment_intent_id == intent["id"], PaymentEvent.type == "created-refund"
    )
    report(
        "20",
        "events naming our refund (2500) and a Dashboard one (1000) before our answer",
        events=",".join(seen["events"]),
        refunded=stored.amount_refunded,
        at_stripe=sum(at_stripe.values()),
        refund_rows=Refund.select().where(Refund.payment_intent_id == intent["id"]).count(),
    )
    assert refund["status"] == "succeeded" and refund["stripeRefundId"] in at_stripe
    assert rows_of(list(at_stripe)) == {i: 1 for i in at_stripe}  # ours matched by its id, the other adopted once
    assert Refund.select().where(Refund.payment_intent_id == intent["id"]).count() == 2
    assert stored.amount_refunded == sum(at_stripe.values()) == 3500 <= stored.amount_received
    assert accepted.count() == 2  # created-refund once per refund


def test_a_success_webhook_landing_during_a_capture_is_one_change_and_one_succeeded_payment(
    service, stripe_api, monkeypatch
):
    intent = authorised(stripe_api, "race-capture")
    seen: dict[str, Any] = {}

    def event_before_the_answer(send: Callable[[], dict]) -> dict:
        captured = send()
        seen["events"] = [deliver("payment_intent.succeeded", captured, captured["created"] + 5)]
        return captured

    def history() -> list[str]:
        rows = ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == intent["id"])
        return [z.cause for z in rows.order_by(ZtrackingPaymentIntent.ztracking_version)]

    before = history()
    while_stripe_answers(monkeypatch, "capture_payment_intent", event_before_the_answer)
    answer = call("capture-payment-intent", {"paymentIntentId": intent["id"]})
    # Stripe's earlier event, of the authorisation, arrives last: it must not move the payment back.
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).to_dict()
    late = deliver("payment_intent.amount_capturable_updated", {**at_stripe, "status": "requires_capture"}, 1)
    changes = history()[len(before) :]
    attempt = PaymentAttempt.get(
        PaymentAttempt.payment_intent_id == intent["id"], PaymentAttempt.operation == "capture"
    )
    report(
        "20",
        "payment_intent.succeeded applied during our capture",
        events=",".join(seen["events"]),
        changes=len(changes),
        late=late,
    )
    assert seen["events"] == ["processed"] and late == "stale"
    assert answer["status"] == "succeeded" and answer["amountReceived"] == AUTHORISED
    assert len(changes) == 1 and changes[0].startswith("evt_")  # the event's change; our answer had nothing to add
    assert attempt.status == "succeeded"
    captured_once(stripe_api, intent)


def test_refunds_racing_dashboard_refunds_and_their_webhooks_never_exceed_the_capture_and_are_each_recorded_once(
    stack, api, stripe_api
):
    """Through the stack, all at once: service refunds over REST, and refunds made in the Dashboard whose events
    (refund.created, charge.refunded, each sent twice as Stripe retries) reach the webhook door meanwhile."""
    captured = 10_000
    intent = paid_intent(api, stripe_api, "race-dashboard", amount=captured)
    stripe_id = intent["stripePaymentIntentId"]
    ours, theirs = size(8, 14), size(6, 8)  # 700 and 900 each: together more than was captured

    def refund(_: int) -> int:
        body = {"paymentIntentId": intent["id"], "amount": 700}
        return api.post("/refunds", json=body, headers={"Idempotency-Key": f"race-{uuid.uuid4()}"}).status_code

    def webhook(event_type: str, obj: dict) -> int:
        payload = json.dumps(
            {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": event_type, "created": int(time.time()),
             "data": {"object": obj}}
        )  # fmt: skip
        headers = {"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"}
        return api.post("/webhooks/stripe", data=payload, headers=headers).status_code

    def dashboard(_: int) -> list[int]:
        try:
            made = stripe_api.v1.refunds.create(params={"payment_intent": stripe_id, "amount": 900}).to_dict()
        except stripe.InvalidRequestError:  # Stripe refused it: not that much was left to refund
            return [422]
        charge = stripe_api.v1.charges.retrieve(made["charge"]).to_dict()
        return [webhook(t, o) for t, o in [("refund.created", made), ("charge.refunded", charge)] * 2]

    with ThreadPoolExecutor(ours + theirs) as pool:
        answers = pool.map(refund, range(ours))
        told = pool.map(dashboard, range(theirs))
        answers, told = list(answers), [code for codes in told for code in codes]
    at_stripe = {r["id"]: r["amount"] for r in refunds_of(stripe_api, stripe_id) if r["status"] == "succeeded"}
    rows = dict(stack.sql("SELECT stripe_refund_id, COUNT(*) FROM refund WHERE payment_intent_id = %s "
                          "AND stripe_refund_id IS NOT NULL GROUP BY stripe_refund_id", (intent["id"],)))  # fmt: skip
    refunded = api.get(f"/payment-intents/{intent['id']}").json()["amountRefunded"]
    report(
        "20",
        f"{ours} refunds of 700 racing {theirs} Dashboard refunds of 900 (events sent twice) on {captured}",
        refunded_201=answers.count(201),
        refused_422=answers.count(422),
        dashboard_refused=told.count(422),
        webhooks_200=told.count(200),
        refunded=refunded,
        at_stripe=sum(at_stripe.values()),
        refunds_at_stripe=len(at_stripe),
    )
    assert set(answers) <= {201, 422} and set(told) <= {200, 422}
    assert 422 in answers + told  # the capture ran out: someone was refused
    assert sum(at_stripe.values()) <= captured  # Stripe's total never exceeds the capture
    assert rows == {i: 1 for i in at_stripe}  # every refund at Stripe recorded here, once
    assert refunded == sum(at_stripe.values())
    assert invariant_violations(stack.sql) == {}
