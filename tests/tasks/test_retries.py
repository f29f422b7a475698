"""Retry rules: transient failures are retried with the same idempotency key; answers are never retried."""

from __future__ import annotations

import uuid

import pytest

import settings
import stripe_client
from errors import OperationError, TransientError
from tasks.base import backoff_with_jitter
from tests.support.scripted_stripe import scripted_stripe, service_stripe

pytestmark = pytest.mark.integration

INTENT = {
    "id": "pi_scripted",
    "object": "payment_intent",
    "status": "requires_payment_method",
    "amount": 100,
    "amount_received": 0,
    "amount_capturable": 0,
    "client_secret": "pi_scripted_secret_x",
    "currency": "usd",
}


def error(status_type: str, **extra) -> dict:
    return {"error": {"type": status_type, "message": "scripted", **extra}}


@pytest.fixture()
def stripe_at(monkeypatch):
    """Point the service's Stripe client at a scripted server for one test."""
    with service_stripe(monkeypatch) as point:
        yield point


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, error("api_error"), TransientError),
        (503, error("api_error"), TransientError),
        (429, error("rate_limit_error"), TransientError),
        (409, error("invalid_request_error", code="lock_timeout"), TransientError),
        (409, error("invalid_request_error", code="idempotency_key_in_use"), TransientError),
        (400, error("idempotency_error"), TransientError),
        (402, error("card_error", code="card_declined", decline_code="insufficient_funds"), "card_declined"),
        (400, error("invalid_request_error", param="amount", code="amount_too_small"), "validation_error"),
        (404, error("invalid_request_error", code="resource_missing"), "not_found"),
        (401, error("invalid_request_error"), "stripe_error"),
    ],
)
def test_stripe_answers_map_to_transient_or_to_an_error_code(stripe_at, status, body, expected):
    with scripted_stripe([(status, body)]) as (base, seen):
        stripe_at(base)
        with pytest.raises((TransientError, OperationError)) as raised:
            stripe_client.create_payment_intent({"amount": 100, "currency": "usd"}, idempotency_key="k")
    if expected is TransientError:
        assert isinstance(raised.value, TransientError)
    else:
        assert isinstance(raised.value, OperationError) and raised.value.code == expected
    assert len(seen) == 1  # the SDK itself does not retry: the task does, with the same key


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        # Stripe still runs a request with our key: another execution of this request, to wait for.
        (409, error("invalid_request_error", code="idempotency_key_in_use"), "idempotency_key_in_use"),
        (409, error("invalid_request_error", code="lock_timeout"), "stripe_error"),
    ],
)
def test_stripe_busy_with_our_key_is_told_apart_from_other_conflicts(stripe_at, status, body, code):
    with scripted_stripe([(status, body)]) as (base, _):
        stripe_at(base)
        with pytest.raises(TransientError) as raised:
            stripe_client.create_payment_intent({"amount": 100, "currency": "usd"}, idempotency_key="k")
    assert raised.value.code == code


def test_an_unreachable_stripe_is_transient(stripe_at):
    stripe_at("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(TransientError):
        stripe_client.retrieve_payment_intent("pi_x")


def run_task(operation: str, payload: dict, key: str, task_id: str | None = None):
    from tasks.operations import TASKS

    return TASKS[operation].apply(args=[payload, {"idempotencyKey": key}], task_id=task_id).get()


def create_for_new_customer(customer_id: str, key: str) -> dict:
    """A customer known here (and at the scripted Stripe), then a 100 usd create for it through the task."""
    from models import Customer

    Customer.create(
        id=f"vycus_{uuid.uuid4().hex[:10]}", platform_customer_id=customer_id, stripe_customer_id=f"cus_{customer_id}"
    )
    return run_task("create-payment-intent", {"customerId": customer_id, "amount": 100, "currency": "usd"}, key)


NOT_ACTED = {"Stripe-Should-Retry": "true"}  # a 5xx Stripe did not act on (nothing saved under the key)
SAVED = {"Stripe-Should-Retry": "false"}  # a 5xx Stripe saved under the key: a retry would only replay it


def posts_of(seen: list[dict]) -> list[dict]:
    return [r for r in seen if r["method"] == "POST" and r["path"] == "/v1/payment_intents"]


def lookups_of(seen: list[dict]) -> list[dict]:
    return [r for r in seen if r["method"] == "GET" and r["path"].startswith("/v1/payment_intents?")]


def test_no_answer_or_a_rate_limit_is_retried_with_the_same_stripe_key_until_it_passes(domain_db, stripe_at):
    answers = [(429, error("rate_limit_error")), (409, error("invalid_request_error", code="lock_timeout"))]
    with scripted_stripe([*answers, (200, {**INTENT, "id": f"pi_{uuid.uuid4().hex}"})]) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("retry-cust", f"retry-{uuid.uuid4()}")
    assert envelope["response"]["status"] == "requires_payment_method"
    posts = posts_of(seen)
    assert len(posts) == 3
    assert len({r["idempotency_key"] for r in posts}) == 1 and posts[0]["idempotency_key"].startswith("vy-")


def test_a_stripe_rate_limit_that_lasts_is_retried_a_bounded_number_of_times_then_answered_retry_later(
    domain_db, stripe_at
):
    from settings import get_settings

    with scripted_stripe([(429, error("rate_limit_error"))] * 50) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("ratelimited-cust", f"rl-{uuid.uuid4()}")
        # A keyed create was sent: the caller is told to retry with its key (the retry sends the same request).
        assert envelope["error"]["code"] == "outcome_unknown" and envelope["error"]["status"] == 503, envelope
        assert len(posts_of(seen)) == get_settings().task_max_retries + 1  # bounded: never a stream of retries


def test_a_read_stripe_keeps_rate_limiting_is_answered_429_rate_limited_after_bounded_tries(domain_db, stripe_at):
    from settings import get_settings

    intent = {**INTENT, "id": f"pi_{uuid.uuid4().hex}"}
    with scripted_stripe([(200, intent)], gets=lambda path, seen: (429, error("rate_limit_error"))) as (base, seen):
        stripe_at(base)
        created = create_for_new_customer("rl-read-cust", f"rl-read-{uuid.uuid4()}")
        read = run_task("payment-status-update", {"paymentIntentId": created["response"]["id"]}, None)
    assert read["error"]["code"] == "rate_limited" and read["error"]["status"] == 429, read
    reads = [r for r in seen if r["method"] == "GET" and r["path"] == f"/v1/payment_intents/{intent['id']}"]
    assert len(reads) == get_settings().task_max_retries + 1


def test_a_5xx_stripe_did_not_act_on_is_looked_up_then_sent_again_under_a_new_key(domain_db, stripe_at):
    intent = {**INTENT, "id": f"pi_{uuid.uuid4().hex}"}
    with scripted_stripe([(500, error("api_error"), NOT_ACTED), (200, intent)]) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("notacted-cust", f"notacted-{uuid.uuid4()}")
    assert envelope["response"]["status"] == "requires_payment_method", envelope
    posts = posts_of(seen)
    assert len(posts) == 2 and len({r["idempotency_key"] for r in posts}) == 2
    assert posts[1]["idempotency_key"] == posts[0]["idempotency_key"] + "-s2"
    assert posts[0]["body"] == posts[1]["body"]  # the same request, only under a new key
    assert lookups_of(seen)  # looked for before sending again


def test_a_5xx_that_may_have_acted_is_looked_up_and_the_intent_found_is_the_answer(domain_db, stripe_at):
    from urllib.parse import parse_qs

    def found_at_stripe(path: str, seen: list[dict]) -> tuple[int, dict]:
        ours = parse_qs(posts_of(seen)[0]["body"])["metadata[vy_payment_intent_id]"][0]
        made = {**INTENT, "id": made_id, "metadata": {"vy_payment_intent_id": ours}}
        return 200, {"object": "list", "data": [made], "has_more": False}

    made_id = f"pi_made_before_the_500_{uuid.uuid4().hex[:8]}"
    with scripted_stripe([(500, error("api_error"), SAVED)], gets=found_at_stripe) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("acted-cust", f"acted-{uuid.uuid4()}")
    assert envelope["response"]["stripePaymentIntentId"] == made_id, envelope
    assert len(posts_of(seen)) == 1  # never sent again: the saved 500 would only be replayed
    lookup = lookups_of(seen)[0]["path"]
    assert "customer=cus_acted-cust" in lookup and "created%5Bgte%5D=" in lookup and "created%5Blte%5D=" in lookup


def test_a_decline_is_answered_not_retried(domain_db, stripe_at):
    declined = error("card_error", code="card_declined", payment_intent={**INTENT, "id": "pi_declined"})
    with scripted_stripe([(402, declined)]) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("decl-cust", f"decl-{uuid.uuid4()}")
    assert envelope["error"]["code"] == "card_declined"
    assert len(seen) == 1


def test_a_5xx_that_may_have_acted_and_is_not_found_ends_in_outcome_unknown_with_the_key_given_back(
    domain_db, stripe_at
):
    from domain.idempotency import key_hash
    from models import IdempotencyRecord

    key = f"unknown-{uuid.uuid4()}"
    with scripted_stripe([(503, error("api_error"))]) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("unknown-cust", key)
    assert envelope["error"]["code"] == "outcome_unknown" and envelope["error"]["status"] == 503
    assert len(posts_of(seen)) == 1  # Stripe said nothing of acting: never repeated, only looked up
    assert len(lookups_of(seen)) == settings.get_settings().task_max_retries + 1
    record = IdempotencyRecord.get(IdempotencyRecord.key_hash == key_hash(key))
    assert record.state == "retryable" and record.stripe_unknown == "server_error" and record.stripe_started_at


def test_retries_of_failures_stripe_did_not_act_on_are_bounded_and_answer_stripe_error(domain_db, stripe_at):
    from domain.idempotency import key_hash
    from models import IdempotencyRecord

    key = f"down-{uuid.uuid4()}"
    with scripted_stripe([(503, error("api_error"), NOT_ACTED)]) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("down-cust", key)
    # Every attempt was refused before Stripe acted, and a look-up found nothing: nothing happened, known.
    assert envelope["error"]["code"] == "stripe_error"
    posts = posts_of(seen)
    assert len(posts) == settings.get_settings().task_max_retries + 1
    assert len({r["idempotency_key"] for r in posts}) == len(posts)
    assert IdempotencyRecord.get(IdempotencyRecord.key_hash == key_hash(key)).state == "retryable"


def test_backoff_grows_exponentially_and_is_capped():
    assert all(0 <= backoff_with_jitter(0) <= 0.5 for _ in range(50))
    assert max(backoff_with_jitter(3) for _ in range(200)) > 2.0
    assert all(backoff_with_jitter(20) <= 20.0 for _ in range(50))


def test_stripe_busy_with_our_key_is_waited_for_without_spending_retries(domain_db, stripe_at, monkeypatch):
    """Its sibling will succeed: more 409s than the task has retries still end in the payment, never stripe_error."""
    import tasks.base

    monkeypatch.setattr(tasks.base, "BUSY_PAUSE_S", (0.01, 0.02))
    busy = settings.get_settings().task_max_retries + 2
    in_use = error("invalid_request_error", code="idempotency_key_in_use")
    intent = {**INTENT, "id": f"pi_busy_{uuid.uuid4().hex[:10]}"}
    with scripted_stripe([(409, in_use)] * busy + [(200, intent)]) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("busy-cust", f"busy-{uuid.uuid4()}")
    assert envelope["response"]["status"] == "requires_payment_method", envelope
    posts = posts_of(seen)
    assert len(posts) == busy + 1 and len({r["idempotency_key"] for r in posts}) == 1


def test_a_redelivery_of_a_running_task_waits_for_it_and_answers_its_outcome(domain_db):
    """The same task id delivered again (RabbitMQ after a lost connection) while its first delivery still runs."""
    import threading
    import time

    import models
    from domain import idempotency
    from domain.schemas import CreateRefundInput

    task_id, key = str(uuid.uuid4()), f"redelivered-{uuid.uuid4()}"
    payload = {"paymentIntentId": f"vypi_{uuid.uuid4().hex[:10]}", "amount": 300}
    canonical = CreateRefundInput.model_validate(payload).canonical()
    first = idempotency.claim("create-refund", key, canonical, task_id, "refund", 3600, "trace")
    outcome = {"id": first.resource_id, "amount": 300, "status": "succeeded"}

    def first_delivery_finishes() -> None:
        time.sleep(1.5)
        with models.database.obj.connection_context():
            idempotency.complete(first, {"response": outcome})

    finisher = threading.Thread(target=first_delivery_finishes)
    finisher.start()
    began = time.monotonic()
    envelope = run_task("create-refund", payload, key, task_id)
    finisher.join(10)
    assert envelope == {"response": outcome, "replayed": True}  # the first delivery's outcome, said to be so
    assert time.monotonic() - began >= 1.0  # it waited for the first delivery instead of running beside it


def test_a_pool_left_full_after_stripe_answered_is_retried_under_the_same_key_not_answered_500(
    domain_db, stripe_at, monkeypatch
):
    """The connection is lent back during the Stripe call; if none is free to write the outcome, the task retries
    (the retry replays Stripe under the same key) instead of answering internal_error for a payment that exists."""
    from playhouse.pool import MaxConnectionsExceeded

    import domain.payment_intents as payment_intents
    from models import PaymentIntent

    real_write_transaction = payment_intents.write_transaction
    starved = {"left": 1}

    def write_transaction_once_starved():
        if starved["left"]:
            starved["left"] -= 1
            raise MaxConnectionsExceeded("Exceeded maximum connections.")
        return real_write_transaction()

    monkeypatch.setattr(payment_intents, "write_transaction", write_transaction_once_starved)
    intent = {**INTENT, "id": f"pi_pool_{uuid.uuid4().hex[:10]}"}
    with scripted_stripe([(200, intent), (200, intent)]) as (base, seen):
        stripe_at(base)
        envelope = create_for_new_customer("pool-cust", f"pool-{uuid.uuid4()}")
    assert envelope["response"]["stripePaymentIntentId"] == intent["id"], envelope
    posts = posts_of(seen)
    assert len(posts) == 2 and len({r["idempotency_key"] for r in posts}) == 1
    assert PaymentIntent.select().where(PaymentIntent.stripe_payment_intent_id == intent["id"]).count() == 1
