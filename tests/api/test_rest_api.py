"""Black-box over HTTP: the REST door under gunicorn, a real worker, MariaDB and localstripe."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from openapi_spec_validator import validate

from domain.schemas import CreatePaymentIntentInput
from tests.api.conftest import Client, running_api
from tests.conftest import API_KEY, WEBHOOK_SECRET, make_card
from tests.support.stripe_objects import intents_of_customers

pytestmark = pytest.mark.integration


def customer() -> str:
    return f"rest-{uuid.uuid4().hex[:12]}"


def vault(client: Client, stripe_api, customer_id: str, number: str = "4242424242424242") -> dict:
    response = client.post(
        "/payment-methods",
        json={"customerId": customer_id, "setAsDefault": True, "stripePaymentMethodId": make_card(stripe_api, number)},
    )
    assert response.status_code == 201, response.text
    return response.json()


def paid_intent(client: Client, stripe_api, amount: int = 5000) -> dict:
    customer_id = customer()
    vault(client, stripe_api, customer_id)
    response = client.post(
        "/payment-intents", json={"customerId": customer_id, "amount": amount, "currency": "usd", "confirm": True}
    )
    assert response.status_code == 201, response.text
    return response.json()


def pay_with(client: Client, customer_id: str, payment_method_id: str) -> requests.Response:
    """A 900 USD intent of the customer, confirmed at once with this payment method."""
    body = {"customerId": customer_id, "amount": 900, "currency": "usd", "confirm": True}
    return client.post("/payment-intents", json={**body, "paymentMethodId": payment_method_id})


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "traceId"}
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "details"}
    assert "Traceback" not in response.text
    return body


def test_create_payment_intent_answers_201_with_client_secret_trace_and_key(client, stripe_api):
    customer_id = customer()
    vault(client, stripe_api, customer_id)
    response = client.post(
        "/payment-intents",
        headers={"X-Trace-Id": "trace-rest-1"},
        json={"customerId": customer_id, "amount": 1500, "currency": "usd", "confirm": True},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "succeeded" and body["clientSecret"].startswith(body["stripePaymentIntentId"])
    assert response.headers["X-Trace-Id"] == "trace-rest-1"
    assert response.headers["Idempotency-Key"].startswith("auto-")  # made by the server, so a retry is safe


def test_reads_answer_200_and_unknown_ids_404(client, stripe_api):
    intent = paid_intent(client, stripe_api)
    got = client.get(f"/payment-intents/{intent['id']}")
    assert got.status_code == 200 and got.json()["id"] == intent["id"] and "clientSecret" not in got.json()
    history = client.get(f"/payment-intents/{intent['id']}/history")
    assert history.status_code == 200 and [h["ztrackingVersion"] for h in history.json()] == [1]
    assert_error(client.get("/payment-intents/vypi_missing"), 404, "not_found")
    assert_error(client.get("/payment-intents/vypi_missing/history"), 404, "not_found")
    assert_error(client.get("/refunds/vyre_missing"), 404, "not_found")


def test_refunds_create_get_and_refuse_too_much(client, stripe_api):
    intent = paid_intent(client, stripe_api, 3000)
    created = client.post(
        "/refunds", json={"paymentIntentId": intent["id"], "amount": 1000, "reason": "requested_by_customer"}
    )
    assert created.status_code == 201 and created.json()["status"] == "succeeded"
    assert client.get(f"/refunds/{created.json()['id']}").json() == created.json()
    body = assert_error(
        client.post("/refunds", json={"paymentIntentId": intent["id"], "amount": 2001}), 422, "refund_exceeds_amount"
    )
    assert body["error"]["details"]["refundable"] == 2000
    assert_error(client.post("/refunds", json={"paymentIntentId": "vypi_nope"}), 404, "not_found")


def test_a_declined_card_is_402(client, stripe_api):
    customer_id = customer()
    method = vault(client, stripe_api, customer_id, "4000000000000341")
    assert_error(pay_with(client, customer_id, method["id"]), 402, "card_declined")


def test_payment_methods_list_with_query_and_delete(client, stripe_api):
    customer_id = customer()
    first = vault(client, stripe_api, customer_id)
    second = vault(client, stripe_api, customer_id, "5555555555554444")
    page = client.get("/payment-methods", params={"customerId": customer_id, "limit": "1"})
    assert page.status_code == 200
    assert [m["id"] for m in page.json()["data"]] == [second["id"]] and page.json()["hasMore"] is True
    deleted = client.delete(f"/payment-methods/{second['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": second["id"], "deleted": True}
    assert_error(client.delete(f"/payment-methods/{second['id']}"), 404, "not_found")
    left = client.get("/payment-methods", params={"customerId": customer_id}).json()["data"]
    assert [m["id"] for m in left] == [first["id"]]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/payment-intents", {"data": "not json", "headers": {"Content-Type": "application/json"}}),
        ("post", "/payment-intents", {"json": [1, 2]}),
        ("post", "/payment-intents", {"json": {"customerId": "c", "amount": 100, "currency": "usd", "extra": 1}}),
        ("post", "/payment-intents", {"json": {"customerId": "c", "amount": 1.5, "currency": "usd"}}),
        (
            "post",
            "/payment-intents",
            {"json": {"customerId": "c", "amount": 100, "currency": "usd"}, "params": {"x": "1"}},
        ),
        ("get", "/payment-methods", {"params": {"customerId": "c", "limit": "abc"}}),
        ("get", "/payment-methods", {"params": {"customerId": "c", "limit": "0"}}),
        ("get", "/payment-methods", {"params": {"customerId": "c", "color": "red"}}),
        ("get", "/payment-methods", {"params": [("customerId", "a"), ("customerId", "b")]}),
        ("get", "/payment-methods", {}),
        (
            "post",
            "/payment-intents",
            {"json": {"customerId": "c", "amount": 100, "currency": "usd"}, "headers": {"Idempotency-Key": "é" * 3}},
        ),
    ],
)
def test_bad_input_is_400_validation_error(client, method, path, kwargs):
    assert_error(getattr(client, method)(path, **kwargs), 400, "validation_error")


@pytest.mark.parametrize("path", ["/payment-intents/has%20space", "/refunds/1b4e28ba-2fa1-11d2-883f-0016d3cca427"])
def test_a_path_id_that_cannot_be_ours_is_404_not_found(client, path):
    assert_error(client.get(path), 404, "not_found")


def test_a_body_over_one_mebibyte_is_413(client):
    big = json.dumps({"customerId": "c", "amount": 100, "currency": "usd", "description": "x" * (1024 * 1024)})
    response = client.post("/payment-intents", data=big, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_unknown_routes_and_wrong_methods_answer_in_the_error_format(client):
    assert_error(client.get("/nowhere"), 404, "not_found")
    response = client.put("/refunds")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer wrong",
        f"Bearer {API_KEY[:-1]}",
        f"Bearer {API_KEY}x",
        f"Bearer {API_KEY.upper()}",
        f"Basic {API_KEY}",
        f"Token {API_KEY}",
        API_KEY,
    ],
)
def test_missing_wrong_and_near_miss_keys_are_401(api_url, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("get", "/payment-intents/vypi_x"), ("post", "/refunds"), ("get", "/payment-methods")):
        response = getattr(requests, method)(api_url + path, headers=headers, json={}, timeout=30)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_public_routes_need_no_key(anonymous):
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"database": "ok", "broker": "ok", "worker": "ok"}
    assert anonymous.get("/openapi.json").status_code == 200


def test_same_key_same_body_replays_and_another_body_is_422(client):
    key = f"idem-{uuid.uuid4()}"
    body = {"customerId": customer(), "amount": 700, "currency": "usd"}
    first = client.post("/payment-intents", json=body, headers={"Idempotency-Key": key})
    second = client.post("/payment-intents", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["Idempotency-Key"] == key
    other = client.post("/payment-intents", json={**body, "amount": 701}, headers={"Idempotency-Key": key})
    assert_error(other, 422, "idempotency_key_reused")


def test_keys_are_scoped_per_api_key(api_url, mariadb):
    # The same Idempotency-Key from two callers names two requests.
    key = f"scoped-{uuid.uuid4()}"
    body = {"customerId": customer(), "amount": 800, "currency": "usd"}
    with running_api("api-two-keys.log", API_KEYS=f"{API_KEY},other-caller-key") as base:
        one = Client(base).post("/payment-intents", json=body, headers={"Idempotency-Key": key})
        two = Client(base, key="other-caller-key").post("/payment-intents", json=body, headers={"Idempotency-Key": key})
        # Positive control: from the same caller, the key does replay the first answer.
        again = Client(base).post("/payment-intents", json=body, headers={"Idempotency-Key": key})
    assert one.status_code == two.status_code == again.status_code == 201
    assert one.json()["id"] != two.json()["id"]
    assert again.json()["id"] == one.json()["id"]


def test_a_retry_sent_with_a_callers_new_key_after_a_rotation_replays_instead_of_charging_again(
    api_url, stripe_api, mariadb
):
    from models import Customer, unit_of_work

    key = f"rotation-{uuid.uuid4()}"
    owner = customer()
    with running_api("api-rotation-old.log", API_KEYS="acme:acme-old-key,other:other-key") as base:
        method = {"customerId": owner, "stripePaymentMethodId": make_card(stripe_api), "setAsDefault": True}
        assert Client(base, key="acme-old-key").post("/payment-methods", json=method).status_code == 201
        body = {"customerId": owner, "amount": 1900, "currency": "usd", "confirm": True}
        first = Client(base, key="acme-old-key").post("/payment-intents", json=body, headers={"Idempotency-Key": key})
        # Another caller's same key is another request.
        other = Client(base, key="other-key").post("/payment-intents", json=body, headers={"Idempotency-Key": key})
    with running_api("api-rotation-new.log", API_KEYS="acme:acme-new-key,other:other-key") as base:
        assert Client(base, key="acme-old-key").get(f"/payment-intents/{first.json()['id']}").status_code == 401
        retry = Client(base, key="acme-new-key").post("/payment-intents", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == retry.status_code == other.status_code == 201
    assert retry.json() == first.json() and other.json()["id"] != first.json()["id"]
    with unit_of_work():
        at_stripe = Customer.get(Customer.platform_customer_id == owner).stripe_customer_id
    charges = stripe_api.v1.payment_intents.list(params={"customer": at_stripe, "limit": 10})
    assert sorted(pi.id for pi in charges.data) == sorted(
        {first.json()["stripePaymentIntentId"], other.json()["stripePaymentIntentId"]}
    )


def test_api_keys_entries_name_their_callers_and_a_bare_key_is_its_own_caller():
    import hashlib

    from doors.auth import api_callers, key_id

    entries = ("acme:k-1", "acme:k-2", "bare-key", "not a name:k-3")
    assert api_callers(entries) == (
        ("n:acme", "k-1"),
        ("n:acme", "k-2"),
        (hashlib.sha256(b"bare-key").hexdigest()[:16], "bare-key"),
        (hashlib.sha256(b"not a name:k-3").hexdigest()[:16], "not a name:k-3"),
    )
    assert key_id("k-2", entries) == key_id("k-1", entries) == "n:acme"
    assert key_id("acme:k-1", entries) is None and key_id("", entries) is None


def test_a_key_still_in_flight_is_409(client, mariadb):
    import hashlib

    from domain import idempotency

    key = f"busy-{uuid.uuid4()}"
    body = {"customerId": customer(), "amount": 900, "currency": "usd"}
    caller = hashlib.sha256(API_KEY.encode()).hexdigest()[:16]
    canonical = CreatePaymentIntentInput.model_validate(
        {"customerId": body["customerId"], "amount": 900, "currency": "usd"}
    ).canonical()
    # Another request with this key is running (its worker holds the claim).
    idempotency.claim(
        "create-payment-intent", f"rest:{caller}:{key}", canonical, "someone-else", "payment_intent", 3600, "trace"
    )
    assert_error(
        client.post("/payment-intents", json=body, headers={"Idempotency-Key": key}), 409, "idempotency_key_in_use"
    )


def test_concurrent_retries_with_one_key_charge_once(client, stripe_api, mariadb):
    from models import PaymentIntent

    customer_id = customer()
    vault(client, stripe_api, customer_id)
    body = {"customerId": customer_id, "amount": 1100, "currency": "usd", "confirm": True}
    key = f"burst-{uuid.uuid4()}"
    with ThreadPoolExecutor(5) as pool:
        answers = list(
            pool.map(lambda _: client.post("/payment-intents", json=body, headers={"Idempotency-Key": key}), range(5))
        )
    assert {a.status_code for a in answers} <= {201, 409}
    created = {a.json()["id"] for a in answers if a.status_code == 201}
    assert len(created) == 1
    assert PaymentIntent.select().where(PaymentIntent.customer_id == customer_id).count() == 1
    # Once at Stripe too: one PaymentIntent for this customer, the one answered, charged its amount.
    (charged,) = intents_of_customers(stripe_api, [customer_id])
    assert charged["metadata"]["vy_payment_intent_id"] in created
    assert (charged["status"], charged["amount"]) == ("succeeded", 1100)


def test_no_result_in_time_for_a_refund_is_503_outcome_unknown_with_the_key_and_a_retry_gets_the_result(
    client, stripe_api, worker
):
    import pymysql

    from tests.conftest import DB_NAME
    from tests.support.services import MARIADB

    intent = paid_intent(client, stripe_api, 3000)
    key = f"slow-{uuid.uuid4()}"
    body = {"paymentIntentId": intent["id"], "amount": 1200}
    # Another transaction holds the intent's row lock: the refund task waits on it past REST_TIMEOUT.
    blocker = pymysql.connect(**MARIADB, database=DB_NAME)
    with blocker.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("SELECT id FROM payment_intent WHERE id = %s FOR UPDATE", (intent["id"],))
        with running_api("api-timeout.log", REST_TIMEOUT="1000") as impatient:
            response = Client(impatient).post("/refunds", json=body, headers={"Idempotency-Key": key})
        blocker.commit()
    blocker.close()
    error = assert_error(response, 503, "outcome_unknown")  # the task may be calling Stripe: nobody can tell
    assert error["error"]["details"] == {"idempotencyKey": key}
    assert response.headers["Retry-After"] and response.headers["Idempotency-Key"] == key
    retry = client.post("/refunds", json=body, headers={"Idempotency-Key": key})
    for _ in range(40):
        if retry.status_code != 409:
            break
        time.sleep(0.25)
        retry = client.post("/refunds", json=body, headers={"Idempotency-Key": key})
    assert retry.status_code == 201 and retry.json()["amount"] == 1200
    assert client.get(f"/payment-intents/{intent['id']}").json()["amountRefunded"] == 1200


def test_stripe_webhooks_arrive_signed_and_are_applied(client, stripe_api, localstripe_url, api_url, mariadb):
    from models import WebhookEvent

    registered = requests.post(
        f"{localstripe_url}/_config/webhooks/rest-tests",
        json={
            "url": f"{api_url}/webhooks/stripe",
            "secret": WEBHOOK_SECRET,
            "events": ["payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled"],
        },
        timeout=10,
    )
    assert registered.ok
    customer_id = customer()
    method = vault(client, stripe_api, customer_id)
    intent = client.post(
        "/payment-intents",
        json={"customerId": customer_id, "amount": 2100, "currency": "usd", "paymentMethodId": method["id"]},
    ).json()
    assert intent["status"] == "requires_confirmation"
    # The customer's browser confirms with Stripe.js; Stripe then tells the service by webhook.
    stripe_api.v1.payment_intents.confirm(intent["stripePaymentIntentId"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = client.get(f"/payment-intents/{intent['id']}").json()
        if current["status"] == "succeeded":
            break
        time.sleep(0.3)
    assert current["status"] == "succeeded" and current["amountReceived"] == 2100
    history = client.get(f"/payment-intents/{intent['id']}/history").json()
    assert history[-1]["cause"].startswith("evt_")
    event = WebhookEvent.get_by_id(history[-1]["cause"])
    assert event.type == "payment_intent.succeeded" and event.status == "processed"


def test_a_webhook_without_a_valid_signature_is_400(anonymous):
    payload = json.dumps({"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": {}}})
    assert_error(anonymous.post("/webhooks/stripe", data=payload), 400, "invalid_signature")
    response = anonymous.post("/webhooks/stripe", data=payload, headers={"Stripe-Signature": "t=1,v1=00"})
    assert_error(response, 400, "invalid_signature")
    response = anonymous.post("/webhooks/stripe", data=b"\xff\xfe", headers={"Stripe-Signature": "t=1,v1=00"})
    assert_error(response, 400, "invalid_signature")


def test_openapi_document_is_valid_31_and_docs_work_offline(anonymous):
    document = anonymous.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    validate(document)
    page = anonymous.get("/docs/")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert anonymous.get("/docs/swagger-ui-bundle.js").status_code == 200


def test_every_success_answer_matches_the_openapi_document(client, stripe_api, api_url):
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")

    def conforms(response: requests.Response, path: str, method: str) -> None:
        schema[path][method].validate_response(response)

    customer_id = customer()
    method = client.post(
        "/payment-methods",
        json={"customerId": customer_id, "setAsDefault": True, "stripePaymentMethodId": make_card(stripe_api)},
    )
    conforms(method, "/payment-methods", "POST")
    intent = client.post(
        "/payment-intents",
        json={
            "customerId": customer_id,
            "amount": 4000,
            "currency": "usd",
            "confirm": True,
            "description": "d",
            "metadata": {"k": "v"},
        },
    )
    conforms(intent, "/payment-intents", "POST")
    intent_id = intent.json()["id"]
    conforms(client.get(f"/payment-intents/{intent_id}"), "/payment-intents/{paymentIntentId}", "GET")
    refund = client.post("/refunds", json={"paymentIntentId": intent_id, "amount": 100})
    conforms(refund, "/refunds", "POST")
    conforms(client.get(f"/refunds/{refund.json()['id']}"), "/refunds/{refundId}", "GET")
    history = client.get(f"/payment-intents/{intent_id}/history")
    conforms(history, "/payment-intents/{paymentIntentId}/history", "GET")
    conforms(client.get("/payment-methods", params={"customerId": customer_id}), "/payment-methods", "GET")
    deleted = client.delete(f"/payment-methods/{method.json()['id']}")
    conforms(deleted, "/payment-methods/{paymentMethodId}", "DELETE")
    declined_pm = client.post(
        "/payment-methods",
        json={"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, "4000000000000341")},
    )
    declined = pay_with(client, customer_id, declined_pm.json()["id"])
    assert declined.status_code == 402
    conforms(declined, "/payment-intents", "POST")
    failed = client.get(f"/payment-intents/{declined.json()['error']['details']['paymentIntentId']}")
    conforms(failed, "/payment-intents/{paymentIntentId}", "GET")
