"""A task whose Stripe call finds the shared rate budget booked past its wait goes back to the queue: nothing is
sent meanwhile, no failure retry is spent, and the caller's answer is the payment, not an error."""

from __future__ import annotations

import logging
import uuid

import pytest

import stripe_pacing
from stripe_pacing import MUTATING
from tests.support.scripted_stripe import scripted_stripe, service_stripe
from tests.tasks.test_retries import INTENT, create_for_new_customer, posts_of

pytestmark = pytest.mark.integration


@pytest.fixture()
def paced_stripe_at(monkeypatch):
    """The service's Stripe at a scripted server, paced at 2 calls/s (one at once) with waits of at most 0.3 s."""
    with service_stripe(monkeypatch, STRIPE_RATE_LIMIT="2", STRIPE_TIMEOUT_S="0.3") as point:
        yield point


def test_a_create_paced_out_of_its_wait_goes_back_to_the_queue_and_is_paid_once_without_spending_retries(
    domain_db, paced_stripe_at, monkeypatch, caplog
):
    from tasks.operations import TASKS

    # No failure retry at all: an answer other than the payment would come from the first paced-out attempt.
    monkeypatch.setattr(TASKS["create-payment-intent"], "max_retries", 0)
    with scripted_stripe([(200, {**INTENT, "id": f"pi_{uuid.uuid4().hex}"})]) as (base, seen):
        paced_stripe_at(base)
        pacer = stripe_pacing.pacer()
        assert pacer is not None and pacer.account.burst == 1
        for _ in range(3):  # other workers' calls hold the next 1.5 s of the budget, far past a 0.3 s wait
            assert pacer.book(MUTATING, 10)[0]
        with caplog.at_level(logging.INFO, logger="tasks"):
            envelope = create_for_new_customer("paced-cust", f"paced-{uuid.uuid4()}")
    requeued = [r for r in caplog.records if "waits in the queue" in r.getMessage()]
    assert envelope.get("response", {}).get("status") == "requires_payment_method", envelope
    assert requeued  # it did wait its turn in the queue ...
    assert len(posts_of(seen)) == 1  # ... and Stripe saw the create once, never a refused attempt
