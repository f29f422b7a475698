"""A client generated from /openapi.json (openapi-python-client) calls every operation of the running API and
reads every answer back into its generated models: the document is enough to use the service."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from registry import OPERATIONS
from tests.conftest import API_KEY, WEBHOOK_SECRET, make_card
from tests.support.lifecycle import DECLINED
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration

CONFIG = "project_name_override: vyp-client\npackage_name_override: vyp_client\nliteral_enums: true\npost_hooks: []\n"


@pytest.fixture(scope="module")
def generated(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    where = tmp_path_factory.mktemp("generated-client")
    (where / "openapi.json").write_text(requests.get(f"{api_url}/openapi.json", timeout=30).text)
    (where / "config.yml").write_text(CONFIG)
    generator = Path(sys.executable).parent / "openapi-python-client"
    made = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            "openapi.json",
            "--config",
            "config.yml",
            "--meta",
            "none",
            "--output-path",
            "vyp_client",
        ],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "Warning" not in made.stdout + made.stderr, made.stdout + made.stderr  # nothing of the document dropped
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module("vyp_client")
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == "vyp_client" or m.startswith("vyp_client.")]:
            del sys.modules[name]


def test_a_generated_client_round_trips_every_operation(generated, api_url, stripe_api):
    from vyp_client.client import AuthenticatedClient

    models = importlib.import_module("vyp_client.models")
    client = AuthenticatedClient(base_url=api_url, token=API_KEY, timeout=90)
    called: set[str] = set()

    def call(tag: str, operation: str, status: int, **kwargs: Any) -> Any:
        module = importlib.import_module(f"vyp_client.api.{tag}.{operation.replace('-', '_')}")
        answer = module.sync_detailed(client=client, **kwargs)
        assert answer.status_code == status, (operation, answer.status_code, answer.content)
        assert answer.parsed is not None, operation  # read back into its generated model
        called.add(operation)
        return answer

    def model(name: str, data: dict[str, Any]) -> Any:
        return getattr(models, name).from_dict(data)

    def key() -> str:
        return f"gen-{uuid.uuid4()}"

    def send(operation: str, status: int, data: dict[str, Any], **kwargs: Any) -> Any:
        """A mutating operation: its body as its generated model, under a new idempotency key. The generator files
        an operation under its tag (the path's first segment) and names the body of a path with an id `…Body`."""
        op = OPERATIONS[operation]
        tag = op.path.split("/")[1].replace("-", "_")
        body = op.schema.__name__.replace("Input", "Body") if "<" in op.path else op.schema.__name__
        return call(tag, operation, status, body=model(body, data), idempotency_key=key(), **kwargs)

    owner = f"gen-{uuid.uuid4().hex[:10]}"
    token = call("socket_tokens", "create-socket-token", 200, body=model("SocketTokenInput", {"customerId": owner}))
    assert token.parsed.customer_id == owner and token.parsed.expires_in == 900
    vault = {"customerId": owner, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True}
    method = send("create-payment-method", 201, vault).parsed
    assert method.card.last4 == "4242" and method.is_default
    page = call("payment_methods", "list-payment-methods", 200, customer_id=owner).parsed
    assert [m.id for m in page.data] == [method.id] and page.has_more is False and page.next_cursor is None

    create = {"customerId": owner, "amount": 2500, "currency": "usd", "captureMethod": "manual", "confirm": True}
    created = send("create-payment-intent", 201, create)
    intent = created.parsed
    assert intent.status == "requires_capture" and created.headers["location"] == f"/payment-intents/{intent.id}"
    assert call("payment_intents", "get-payment-intent", 200, payment_intent_id=intent.id).parsed.amount == 2500
    status = call("payment_intents", "get-payment-intent-status", 200, payment_intent_id=intent.id).parsed
    assert status.status == "requires_capture"
    history = call("payment_intents", "get-ztracking-payment-intent", 200, payment_intent_id=intent.id).parsed
    assert [h.ztracking_version for h in history][:1] == [1]
    captured = send(
        "capture-payment-intent",
        200,
        {"amountToCapture": 2000},
        payment_intent_id=intent.id,
    ).parsed
    assert (captured.status, captured.amount_received) == ("succeeded", 2000)
    refund = send("create-refund", 201, {"paymentIntentId": intent.id, "amount": 500}).parsed
    assert call("refunds", "get-refund", 200, refund_id=refund.id).parsed.status == "succeeded"
    refunds = call("payment_intents", "list-refunds", 200, payment_intent_id=intent.id).parsed
    assert [r.id for r in refunds.data] == [refund.id]
    synced = call("payment_intents", "payment-status-update", 200, payment_intent_id=intent.id).parsed
    assert synced.status == "succeeded"

    later = {"customerId": owner, "amount": 900, "currency": "usd"}
    unpaid = send("create-payment-intent", 201, later).parsed
    confirmed = send(
        "confirm-payment-intent",
        200,
        {"paymentMethodId": method.id},
        payment_intent_id=unpaid.id,
    ).parsed
    assert confirmed.status == "succeeded"
    held = send("create-payment-intent", 201, {**create, "amount": 700}).parsed
    canceled = send(
        "cancel-payment-intent",
        200,
        {"cancellationReason": "abandoned"},
        payment_intent_id=held.id,
    ).parsed
    assert (canceled.status, canceled.cancellation_reason) == ("canceled", "abandoned")
    listed = call("payment_intents", "list-payment-intents", 200, customer_id=owner, limit=2).parsed
    assert len(listed.data) == 2 and listed.has_more and listed.next_cursor == listed.data[-1].id

    # An error is an answer too: a decline, then its retry with the same card, read back as ErrorBody.
    declined_card = {"customerId": owner, "stripePaymentMethodId": make_card(stripe_api, DECLINED)}
    bad = send("create-payment-method", 201, declined_card).parsed
    declined = send(
        "create-payment-intent",
        402,
        {**later, "paymentMethodId": bad.id, "confirm": True},
    ).parsed
    assert declined.error.code == "card_declined"
    attempt_id = declined.error.details.additional_properties["attemptId"]
    retried = call("payment_attempts", "retry-payment-attempt", 409, attempt_id=attempt_id, idempotency_key=key())
    assert retried.parsed.error.code == "invalid_state"
    gone = call("payment_methods", "delete-payment-method", 200, payment_method_id=bad.id, idempotency_key=key()).parsed
    assert gone.deleted is True

    # Stripe's webhook, signed over the very bytes the generated client sends (httpx's compact JSON).
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "customer.created",
        "created": 1,
        "data": {"object": {"id": "cus_generated", "object": "customer"}},
    }
    raw = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    receipt = call(
        "webhooks",
        "process-stripe-webhook",
        200,
        body=model("ProcessStripeWebhookBody", event),
        stripe_signature=sign(raw, WEBHOOK_SECRET),
    ).parsed
    assert receipt.event_id == event["id"]

    assert called == set(OPERATIONS) | {"create-socket-token"}
