"""Drill 9: races — 50 concurrent refunds on one intent never give back more than was captured (and Stripe's total
equals ours); 20 concurrent creates under one Idempotency-Key make one intent at Stripe and one row."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.drills.conftest import FULL
from tests.drills.helpers import customer, invariant_violations, paid_intent, remember_secrets, retry_until_final, vault
from tests.drills.report import report
from tests.support.stripe_objects import intents_of_customers, refunds_of

pytestmark = pytest.mark.integration

CAPTURED = 10_000


@pytest.mark.parametrize(
    "amounts",
    [
        pytest.param([500] * 50, id="50x500"),
        pytest.param(
            (lambda rng: [rng.randint(1, 1500) for _ in range(50)])(random.Random(9)),
            id="50-random",
            marks=[] if FULL else pytest.mark.skip(reason="full run only (make drills)"),
        ),
    ],
)
def test_fifty_concurrent_refunds_never_exceed_the_captured_amount_and_match_stripe(stack, api, stripe_api, amounts):
    intent = paid_intent(api, stripe_api, "race-refund", amount=CAPTURED)

    def refund(amount: int):
        return api.post(
            "/refunds",
            json={"paymentIntentId": intent["id"], "amount": amount},
            headers={"Idempotency-Key": f"race-{uuid.uuid4()}"},
        )

    with ThreadPoolExecutor(len(amounts)) as pool:
        answers = list(pool.map(refund, amounts))
    succeeded = [a.json() for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code == 422 and a.json()["error"]["code"] == "refund_exceeds_amount"]
    stored = api.get(f"/payment-intents/{intent['id']}").json()
    at_stripe = refunds_of(stripe_api, intent["stripePaymentIntentId"])
    stripe_total = sum(r["amount"] for r in at_stripe if r["status"] in ("pending", "succeeded"))
    rows = stack.sql(
        "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM refund WHERE payment_intent_id = %s AND status = 'succeeded'",
        (intent["id"],),
    )[0]
    report(
        "9a",
        f"{len(amounts)} concurrent refunds ({'equal' if len(set(amounts)) == 1 else 'random'} amounts) on one intent",
        requests_sent=len(amounts),
        refunded_201=len(succeeded),
        refused_422=len(refused),
        other=len(answers) - len(succeeded) - len(refused),
        captured=CAPTURED,
        refunded_in_db=stored["amountRefunded"],
        refunded_at_stripe=stripe_total,
        refunds_at_stripe=len(at_stripe),
        refund_rows=rows[0],
    )
    assert len(succeeded) + len(refused) == len(amounts)
    assert stored["amountRefunded"] == sum(r["amount"] for r in succeeded) == stripe_total == int(rows[1])
    assert stored["amountRefunded"] <= CAPTURED and len(at_stripe) == len(succeeded) == rows[0]
    if len(set(amounts)) == 1:
        assert len(succeeded) == CAPTURED // amounts[0]
    else:
        # Each refusal was right when decided: it asked for more than what the successes left.
        assert all(
            a.json()["error"]["details"]["requested"] > a.json()["error"]["details"]["refundable"] for a in refused
        )
    assert invariant_violations(stack.sql) == {}


def test_twenty_concurrent_creates_with_one_idempotency_key_make_one_intent_and_one_row(stack, api, stripe_api):
    customer_id = customer("race-create")
    vault(api, stripe_api, customer_id)
    body = {"customerId": customer_id, "amount": 2300, "currency": "usd", "confirm": True}
    key = f"race-one-key-{uuid.uuid4()}"

    def create():
        return api.post("/payment-intents", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: create(), range(20)))
    first_codes = [a.status_code for a in answers]
    # The callers answered 409 retry with the same key, as told, until they get the result.
    finals = [a if a.status_code != 409 else retry_until_final(create) for a in answers]
    for final in finals:
        remember_secrets(final)
    ids = {f.json().get("id") for f in finals}
    at_stripe = intents_of_customers(stripe_api, [customer_id])
    rows = stack.sql("SELECT COUNT(*) FROM payment_intent WHERE customer_id = %s", (customer_id,))[0][0]
    report(
        "9b",
        "20 concurrent creates under one Idempotency-Key",
        requests_sent=20,
        first_answer_201=first_codes.count(201),
        first_answer_409_in_use=first_codes.count(409),
        retries_until_201=sum(f.status_code == 201 for f in finals) - first_codes.count(201),
        distinct_intents_answered=len(ids),
        intents_at_stripe=len(at_stripe),
        intent_rows=rows,
    )
    assert set(first_codes) <= {201, 409}
    assert [f.status_code for f in finals] == [201] * 20 and len(ids) == 1
    assert len(at_stripe) == 1 and rows == 1
    assert at_stripe[0]["metadata"]["vy_payment_intent_id"] == ids.pop()
