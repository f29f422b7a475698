"""What a created intent tells Stripe in its metadata: `localId` (our id, by which the platform gateway's own webhook
handler routes its pushes), our vy_* keys, and the caller's keys, within Stripe's 50."""

from __future__ import annotations

import uuid

import pytest

from domain import idempotency
from domain.payment_intents import _stripe_request
from domain.schemas import MAX_METADATA_KEYS, CreatePaymentIntentInput, parse_input
from errors import OperationError
from models import IdempotencyRecord
from tests.domain.helpers import call, context, customer_with_card, take

pytestmark = pytest.mark.integration


def vaulted(stripe_api) -> str:
    return customer_with_card(stripe_api, "meta")


def test_the_stripe_intent_carries_our_id_as_metadata_local_id_and_a_callers_own_local_id_loses(domain_db, stripe_api):
    key = f"test:{uuid.uuid4()}"
    create = {"customerId": vaulted(stripe_api), "amount": 1200, "currency": "usd", "orderId": "order-7"}
    caller_metadata = {"localId": "the-callers-own", "cart": "c-1"}
    intent = call("create-payment-intent", {**create, "metadata": caller_metadata}, context(key))
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).metadata.to_dict()
    assert at_stripe["localId"] == intent["id"] == at_stripe["vy_payment_intent_id"]
    assert at_stripe["cart"] == "c-1" and at_stripe["vy_order_id"] == "order-7"
    assert intent["metadata"] == caller_metadata  # the caller's metadata is answered as it was given
    # What was sent is what the claim recorded before sending: a retry reads these back, it derives nothing again.
    recorded = IdempotencyRecord.get(IdempotencyRecord.key_hash == idempotency.key_hash(key)).stripe_params
    assert recorded["params"]["metadata"] == at_stripe


def test_a_retry_sends_the_recorded_parameters_whatever_it_would_derive_now(domain_db, stripe_api):
    claim = take(f"test:{uuid.uuid4()}")
    first = {"customerId": vaulted(stripe_api), "amount": 1200, "currency": "usd"}
    recorded = _stripe_request(claim, parse_input(CreatePaymentIntentInput, first)).recorded_stripe_params()
    assert recorded["params"]["metadata"]["localId"] == claim.resource_id
    resumed = idempotency.Claim.of(IdempotencyRecord.get_by_id(claim.record_id), claim.owner)
    changed = parse_input(CreatePaymentIntentInput, {**first, "metadata": {"localId": "x", "other": "y"}})
    assert _stripe_request(resumed, changed).recorded_stripe_params() == recorded


def test_the_callers_metadata_keys_leave_room_for_ours_within_stripes_fifty(domain_db, stripe_api):
    create = {
        "customerId": vaulted(stripe_api),
        "amount": 500,
        "currency": "usd",
        "orderId": "o",
        "subscriptionId": "s",
    }
    most = {f"k{i}": "v" for i in range(MAX_METADATA_KEYS)}
    intent = call("create-payment-intent", {**create, "metadata": most})
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).metadata.to_dict()
    assert len(at_stripe) == 50 and at_stripe["localId"] == intent["id"]
    with pytest.raises(OperationError) as refused:
        call("create-payment-intent", {**create, "metadata": {**most, "one-more": "v"}})
    assert refused.value.code == "validation_error"
