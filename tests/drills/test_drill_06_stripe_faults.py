"""Drill 6: a Stripe fault matrix through the Stripe-like proxy in front of localstripe.

No answer (timeout once the request was sent, connection reset before or after Stripe acted), 409 and 429 are retried
with the same idempotency key and end in one object at Stripe. A 500 is never "retried under the same key and hoped
for" (Stripe replays a saved 5xx): the object is looked up; one Stripe did not act on (`Stripe-Should-Retry: true`)
is sent again under a new derived key; one it saved after acting is found and is the answer; one it saved without
making anything, or an `idempotency_error`, is `outcome_unknown` (503). Answers (402 decline, 400) are never retried;
a fault that does not pass is bounded by TASK_MAX_RETRIES and leaves a clear final state that the caller's retry
with the same key completes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from tests.drills.conftest import API_KEY
from tests.drills.helpers import customer, invariant_violations, paid_intent, vault
from tests.drills.report import report
from tests.support.stripe_objects import intents_of_customers, refunds_of
from tests.support.stripe_proxy import (
    ACT_THEN_500,
    FAIL_WHILE_EXECUTING,
    RESET_AFTER,
    RESET_BEFORE,
    TIMEOUT_AFTER_SENT,
    Fault,
)

pytestmark = pytest.mark.integration

MAX_RETRIES = 3  # the drills' stack runs with TASK_MAX_RETRIES=3: at most 4 attempts
HOLD_S = 6.0  # longer than the stack's STRIPE_TIMEOUT_S (4 s)


def key_state(stack, caller_key: str) -> str | None:
    """The state of the REST caller's key (scoped per API key, stored hashed)."""
    caller = hashlib.sha256(API_KEY.encode()).hexdigest()[:16]
    digest = hashlib.sha256(f"rest:{caller}:{caller_key}".encode()).hexdigest()
    rows = stack.sql("SELECT state FROM idempotency_record WHERE key_hash = %s", (digest,))
    return rows[0][0] if rows else None


def transient(status: int, error_type: str, **extra: str) -> Fault:
    return Fault.error(status, error_type, **extra)


@dataclass
class Case:
    name: str
    faults: list[Fault]
    expected_status: int
    expected_attempts: int
    expected_objects: int
    expected_keys: int = 1  # a new derived key only after a 500 Stripe said it did not act on


INTENT_CASES = [
    Case("timeout after the request was sent", [Fault(TIMEOUT_AFTER_SENT, hold_s=HOLD_S)], 201, 2, 1),
    Case("connection reset before Stripe", [Fault(RESET_BEFORE)] * 2, 201, 3, 1),
    Case("connection reset after Stripe acted", [Fault(RESET_AFTER)], 201, 2, 1),
    Case("409 lock_timeout", [transient(409, "invalid_request_error", code="lock_timeout")] * 2, 201, 3, 1),
    Case("500 Stripe did not act on", [transient(500, "api_error")] * 2, 201, 3, 1, expected_keys=3),
    Case("500 after Stripe acted (saved)", [Fault(ACT_THEN_500)], 201, 1, 1),
    Case("500 while executing, nothing made (saved)", [Fault(FAIL_WHILE_EXECUTING)], 503, 1, 0),
    Case("429 rate_limit", [transient(429, "rate_limit_error", code="rate_limit")] * 2, 201, 3, 1),
    Case(
        "402 card_declined",
        [transient(402, "card_error", code="card_declined", decline_code="generic_decline")],
        402,
        1,
        0,
    ),
    Case("400 idempotency_error", [transient(400, "idempotency_error")] * 20, 503, 1, 0),
    Case("500 that never passes", [transient(500, "api_error")] * 20, 502, MAX_RETRIES + 1, 0, MAX_RETRIES + 1),
]


def run_all(cases: list[Case], run: Callable[[Case], dict], proxy) -> list[dict]:
    """Every case at once (each on its own customer or intent), the proxy's rules cleared after."""
    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            return list(pool.map(run, cases))
    finally:
        proxy.clear()


def post_under_faults(
    case: Case, api, proxy, door: tuple[str, dict], stripe_path: str, form_field: str, form_value: str, key_prefix: str
) -> dict:
    """POSTs `door` (path, body) while the proxy fails, with the case's faults, the Stripe requests to `stripe_path`
    whose form names `form_value` in `form_field`; what was answered and what reached Stripe."""
    proxy.add_rule(
        lambda method, path, form: method == "POST" and path == stripe_path and form.get(form_field) == [form_value],
        case.faults,
    )
    path, body = door
    key = f"{key_prefix}-{uuid.uuid4()}"
    response = api.post(path, json=body, headers={"Idempotency-Key": key})
    attempts = proxy.requests_for(lambda s: s.path == stripe_path and s.form.get(form_field) == [form_value])
    return {
        "case": case,
        "key": key,
        "body": body,
        "status": response.status_code,
        "answer": response.json(),
        "attempts": len(attempts),
        "stripe_keys": {s.idempotency_key for s in attempts},
    }


def report_case(operation: str, result: dict, **counts: int | str) -> None:
    case = result["case"]
    report(
        "6",
        f"{operation}, Stripe fault: {case.name} (x{min(len(case.faults), MAX_RETRIES + 1)})",
        answered=result["status"],
        code=result["answer"].get("error", {}).get("code", "ok"),
        stripe_attempts=result["attempts"],
        stripe_keys=len(result["stripe_keys"]),
        **counts,
    )


def outcome(result: dict) -> tuple[int, int, int, int]:
    """Answered status, attempts at Stripe, distinct keys sent, objects Stripe holds: compared with `expected`."""
    return result["status"], result["attempts"], len(result["stripe_keys"]), result["objects"]


def expected(case: Case) -> tuple[int, int, int, int]:
    return case.expected_status, case.expected_attempts, case.expected_keys, case.expected_objects


def run_intent_case(case: Case, api, stripe_api, proxy) -> dict:
    customer_id = customer("fault")
    vault(api, stripe_api, customer_id)
    body = {"customerId": customer_id, "amount": 1500, "currency": "usd", "confirm": True}
    result = post_under_faults(
        case,
        api,
        proxy,
        ("/payment-intents", body),
        "/v1/payment_intents",
        "metadata[vy_customer_id]",
        customer_id,
        "fault",
    )
    objects = intents_of_customers(stripe_api, [customer_id])
    return {**result, "customer_id": customer_id, "objects": len(objects)}


def test_stripe_faults_on_create_are_retried_with_one_key_where_safe_never_where_not_and_bounded(
    stack, api, stripe_api, proxy
):
    results = run_all(INTENT_CASES, lambda case: run_intent_case(case, api, stripe_api, proxy), proxy)
    wrong = []
    for result in results:
        case = result["case"]
        rows = stack.sql("SELECT COUNT(*) FROM payment_intent WHERE customer_id = %s", (result["customer_id"],))[0][0]
        report_case("create-payment-intent", result, intents_at_stripe=result["objects"], intent_rows=rows)
        expected_rows = 1 if case.expected_status == 201 else 0
        got = (*outcome(result), rows)
        want = (*expected(case), expected_rows)
        if got != want:
            wrong.append((case.name, "got", got, "want", want))
    assert wrong == []

    # The fault that never passed left a clear state: nothing at Stripe, no row, the key given back;
    # once Stripe is back, the caller's retry with the same key finishes the work, once.
    exhausted = results[-1]
    state = key_state(stack, exhausted["key"])
    assert state == "retryable", state
    retry = api.post("/payment-intents", json=exhausted["body"], headers={"Idempotency-Key": exhausted["key"]})
    objects = intents_of_customers(stripe_api, [exhausted["customer_id"]])
    report(
        "6",
        "caller retries the exhausted create with the same key once Stripe is back",
        answered=retry.status_code,
        intents_at_stripe=len(objects),
    )
    assert retry.status_code == 201 and len(objects) == 1
    assert objects[0]["metadata"]["vy_payment_intent_id"] == retry.json()["id"]
    assert invariant_violations(stack.sql) == {}


REFUND_CASES = [
    Case("timeout after the request was sent", [Fault(TIMEOUT_AFTER_SENT, hold_s=HOLD_S)], 201, 2, 1),
    Case("connection reset after Stripe acted", [Fault(RESET_AFTER)], 201, 2, 1),
    Case("500 Stripe did not act on", [transient(500, "api_error")] * 2, 201, 3, 1, expected_keys=3),
    Case("500 after Stripe acted (saved)", [Fault(ACT_THEN_500)], 201, 1, 1),
    Case("idempotency_error", [transient(400, "idempotency_error")] * 20, 503, 1, 0),
    Case(
        "400 invalid_request (charge_already_refunded)",
        [transient(400, "invalid_request_error", code="charge_already_refunded")],
        422,
        1,
        0,
    ),
    Case("500 that never passes", [transient(500, "api_error")] * 20, 502, MAX_RETRIES + 1, 0, MAX_RETRIES + 1),
]


def run_refund_case(case: Case, api, stripe_api, proxy) -> dict:
    intent = paid_intent(api, stripe_api, "fault-refund", amount=5000)
    stripe_id = intent["stripePaymentIntentId"]
    body = {"paymentIntentId": intent["id"], "amount": 2000}
    result = post_under_faults(
        case, api, proxy, ("/refunds", body), "/v1/refunds", "payment_intent", stripe_id, "fault-refund"
    )
    return {**result, "intent": intent, "objects": len(refunds_of(stripe_api, stripe_id))}


def test_stripe_faults_on_refunds_hold_or_give_back_the_amount_and_never_refund_twice(stack, api, stripe_api, proxy):
    results = run_all(REFUND_CASES, lambda case: run_refund_case(case, api, stripe_api, proxy), proxy)
    wrong = []
    for result in results:
        case, intent = result["case"], result["intent"]
        refunded = api.get(f"/payment-intents/{intent['id']}").json()["amountRefunded"]
        statuses = [
            row[0] for row in stack.sql("SELECT status FROM refund WHERE payment_intent_id = %s", (intent["id"],))
        ]
        report_case(
            "create-refund",
            result,
            refunds_at_stripe=result["objects"],
            refund_rows=len(statuses),
            refund_status=",".join(statuses) or "-",
            amount_held_on_intent=refunded,
        )
        got, want = outcome(result), expected(case)
        if got != want:
            wrong.append((case.name, "got", got, "want", want))
        # Refused for good: the amount is given back. Exhausted or unknown: still held (pending) until settled.
        expected_held = {201: 2000, 400: 0, 422: 0, 502: 2000, 503: 2000}[case.expected_status]
        if refunded != expected_held:
            wrong.append((case.name, "amountRefunded", refunded, "want", expected_held))
    assert wrong == []

    exhausted = results[-1]
    retry = api.post("/refunds", json=exhausted["body"], headers={"Idempotency-Key": exhausted["key"]})
    at_stripe = refunds_of(stripe_api, exhausted["intent"]["stripePaymentIntentId"])
    report(
        "6",
        "caller retries the exhausted refund with the same key once Stripe is back",
        answered=retry.status_code,
        refunds_at_stripe=len(at_stripe),
        refunded=api.get(f"/payment-intents/{exhausted['intent']['id']}").json()["amountRefunded"],
    )
    assert retry.status_code == 201 and len(at_stripe) == 1 and at_stripe[0]["amount"] == 2000
    assert invariant_violations(stack.sql) == {}
