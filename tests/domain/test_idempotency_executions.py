"""One execution at a time per claim: a task delivered again while it still runs (same task id, so same owner)
waits for the first execution and replays its outcome, takes over once the first one's lease lapsed (its worker
died), and an execution that lost its claim can neither store, give back nor write anything."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest

import models
from domain import idempotency
from errors import OperationError, TransientError
from models import Customer, IdempotencyRecord, utcnow, write_transaction
from tests.domain.helpers import REQUEST, Killed, context, lapse, take
from tests.support import services

pytestmark = pytest.mark.integration


def run_once(key: str, execute, final_attempt: bool = True):
    return idempotency.execute_once(context(key, "task-a", final_attempt), "create-refund", REQUEST, "refund", execute)


def record(claim: idempotency.Claim) -> IdempotencyRecord:
    return IdempotencyRecord.get_by_id(claim.record_id)


def record_of(key: str) -> IdempotencyRecord:
    return IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(key))


def test_a_second_execution_of_the_same_task_waits_for_the_first_then_replays_its_outcome(domain_db):
    key = str(uuid.uuid4())
    first = take(key)
    with pytest.raises(idempotency.ExecutionInProgress) as waiting:
        take(key)  # RabbitMQ's redelivery of the same task while the first delivery still runs
    assert waiting.value.code == "idempotency_key_in_use" and isinstance(waiting.value, TransientError)
    assert record(first).execution_token == first.execution  # the waiting one changed nothing
    assert idempotency.complete(first, {"response": {"id": first.resource_id}})
    assert take(key).replay == {"response": {"id": first.resource_id}}


def test_a_lapsed_lease_is_taken_over_and_the_stale_execution_can_no_longer_act(domain_db):
    key = str(uuid.uuid4())
    first = take(key)
    lapse(first.record_id)
    second = take(key)  # the redelivery after the first worker died
    assert second.resumed and second.resource_id == first.resource_id
    assert second.execution and second.execution != first.execution
    assert not idempotency.complete(first, {"error": {"code": "stripe_error"}})
    assert not idempotency.release(first)
    assert not idempotency.step_down(first)
    assert not idempotency.renew(first)
    with pytest.raises(idempotency.ClaimLost):
        idempotency.finish(first, {"error": {"code": "stripe_error"}})
    with pytest.raises(idempotency.ClaimLost):
        idempotency.start_stripe_call(first, {"params": {"amount": 1}})
    assert record(second).stripe_params is None
    assert idempotency.start_stripe_call(second, {"params": {"amount": 100}}).stripe_params
    assert idempotency.renew(second)
    idempotency.finish(second, {"response": {"id": second.resource_id}})
    stored = record(second)
    assert stored.state == "completed" and stored.outcome == {"response": {"id": second.resource_id}}
    assert idempotency.stored_by(second) and not idempotency.stored_by(first)


def test_a_stale_execution_s_rows_are_rolled_back_with_its_outcome(domain_db):
    key = str(uuid.uuid4())
    first = take(key)
    lapse(first.record_id)
    take(key)
    platform_id = f"stale-{uuid.uuid4().hex[:8]}"
    with pytest.raises(idempotency.ClaimLost), write_transaction():
        Customer.create(id=f"vycus_{uuid.uuid4().hex[:10]}", platform_customer_id=platform_id)
        idempotency.finish(first, {"response": {"id": first.resource_id}})
    assert Customer.get_or_none(Customer.platform_customer_id == platform_id) is None
    assert record(first).state == "in_flight"


def test_an_execution_that_lost_its_claim_answers_nothing_of_its_own(domain_db):
    """Its error is not the answer: the holder's outcome is, perhaps the success this one did not see."""
    key = str(uuid.uuid4())
    taken_over: list[idempotency.Claim] = []

    def execute(claim: idempotency.Claim) -> dict:
        lapse(claim.record_id)
        taken_over.append(take(key))
        raise OperationError("card_declined", "declined")

    with pytest.raises(idempotency.ClaimLost):
        run_once(key, execute)
    holder = record(taken_over[0])
    assert holder.state == "in_flight" and holder.outcome is None
    assert holder.execution_token == taken_over[0].execution


def test_an_error_the_holder_stored_itself_is_still_its_answer(domain_db):
    key = str(uuid.uuid4())

    def execute(claim: idempotency.Claim) -> dict:
        with write_transaction():
            idempotency.finish(claim, {"error": {"code": "card_declined"}})
        raise OperationError("card_declined", "declined")

    with pytest.raises(OperationError) as answered:
        run_once(key, execute)
    assert not isinstance(answered.value, TransientError) and answered.value.code == "card_declined"


def stepped_down_after(key: str, error: BaseException, *, final_attempt: bool = True) -> IdempotencyRecord:
    """Run an execution that fails with `error`; its record must still be the owner's, with no execution on it."""

    def fail(claim: idempotency.Claim) -> dict:
        raise error

    with pytest.raises(type(error)):
        run_once(key, fail, final_attempt=final_attempt)
    stored = record_of(key)
    assert stored.state == "in_flight" and stored.execution_token is None
    return stored


def test_a_retried_task_resumes_at_once_and_the_key_stays_its_own(domain_db):
    key = str(uuid.uuid4())
    stored = stepped_down_after(key, TransientError("Stripe answered 503", code="stripe_error"), final_attempt=False)
    with pytest.raises(OperationError) as busy:
        take(key, owner="task-b")
    assert busy.value.code == "idempotency_key_in_use"
    assert take(key).resource_id == stored.resource_id  # the retry does not wait out a lease


def test_stripe_busy_with_our_key_never_gives_the_key_back_even_on_the_last_attempt(domain_db):
    busy = TransientError("Stripe is still processing a request with this key", code="idempotency_key_in_use")
    stepped_down_after(str(uuid.uuid4()), busy, final_attempt=True)


def test_a_killed_execution_steps_down_so_its_redelivery_need_not_wait(domain_db):
    key = str(uuid.uuid4())
    stepped_down_after(key, Killed())
    assert take(key).resumed


def test_the_heartbeat_keeps_a_long_execution_s_claim_from_its_redelivery(domain_db, monkeypatch):
    # Twenty beats to a lease: a loaded machine may miss several before the lease lapses.
    monkeypatch.setattr(idempotency, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(idempotency, "EXECUTION_LEASE", dt.timedelta(seconds=2))
    key = str(uuid.uuid4())
    started, go_on = threading.Event(), threading.Event()
    answers: list = []

    def slow(claim: idempotency.Claim) -> dict:
        started.set()
        go_on.wait(10)  # a Stripe call far longer than the lease
        idempotency.complete(claim, {"response": {"id": claim.resource_id}})
        return {"id": claim.resource_id}

    def first_delivery() -> None:
        with models.database.obj.connection_context():
            answers.append(run_once(key, slow))

    thread = threading.Thread(target=first_delivery)
    thread.start()
    try:
        assert started.wait(10)
        first_until = record_of(key).execution_until
        # The lease the claim was taken with has run out, and only the heartbeat's renewals hold it now.
        services.wait_until(
            lambda: utcnow() > first_until + dt.timedelta(seconds=0.5) and record_of(key).execution_until > utcnow(),
            30,
            "the first lease to lapse while the heartbeat renews it",
            0.05,
        )
        with pytest.raises(idempotency.ExecutionInProgress):
            take(key)
    finally:
        go_on.set()
        thread.join(10)
    assert answers and take(key).replay == {"response": answers[0]}
