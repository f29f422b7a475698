"""What users of a REST API (and the tools they generate clients with) expect around the answers: headers,
status codes, trace propagation."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import make_card

pytestmark = pytest.mark.integration


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    return body


def vaulted(client, stripe_api) -> tuple[str, dict]:
    owner = f"http-{uuid.uuid4().hex[:10]}"
    method = client.post(
        "/payment-methods",
        json={"customerId": owner, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True},
    )
    return owner, method


def test_a_201_names_where_it_created_the_resource_and_that_address_answers_it(client, stripe_api):
    owner, method = vaulted(client, stripe_api)
    assert method.status_code == 201 and method.headers["Location"] == f"/payment-methods/{method.json()['id']}"
    intent = client.post(
        "/payment-intents", json={"customerId": owner, "amount": 1600, "currency": "usd", "confirm": True}
    )
    assert intent.status_code == 201 and intent.headers["Location"] == f"/payment-intents/{intent.json()['id']}"
    assert client.get(intent.headers["Location"]).json()["id"] == intent.json()["id"]
    refund = client.post("/refunds", json={"paymentIntentId": intent.json()["id"], "amount": 600})
    assert refund.status_code == 201 and refund.headers["Location"] == f"/refunds/{refund.json()['id']}"
    assert client.get(refund.headers["Location"]).json()["amount"] == 600
    listed = client.get("/payment-methods", params={"customerId": owner})
    assert "Location" not in listed.headers


def test_a_replayed_answer_says_idempotent_replayed_and_a_first_one_does_not(client, stripe_api):
    owner, _ = vaulted(client, stripe_api)
    key = {"Idempotency-Key": f"replay-{uuid.uuid4()}"}
    body = {"customerId": owner, "amount": 1700, "currency": "usd", "confirm": True}
    first = client.post("/payment-intents", json=body, headers=key)
    again = client.post("/payment-intents", json=body, headers=key)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    # A stored refusal replays too, and says so.
    capture = {"Idempotency-Key": f"cap-{uuid.uuid4()}"}
    refused = client.post(f"/payment-intents/{first.json()['id']}/capture", headers=capture)
    refused_again = client.post(f"/payment-intents/{first.json()['id']}/capture", headers=capture)
    assert refused.status_code == refused_again.status_code == 409
    assert "Idempotent-Replayed" not in refused.headers and refused_again.headers["Idempotent-Replayed"] == "true"
    # A read is never a replay.
    assert "Idempotent-Replayed" not in client.get(f"/payment-intents/{first.json()['id']}").headers


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_json_is_415_unsupported_media_type(client, content_type):
    answer = client.post("/payment-intents", data="customerId=c&amount=100", headers={"Content-Type": content_type})
    error_of(answer, 415, "unsupported_media_type")


def test_a_w3c_traceparent_is_the_trace_of_the_answer_the_logs_and_the_task(client, worker):
    trace = uuid.uuid4().hex
    parent = f"00-{trace}-{uuid.uuid4().hex[:16]}-01"
    answer = client.get("/payment-methods", params={"customerId": "traced"}, headers={"traceparent": parent})
    assert answer.status_code == 200 and answer.headers["X-Trace-Id"] == trace
    version, trace_id, span, flags = answer.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", trace, "01") and re.fullmatch(r"[0-9a-f]{16}", span)
    assert span != parent.split("-")[2]  # this service's own span, child of the caller's
    assert f'"traceId": "{trace}"' in worker.read_text()  # the task ran under it
    error = client.get("/payment-methods", headers={"traceparent": parent})
    assert error.json()["traceId"] == trace
    for malformed in ("00-" + "0" * 32 + "-" + "1" * 16 + "-01", "zz-not-a-traceparent", f"00-{trace}-xyz-01"):
        made = client.get("/payment-methods", params={"customerId": "c"}, headers={"traceparent": malformed})
        assert made.headers["X-Trace-Id"] != trace and len(made.headers["X-Trace-Id"]) >= 32
