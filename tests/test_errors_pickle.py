"""The service's exceptions survive pickling (Celery pickles a task's error to log and store it): each round-trips
with its code, message, details and type, and a failing periodic task logs its own error, not Celery's
UnpickleableExceptionWrapper."""

from __future__ import annotations

import ast
import builtins
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from celery.utils.serialization import UnpickleableExceptionWrapper, get_pickleable_exception

from domain.idempotency import ClaimLost, ExecutionInProgress
from domain.intent_lifecycle import _RowMoved
from domain.stripe_outcomes import OutcomeUnknown
from doors.oauth import KeysUnavailable, TokenRefused
from errors import OperationError, PaceExceeded, StripeMayHaveActed, TransientError
from kafka_relay.handover import HandOverError
from kafka_relay.relay import HandOverFailed
from messaging.replies import ReplyNotDelivered
from messaging.wire import PoisonMessage
from models import PaymentIntent

ROOT = Path(__file__).resolve().parents[1]
NOT_THE_SERVICE = {"tests", "bench", "stand_ins", "build", "var", ".venv", "migrations"}


def examples() -> list[BaseException]:
    """One of each exception class the service defines, made with every constructor argument it takes."""
    declined = OperationError("card_declined", "Your card was declined.", {"declineCode": "insufficient_funds"})
    return [
        declined,
        OperationError("invalid_state", "Another capture is in progress.", {"status": "processing"}, retry_later=True),
        TransientError("The database went away.", code="timeout"),
        PaceExceeded(2.5),
        StripeMayHaveActed("Stripe answered 500.", kind="server_error", should_retry=False),
        ExecutionInProgress(),
        ClaimLost(),
        OutcomeUnknown("Stripe may have refunded."),
        PoisonMessage("invalid_json", declined, "trace-1", {"topic": "t-response", "key": "k", "headers": {}}),
        _RowMoved(PaymentIntent(id="vypi_1", stripe_payment_intent_id="pi_1", ztracking_version=4)),
        TokenRefused("the token has expired"),
        KeysUnavailable("the identity provider does not answer"),
        ReplyNotDelivered("reply to t-response not delivered: timeout"),
        HandOverError("broker away"),
        HandOverFailed("broker away"),
    ]


def defined_exception_classes() -> set[str]:
    """Every exception class defined in the service's source, as `module.Class` (read, not imported)."""
    known = {name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, Exception)}
    classes: dict[str, tuple[str, list[str]]] = {}
    for path in ROOT.rglob("*.py"):
        if NOT_THE_SERVICE & set(path.relative_to(ROOT).parts):
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                classes[node.name] = (module, bases)
    grew = True
    while grew:  # a class is an exception when one of its bases is
        before = len(known)
        known |= {name for name, (_, bases) in classes.items() if known & set(bases)}
        grew = len(known) > before
    return {f"{module}.{name}" for name, (module, _) in classes.items() if name in known}


def test_every_exception_class_of_the_service_is_among_the_examples():
    covered = {f"{type(e).__module__}.{type(e).__qualname__}" for e in examples()}
    assert defined_exception_classes() - {"errors.PicklableError"} == covered  # the base itself is never raised


@pytest.mark.parametrize("exc", examples(), ids=lambda e: type(e).__name__)
def test_each_exception_round_trips_through_pickle_with_its_type_and_attributes(exc: BaseException):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert back.args == exc.args and str(back) == str(exc)
    for name, value in vars(exc).items():
        if isinstance(value, BaseException):
            assert type(getattr(back, name)) is type(value) and vars(getattr(back, name)) == vars(value)
        else:
            assert getattr(back, name) == value, name
    assert get_pickleable_exception(exc) is exc  # what Celery keeps: the error itself, never a wrapper


def test_an_operation_error_keeps_its_code_message_details_and_status_through_pickle():
    exc = OperationError("refund_exceeds_amount", "Too much.", {"refundable": 100}, retry_later=True)
    back = pickle.loads(pickle.dumps(exc))
    assert (back.code, back.message, back.details, back.status, back.says_retry) == (
        "refund_exceeds_amount",
        "Too much.",
        {"refundable": 100},
        422,
        True,
    )
    assert back.to_error() == exc.to_error()


def test_a_failing_periodic_task_logs_its_own_error_under_a_real_worker(mariadb):
    """The janitor pass sent through the broker to a worker of its own (its own queue: the run's shared worker never
    takes it), whose janitor fails (tests/support/failing_janitor.py): the worker's log names the OperationError."""
    from tasks.maintenance import run_janitor
    from tests.conftest import LOG_DIR, RUN
    from tests.support import services
    from tests.support.failing_janitor import REFUSAL

    queue = f"failing-janitor-{RUN}"
    log_path = LOG_DIR / "failing-janitor-worker.log"
    argv = services.worker_argv(queue, 2, f"failing-janitor-{RUN}")
    argv[argv.index("tasks.app")] = "tests.support.failing_janitor"
    proc = services.spawn(argv, log_path, dict(os.environ), own_session=False)
    try:
        run_janitor.apply_async(queue=queue, routing_key=queue)
        services.wait_until(lambda: REFUSAL in log_path.read_text(), 90, "the failing janitor's error in its log")
        logged = [line for line in log_path.read_text().splitlines() if REFUSAL in line]
    finally:
        services.stop(proc)
    # Celery's "raised unexpected: <repr>" names the error itself: not a wrapper, nor a base class it fell back to.
    assert any(f"raised unexpected: OperationError('{REFUSAL}')" in line for line in logged), logged
    assert not any("Unpickleable" in line for line in log_path.read_text().splitlines())


def test_a_failing_periodic_task_logs_its_own_error_through_celerys_tracer(mariadb, monkeypatch, caplog):
    """Through Celery's own tracer (the worker's trace path, run eagerly in this process: the error is made
    picklable and logged exactly as under a worker)."""
    from domain import janitor
    from tasks.maintenance import run_janitor

    def refused() -> Any:
        raise OperationError("invalid_state", "The janitor could not settle vypi_1.", {"id": "vypi_1"})

    monkeypatch.setattr(janitor, "run", refused)
    caplog.set_level(logging.ERROR, logger="celery.app.trace")
    result = run_janitor.apply()
    assert result.failed()
    assert type(result.result) is OperationError and result.result.code == "invalid_state"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "celery.app.trace")
    assert "raised unexpected: OperationError('The janitor could not settle vypi_1.')" in logged
    assert UnpickleableExceptionWrapper.__name__ not in logged
