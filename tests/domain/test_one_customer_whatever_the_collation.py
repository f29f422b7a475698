"""Issue 24, point 1: a customer is one customer, whatever the database's collation.

Ids are compared byte for byte everywhere: Python and the database's collation alike. On MariaDB's default collation
(utf8mb4_general_ci) `alice`, `Alice`, `alice ` and `alicé` were one customer: a token for `Alice` listed alice's
cards and intents, and a create as `Alice` without a paymentMethodId charged alice's default card."""

from __future__ import annotations

import uuid

import pytest

from domain.schemas import (
    CreatePaymentIntentInput,
    GetPaymentIntentInput,
    ListPaymentMethodsInput,
    parse_input,
    platform_id_problem,
)
from errors import OperationError
from models import Customer, IdempotencyRecord, PaymentIntent, PaymentMethod
from tasks.scope import check_scope
from tests.domain.helpers import call, customer_with_card, take

pytestmark = pytest.mark.integration


def variants(alice: str) -> dict[str, str]:
    """Ids that a case-, accent- or pad-insensitive collation takes for alice's own."""
    return {
        "case": alice.replace("alice", "Alice"),
        "upper": alice.upper(),
        "accent": alice.replace("alice", "alicé"),
        "trailing space": f"{alice} ",
    }


def test_a_customer_is_one_customer_whatever_the_collation(domain_db, stripe_api):
    alice = customer_with_card(stripe_api, "alice")
    intent = call("create-payment-intent", {"customerId": alice, "amount": 700, "currency": "usd"})
    # Positive controls: alice herself finds her card and intent, and may act on the intent.
    assert len(call("list-payment-methods", {"customerId": alice})["data"]) == 1
    assert [i["id"] for i in call("list-payment-intents", {"customerId": alice})["data"]] == [intent["id"]]
    check_scope("get-payment-intent", GetPaymentIntentInput(paymentIntentId=intent["id"]), alice)
    paid = call("create-payment-intent", {"customerId": alice, "amount": 700, "currency": "usd", "confirm": True})
    assert paid["status"] == "succeeded"

    for kind, other in variants(alice).items():
        # The database layer itself: not one of alice's rows answers to the variant.
        assert Customer.select().where(Customer.platform_customer_id == other).count() == 0, kind
        assert PaymentMethod.select().where(PaymentMethod.customer_id == other).count() == 0, kind
        assert PaymentIntent.select().where(PaymentIntent.customer_id == other).count() == 0, kind
        # A customer token for the variant: nothing of alice's to see or move.
        with pytest.raises(OperationError) as hidden:
            check_scope("get-payment-intent", GetPaymentIntentInput(paymentIntentId=intent["id"]), other)
        assert hidden.value.code == "not_found", kind
        if kind == "trailing space":
            continue  # refused at the door (below); the rows above already show the database tells them apart
        assert call("list-payment-methods", {"customerId": other})["data"] == [], kind
        assert call("list-payment-intents", {"customerId": other})["data"] == [], kind
        # A create without paymentMethodId charges the variant's default card, and it has none: alice's is not it.
        with pytest.raises(OperationError) as refused:
            call("create-payment-intent", {"customerId": other, "amount": 700, "currency": "usd", "confirm": True})
        assert refused.value.code == "validation_error", kind
    assert [row.platform_customer_id for row in Customer.select().where(Customer.platform_customer_id == alice)] == [
        alice
    ]


def test_customers_that_differ_only_by_case_accent_or_trailing_space_are_stored_apart(domain_db):
    base = f"bob-{uuid.uuid4().hex[:8]}"
    ids = [base, base.upper(), base.replace("bob", "böb"), f"{base} "]
    for platform_id in ids:
        Customer.create(id=f"cus_{uuid.uuid4().hex[:20]}", platform_customer_id=platform_id)  # one unique index
    for platform_id in ids:
        found = Customer.select().where(Customer.platform_customer_id == platform_id)
        assert [c.platform_customer_id for c in found] == [platform_id]


def test_idempotency_keys_that_differ_only_by_case_are_two_keys(domain_db):
    key = f"rest:acme:Key-{uuid.uuid4().hex[:8]}"
    first, second = take(key), take(key.lower())
    assert not first.resumed and not second.resumed
    assert first.record_id != second.record_id and first.resource_id != second.resource_id
    with pytest.raises(OperationError) as busy:  # positive control: the very same key is the claim already taken
        take(key, owner="task-b")
    assert busy.value.code == "idempotency_key_in_use"
    assert IdempotencyRecord.select().where(IdempotencyRecord.id.in_([first.record_id, second.record_id])).count() == 2


@pytest.mark.parametrize(
    "customer_id",
    ["alice ", " alice", "alice\t", "\u00a0alice", "alice\u2003", "al\u0085ice", "al\x00ice", "al\x7fice", ""],
)
def test_ids_with_whitespace_at_either_end_or_control_characters_are_refused_at_the_door(customer_id):
    for schema, payload in (
        (CreatePaymentIntentInput, {"customerId": customer_id, "amount": 700, "currency": "usd"}),
        (ListPaymentMethodsInput, {"customerId": customer_id}),
        (CreatePaymentIntentInput, {"customerId": "alice", "amount": 700, "currency": "usd", "orderId": customer_id}),
    ):
        with pytest.raises(OperationError) as refused:
            parse_input(schema, payload)
        assert refused.value.code == "validation_error"
    assert platform_id_problem(customer_id) is not None


@pytest.mark.parametrize("customer_id", ["alice", "Alice Smith", "alicé", "customer-42", "a"])
def test_ids_with_inner_spaces_or_accents_are_accepted(customer_id):
    assert parse_input(ListPaymentMethodsInput, {"customerId": customer_id}).customer_id == customer_id
    assert platform_id_problem(customer_id) is None
