"""Support actions of the operator page: refund, capture, cancel, retry, sync; replay a topic's dead letters;
re-publish an outbox event.

The page is a fourth caller of the registry, never a back door: an intent's action runs its registry operation through
`run_operation` (door "ops"), with the validation, idempotency and money rules of every door. Each action takes two
POSTs to /ops/actions/<action>: the first (the form) answers a confirmation page saying what will happen; the second
carries its signed plan (`confirm`), so nothing runs unconfirmed, script or none. The form's key (a hidden field made
when the page was rendered) scopes the idempotency key `ops:<operator>:<form key>`: a double click, a reload, a
resubmit are one action, one audit row. Every POST needs the session's CSRF token (Flask-WTF) and an operator with
`ops:act`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Response, abort, current_app, g, redirect, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from api.ops import _page, ops
from api.ops_format import money
from domain.schemas import OBJECT_ID_PATTERN, parse_input
from doors.dispatch import run_operation
from errors import OperationError
from models.currency_data import exponent
from observability import metrics
from operations import audit, view
from registry import OPERATIONS

log = logging.getLogger("ops")

csrf = CSRFProtect()
FORM_KEY = re.compile(r"^[0-9a-f]{32}$")
AMOUNT = re.compile(r"^\d{1,12}(\.\d{1,3})?$")
CONFIRM_MAX_AGE_S = 900  # a confirmation page left open longer is started again
REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent")
CANCEL_REASONS = ("requested_by_customer", "duplicate", "fraudulent", "abandoned")
NOTE_MAX = 200


def minor_units(text: str, currency: str) -> int | None:
    """An amount typed in the currency's units ("12.50") in minor units; None when left empty."""
    text = text.strip()
    if not text:
        return None
    if not AMOUNT.fullmatch(text):
        raise OperationError("validation_error", f"{text!r} is not an amount: write it as 12.50.")
    try:
        value = Decimal(text).scaleb(exponent(currency.lower()))
    except InvalidOperation:
        raise OperationError("validation_error", f"{text!r} is not an amount.") from None
    if value != value.to_integral_value() or value < 1:
        raise OperationError("validation_error", f"{text} {currency.upper()} is not a whole number of minor units.")
    return int(value)


@dataclass(frozen=True)
class Plan:
    """What an operator confirms: the action, its target, the registry payload (or the tool's arguments), and what
    the confirmation page says."""

    action: str
    target: str
    payment_intent_id: str | None
    payload: dict[str, Any]
    says: list[str]


def _intent(payment_intent_id: str) -> Any:
    if not re.fullmatch(OBJECT_ID_PATTERN, payment_intent_id or ""):
        raise OperationError("not_found", "No payment intent has this id.")
    intent = view.record("intent", payment_intent_id)
    if intent is None:
        raise OperationError("not_found", "No payment intent has this id.")
    return intent


def _about(intent: Any) -> str:
    return (
        f"Payment intent {intent.id} of customer {intent.customer_id}: {money(intent.amount, intent.currency)}, "
        f"{intent.status}, captured {money(intent.amount_received, intent.currency)}, "
        f"refunded {money(intent.amount_refunded, intent.currency)}."
    )


def _note(form: Any) -> str:
    return str(form.get("note", "")).strip()[:NOTE_MAX]


def plan_refund(form: Any) -> Plan:
    intent = _intent(form.get("paymentIntentId", ""))
    amount = minor_units(form.get("amount", ""), intent.currency)
    reason = form.get("reason") or None
    if reason is not None and reason not in REFUND_REASONS:
        raise OperationError("validation_error", f"reason must be one of {', '.join(REFUND_REASONS)}.")
    payload: dict[str, Any] = {"paymentIntentId": intent.id}
    if amount is not None:
        payload["amount"] = amount
    if reason:
        payload["reason"] = reason
    note = _note(form)
    if note:
        payload["metadata"] = {"opsNote": note}
    left = intent.amount_received - intent.amount_refunded
    how_much = (
        money(amount, intent.currency) if amount is not None else f"all that is left, {money(left, intent.currency)}"
    )
    says = [
        f"Refund {how_much} to customer {intent.customer_id}.",
        f"Reason: {reason or 'none given'}" + (f"; note: {note}" if note else "") + ".",
        _about(intent),
    ]
    return Plan("refund", intent.id, intent.id, payload, says)


def plan_capture(form: Any) -> Plan:
    intent = _intent(form.get("paymentIntentId", ""))
    amount = minor_units(form.get("amount", ""), intent.currency)
    payload: dict[str, Any] = {"paymentIntentId": intent.id}
    if amount is not None:
        payload["amountToCapture"] = amount
    how_much = money(amount if amount is not None else intent.amount_capturable, intent.currency)
    says = [f"Capture {how_much} of the authorisation of customer {intent.customer_id}.", _about(intent)]
    return Plan("capture", intent.id, intent.id, payload, says)


def plan_cancel(form: Any) -> Plan:
    intent = _intent(form.get("paymentIntentId", ""))
    reason = form.get("cancellationReason") or None
    if reason is not None and reason not in CANCEL_REASONS:
        raise OperationError("validation_error", f"cancellationReason must be one of {', '.join(CANCEL_REASONS)}.")
    payload: dict[str, Any] = {"paymentIntentId": intent.id}
    if reason:
        payload["cancellationReason"] = reason
    held = money(intent.amount_capturable or intent.amount, intent.currency)
    says = [f"Cancel the payment of customer {intent.customer_id}: {held} is released.", _about(intent)]
    return Plan("cancel", intent.id, intent.id, payload, says)


def plan_retry(form: Any) -> Plan:
    attempt = view.record("attempt", str(form.get("attemptId", "")))
    if attempt is None:
        raise OperationError("not_found", "No payment attempt has this id.")
    intent = _intent(attempt.payment_intent_id)
    says = [
        f"Retry the failed {attempt.operation} (attempt {attempt.attempt_number}, {attempt.error_code or 'failed'}) "
        f"of customer {intent.customer_id}: a new attempt for "
        f"{money(attempt.amount or intent.amount, intent.currency)}.",
        _about(intent),
    ]
    return Plan("retry", attempt.id, intent.id, {"attemptId": attempt.id}, says)


def plan_sync(form: Any) -> Plan:
    intent = _intent(form.get("paymentIntentId", ""))
    says = [
        f"Read the payment of customer {intent.customer_id} from Stripe again and apply what Stripe says.",
        _about(intent),
    ]
    return Plan("sync", intent.id, intent.id, {"paymentIntentId": intent.id}, says)


def plan_replay(form: Any) -> Plan:
    topic = str(form.get("topic", ""))
    if topic not in OPERATIONS:
        raise OperationError("not_found", "No request topic has this name.")
    says = [
        f"Send every dead letter of {topic}-dlq back to {topic}: the relay reads each again (a request already "
        "answered replays its answer: its idempotency key is the message's)."
    ]
    return Plan("replay-dead-letters", topic, None, {"topic": topic}, says)


def plan_republish(form: Any) -> Plan:
    event = view.record("event", str(form.get("eventId", "")))
    if event is None:
        raise OperationError("not_found", "No payment event has this id.")
    says = [
        f"Publish event {event.event_id} ({event.type} of payment intent {event.payment_intent_id}) again, with its "
        "own eventId: consumers that have it already ignore it."
    ]
    return Plan("republish-event", event.event_id, event.payment_intent_id, {"eventId": event.event_id}, says)


# action → (how its plan is made, the registry operation it runs, or None: an operator's tool of its own)
ACTIONS: dict[str, tuple[Callable[[Any], Plan], str | None]] = {
    "refund": (plan_refund, "create-refund"),
    "capture": (plan_capture, "capture-payment-intent"),
    "cancel": (plan_cancel, "cancel-payment-intent"),
    "retry": (plan_retry, "retry-payment-attempt"),
    "sync": (plan_sync, "payment-status-update"),
    "replay-dead-letters": (plan_replay, None),
    "republish-event": (plan_republish, None),
}


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="vyp-ops-confirm")


def _refused(status: int, title: str, message: str) -> Response:
    response = _page("ops/refused.html", refresh=False, title=title, message=message)
    response.status_code = status
    return response


@ops.before_request
def _act_guard() -> Response | None:
    """A POST needs `ops:act` (checked first: a reader learns nothing of tokens) and the session's CSRF token."""
    if request.method != "POST":
        return None
    operator = g.get("operator")
    if operator is None or not operator.can_act:
        log.info("support action refused: %s is read-only", operator.name if operator else "nobody")
        return _refused(403, "Read-only", "This operator may look but not act (ops:read): ask for ops:act.")
    csrf.protect()
    return None


@ops.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError) -> Response:
    log.info("support action refused: %s", exc.description)
    return _refused(400, "Refused", f"{exc.description} Reload the page and submit its form again.")


@ops.app_template_global()
def form_key() -> str:
    """A new form's key: the one action it stands for, however often it is submitted."""
    return uuid.uuid4().hex


@ops.post("/actions/<action>")
def act(action: str) -> BaseResponse:
    if action not in ACTIONS:
        abort(404)
    make_plan, operation_name = ACTIONS[action]
    operator = g.operator
    key = str(request.form.get("formKey", ""))
    if not FORM_KEY.fullmatch(key):
        return _refused(400, "Refused", "The form has no key: reload the page and submit its form again.")
    confirmed = request.form.get("confirm")
    if confirmed is None:
        try:
            plan = make_plan(request.form)
            if operation_name is not None:
                parse_input(OPERATIONS[operation_name].schema, plan.payload)  # refused here, before any confirmation
        except OperationError as exc:
            return _refused(exc.status if exc.status < 500 else 400, "Not possible", f"{exc.code}: {exc.message}")
        token = _signer().dumps(
            {
                "action": action,
                "operator": operator.name,
                "formKey": key,
                "target": plan.target,
                "intent": plan.payment_intent_id,
                "payload": plan.payload,
            }
        )
        return _page("ops/confirm.html", refresh=False, action=action, plan=plan, confirm=token, key=key)
    try:
        signed = _signer().loads(confirmed, max_age=CONFIRM_MAX_AGE_S)
    except BadSignature:
        return _refused(400, "Refused", "The confirmation is not valid or too old: start the action again.")
    if signed.get("action") != action or signed.get("operator") != operator.name or signed.get("formKey") != key:
        return _refused(400, "Refused", "The confirmation is for another action: start the action again.")
    try:
        row = run(action, operation_name, signed, operator.name)
    except OperationError as exc:
        return _refused(exc.status, "Refused", exc.message)
    if signed.get("intent") and action != "republish-event":
        return redirect(url_for("ops.intent", payment_intent_id=signed["intent"], done=row.id) + "#audit")
    return redirect(url_for("ops.audit_entry", audit_id=row.id))


def run(action: str, operation_name: str | None, signed: dict[str, Any], operator: str) -> Any:
    """Run a confirmed action once per form key, with its audit row; returns the row (OperationError
    `idempotency_key_reused`: the form's key already stands for another action)."""
    scoped_key = f"ops:{operator}:{signed['formKey']}"
    row, first = audit.begin(
        operator=operator,
        action=action,
        target=signed["target"],
        payment_intent_id=signed.get("intent"),
        params=signed["payload"],
        idempotency_key=scoped_key,
        trace_id=g.trace_id,
    )
    operation = OPERATIONS[operation_name] if operation_name else None
    if not first and (row.action, row.target, row.params) != (action, signed["target"], signed["payload"]):
        # The same form sent again with other values (its page restored by Back, then edited): not its action.
        raise OperationError(
            "idempotency_key_reused", "This form was used for another action already: reload the page and start again."
        )
    if not first and (operation is None or not operation.mutating):
        return row  # done (or being done) by the first submit: a tool or a read runs once per form
    try:
        if operation is not None:
            # A second submit of a mutating form runs again under the same key: the registry answers the first's.
            with metrics.track(operation.name, "ops", "door"):
                envelope = run_operation(
                    operation,
                    signed["payload"],
                    trace_id=g.trace_id,
                    idempotency_key=scoped_key if operation.mutating else None,
                    door="ops",
                    actor=operator,
                )
            outcome, answer = audit.summary(envelope)
        elif action == "replay-dead-letters":
            outcome, answer = _replay_dead_letters(signed["payload"]["topic"])
        else:
            outcome, answer = _republish(signed["payload"]["eventId"])
    except OperationError as exc:
        outcome, answer = exc.code, {"message": exc.message}
    except Exception as exc:  # a dependency away (Kafka, the database): the trail says so, the page does not fail
        log.exception("support action %s failed", action)
        outcome, answer = "internal_error", {"message": type(exc).__name__}
    if first:
        audit.finish(row, outcome, answer)
    log.info("support action %s by %s: %s", action, operator, outcome)
    return row


def _replay_dead_letters(topic: str) -> tuple[str, dict[str, Any]]:
    from messaging.config import off_the_hub
    from messaging.dead_letters import replay_all

    read, failed = off_the_hub(replay_all, topic)  # librdkafka blocks in C: off gevent's hub
    return ("ok" if not failed else "service_unavailable"), {
        "read": read,
        "sent": read - len(failed),
        "failed": failed[:20],
    }


def _republish(event_id: str) -> tuple[str, dict[str, Any]]:
    from domain.payment_events import replay
    from models import unit_of_work, write_transaction

    with unit_of_work(), write_transaction():
        count = replay(event_ids=(event_id,))
    return ("ok" if count else "not_found"), {"queued": count}


@ops.get("/audit")
def audit_page() -> Response:
    return _page("ops/audit.html", entries=audit.entries(), one=None)


@ops.get("/audit/<int:audit_id>")
def audit_entry(audit_id: int) -> Response:
    found = audit.entry(audit_id)
    if found is None:
        abort(404)
    return _page("ops/audit.html", entries=[found], one=found)
