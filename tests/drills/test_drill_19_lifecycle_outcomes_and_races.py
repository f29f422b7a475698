"""Drill 19 (issue 29, section 2): confirm, capture and cancel when Stripe acted and the answer was lost, and when
two of them race on one intent.

- A 5xx saved after Stripe acted: the operation's own look-up finds what Stripe did (one request at Stripe).
- No answer at all, on the last attempt: the claim is given back and the janitor finds it at Stripe ("fetched");
  the caller's retry with its key answers what Stripe did, nothing is sent again.
- Capture against cancel (each winning in turn, then undirected) and two concurrent captures: one wins at Stripe,
  the other answers `invalid_state` saying why (a cancel that won is never "expired"), our rows match Stripe's.
Against the drills' faithful Stripe: localstripe behind the proxy that keeps Stripe's idempotency and plays faults.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import stripe

import models
from domain import idempotency, janitor
from errors import OperationError, TransientError
from models import IdempotencyRecord, PaymentAttempt, PaymentIntent, ZtrackingPaymentIntent, utcnow
from tests.domain.helpers import call, context
from tests.drills.conftest import service_database_of_its_own, size
from tests.drills.helpers import vaulted
from tests.drills.report import report
from tests.support.stripe_proxy import ACT_THEN_500, TIMEOUT_AFTER_SENT, Fault, StripeProxy

pytestmark = pytest.mark.integration

AMOUNT = 2400


service_database = service_database_of_its_own("drill19")


def authorised(stripe_api: stripe.StripeClient, prefix: str) -> dict:
    create = {"customerId": vaulted(stripe_api, prefix), "amount": AMOUNT, "currency": "usd"}
    intent = call("create-payment-intent", {**create, "confirm": True, "captureMethod": "manual"})
    assert intent["status"] == "requires_capture"
    return intent


def unconfirmed(stripe_api: stripe.StripeClient, prefix: str) -> dict:
    create = {"customerId": vaulted(stripe_api, prefix), "amount": AMOUNT, "currency": "usd"}
    return call("create-payment-intent", create)


# operation -> (how its intent is made, its Stripe action, its payload beyond the id, the status it leads to)
LIFECYCLE: dict[str, tuple[Callable[[stripe.StripeClient, str], dict], str, dict, str]] = {
    "confirm-payment-intent": (unconfirmed, "confirm", {}, "succeeded"),
    "capture-payment-intent": (authorised, "capture", {"amountToCapture": 1500}, "succeeded"),
    "cancel-payment-intent": (authorised, "cancel", {"cancellationReason": "abandoned"}, "canceled"),
}


def action_path(intent: dict, action: str) -> str:
    return f"/v1/payment_intents/{intent['stripePaymentIntentId']}/{action}"


def on_action(intent: dict, action: str):
    path = action_path(intent, action)
    return lambda method, p, form: method == "POST" and p == path


def posts(proxy: StripeProxy, intent: dict, action: str) -> list:
    path = action_path(intent, action)
    return proxy.requests_for(lambda s: s.method == "POST" and s.path == path)


def at_stripe(stripe_api: stripe.StripeClient, intent: dict) -> Any:
    return stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"])


def causes(intent: dict) -> list[str]:
    rows = ZtrackingPaymentIntent.select().where(ZtrackingPaymentIntent.payment_intent_id == intent["id"])
    return [row.cause for row in rows.order_by(ZtrackingPaymentIntent.ztracking_version)]


# -- Stripe acted, then answered a 5xx (saved under the key): the operation's look-up


@pytest.mark.parametrize("operation", list(LIFECYCLE))
def test_a_500_after_stripe_acted_is_resolved_by_the_operations_look_up_with_one_request_at_stripe(
    service: StripeProxy, stripe_api, operation
):
    make, action, extra, expected = LIFECYCLE[operation]
    intent = make(stripe_api, f"acted-{action}")
    service.add_rule(on_action(intent, action), [Fault(ACT_THEN_500)])
    answer = call(operation, {"paymentIntentId": intent["id"], **extra})
    stripe_view = at_stripe(stripe_api, intent)
    sent = posts(service, intent, action)
    report(
        "19",
        f"{action} acted at Stripe, then a 500 saved under its key",
        answered=answer["status"],
        at_stripe=stripe_view.status,
        posts=len(sent),
    )
    assert answer["status"] == stripe_view.status == expected
    assert len(sent) == 1 and sent[0].status == 500  # found by looking, the key never sent again
    assert PaymentIntent.get_by_id(intent["id"]).status == expected
    if action == "capture":
        assert answer["amountReceived"] == stripe_view.amount_received == 1500


# -- Stripe acted, the answer never came, the last attempt gave the claim back: the janitor's look-up


@pytest.mark.parametrize("operation", list(LIFECYCLE))
def test_a_lost_answer_on_the_last_attempt_is_found_at_stripe_by_the_janitor_and_replayed_to_the_callers_retry(
    service: StripeProxy, stripe_api, operation
):
    make, action, extra, expected = LIFECYCLE[operation]
    intent = make(stripe_api, f"lost-{action}")
    service.add_rule(on_action(intent, action), [Fault(TIMEOUT_AFTER_SENT, hold_s=0.2)])
    payload = {"paymentIntentId": intent["id"], **extra}
    ctx = context(final_attempt=True)
    with pytest.raises(TransientError):
        call(operation, payload, ctx)
    record = IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(ctx.scoped_key))
    assert record.state == "retryable" and record.stripe_started_at is not None
    old = utcnow() - dt.timedelta(minutes=30)
    IdempotencyRecord.update(updated_at=old, locked_until=old, execution_until=old).where(
        IdempotencyRecord.id == record.id
    ).execute()
    counts = janitor.run()
    retry = call(operation, payload, context(key=ctx.scoped_key))
    report(
        "19",
        f"{action} acted at Stripe, its answer lost on the last attempt, then the janitor",
        janitor=str(counts),
        answered=retry["status"],
        posts=len(posts(service, intent, action)),
    )
    assert counts.get("claim: fetched") == 1
    assert retry["status"] == at_stripe(stripe_api, intent).status == expected
    assert len(posts(service, intent, action)) == 1  # looked up, never sent again
    assert causes(intent)[-1] == f"janitor:fetched:{operation}"


# -- races


@pytest.fixture()
def patient_stripe(service: StripeProxy, monkeypatch: pytest.MonkeyPatch) -> StripeProxy:
    """The service fixture with the stack's Stripe timeout instead of its 1 s: a race holds requests at Stripe."""
    import settings
    import stripe_client

    monkeypatch.setenv("STRIPE_TIMEOUT_S", "10")
    settings.reload_settings()
    stripe_client.reset_client()
    return service


def in_own_unit(operation: str, payload: dict) -> dict | OperationError:
    """The operation as a worker runs it, on a connection of its own: its answer, or the error it answers."""
    with models.unit_of_work():
        try:
            return call(operation, payload, context(key=f"race-{uuid.uuid4()}"))
        except OperationError as exc:
            return exc


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("first", ["cancel", "capture"])
def test_capture_against_cancel_one_wins_at_stripe_and_the_other_says_why(patient_stripe, stripe_api, first):
    service = patient_stripe
    intent = authorised(stripe_api, f"race-{first}-first")
    later = "capture" if first == "cancel" else "cancel"
    # The later one reaches Stripe and is held there until the first has acted.
    service.add_rule(on_action(intent, later), [Fault("delay", hold_s=4.0)])
    operations = {
        "capture": ("capture-payment-intent", {"paymentIntentId": intent["id"]}),
        "cancel": (
            "cancel-payment-intent",
            {"paymentIntentId": intent["id"], "cancellationReason": "requested_by_customer"},
        ),
    }
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(in_own_unit, *operations[later])
        wait_for(lambda: bool(posts(service, intent, later)), f"the {later} to reach Stripe")
        won = in_own_unit(*operations[first])
        lost = held.result(timeout=60)
    stripe_view = at_stripe(stripe_api, intent)
    stored = PaymentIntent.get_by_id(intent["id"])
    report(
        "19",
        f"capture against cancel, the {first} first at Stripe",
        winner=won["status"] if isinstance(won, dict) else won.code,
        loser=lost.message if isinstance(lost, OperationError) else lost["status"],
        at_stripe=stripe_view.status,
    )
    assert isinstance(won, dict) and isinstance(lost, OperationError) and lost.code == "invalid_state"
    if first == "cancel":
        assert won["status"] == stripe_view.status == stored.status == "canceled"
        assert "canceled" in lost.message and "expired" not in lost.message  # a cancel won: never "expired"
        assert stripe_view.amount_received == stored.amount_received == 0
        capture = PaymentAttempt.operation == "capture"
        assert PaymentAttempt.get(PaymentAttempt.payment_intent_id == intent["id"], capture).status == "failed"
    else:
        assert won["status"] == stripe_view.status == stored.status == "succeeded"
        assert "succeeded" in lost.message
        assert stripe_view.amount_received == stored.amount_received == AMOUNT


def test_undirected_capture_against_cancel_races_each_end_with_one_winner_and_our_rows_as_stripes(
    patient_stripe, stripe_api
):
    pairs = size(4, 12)
    intents = [authorised(stripe_api, "race-free") for _ in range(pairs)]
    barrier = threading.Barrier(2 * pairs)

    def at_once(operation: str, payload: dict) -> dict | OperationError:
        barrier.wait(timeout=30)
        return in_own_unit(operation, payload)

    with ThreadPoolExecutor(2 * pairs) as pool:
        captures = [pool.submit(at_once, "capture-payment-intent", {"paymentIntentId": i["id"]}) for i in intents]
        cancels = [pool.submit(at_once, "cancel-payment-intent", {"paymentIntentId": i["id"]}) for i in intents]
        outcomes = [(c.result(timeout=90), k.result(timeout=90)) for c, k in zip(captures, cancels, strict=True)]
    winners = {"capture": 0, "cancel": 0}
    for intent, (captured, canceled) in zip(intents, outcomes, strict=True):
        stripe_view = at_stripe(stripe_api, intent)
        stored = PaymentIntent.get_by_id(intent["id"])
        assert [isinstance(o, dict) for o in (captured, canceled)].count(True) == 1, (captured, canceled)
        loser = canceled if isinstance(captured, dict) else captured
        assert isinstance(loser, OperationError) and loser.code == "invalid_state"
        assert "expired" not in loser.message  # nothing expired here
        assert (stored.status, stored.amount_received) == (stripe_view.status, stripe_view.amount_received)
        winners["capture" if isinstance(captured, dict) else "cancel"] += 1
    report("19", f"{pairs} undirected capture/cancel races", captures=winners["capture"], cancels=winners["cancel"])


def test_two_concurrent_captures_capture_once_and_the_other_is_told(patient_stripe, stripe_api):
    service = patient_stripe
    intent = authorised(stripe_api, "race-two-captures")
    # The first capture is held at Stripe long enough that the second is certainly sent meanwhile.
    service.add_rule(on_action(intent, "capture"), [Fault("delay", hold_s=1.0)])
    barrier = threading.Barrier(2)

    def capture(amount: int) -> dict | OperationError:
        barrier.wait(timeout=30)
        return in_own_unit("capture-payment-intent", {"paymentIntentId": intent["id"], "amountToCapture": amount})

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(capture, [900, 1700]))
    captured = [a for a in answers if isinstance(a, dict)]
    refused = [a for a in answers if isinstance(a, OperationError)]
    stripe_view = at_stripe(stripe_api, intent)
    stored = PaymentIntent.get_by_id(intent["id"])
    report(
        "19",
        "two captures (900 and 1700) of one authorisation at once",
        captured=len(captured),
        refused=",".join(r.code for r in refused),
        capture_posts=len(posts(service, intent, "capture")),
        received_at_stripe=stripe_view.amount_received,
    )
    assert len(captured) == 1 and len(refused) == 1 and refused[0].code == "invalid_state"
    assert len(posts(service, intent, "capture")) == 1  # the loser never reached Stripe
    assert captured[0]["amountReceived"] == stripe_view.amount_received == stored.amount_received
    assert stripe_view.amount_received in (900, 1700) and stripe_view.status == stored.status == "succeeded"
    attempts = PaymentAttempt.select().where(
        PaymentAttempt.payment_intent_id == intent["id"], PaymentAttempt.operation == "capture"
    )
    assert [a.status for a in attempts] == ["succeeded"]  # the refused one opened no attempt
