"""Drill 13: the Stripe stand-ins keep Stripe's documented contract (issue 11, point 1).

One emulation of Stripe's idempotency (stand_ins/stripe_idempotency.py) serves the localstripe stand-in and the
drills' proxy: saved answers replayed for 24 h (5xx included), nothing saved for validation failures, 409s or a 5xx
before acting, 400 `idempotency_error` for other parameters, `Stripe-Should-Retry` as Stripe sends it. Both can act
then answer 500, or answer 500 without acting. And the stand-in's objects have the fields the service reads, with
the types of Stripe's published example objects (tests/fixtures/stripe/examples.json, a copy of Stripe's).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from stand_ins.stripe_idempotency import Answer, Execution, StripeIdempotency
from tests.conftest import LOG_DIR
from tests.support import services
from tests.support.stripe_proxy import ACT_THEN_500, Fault, stripe_proxy

pytestmark = pytest.mark.integration

KEY = "sk_test_drill13standin"  # not a secret of the drills: nothing here is scanned for it
FIXTURES = Path(services.ROOT) / "tests" / "fixtures" / "stripe" / "examples.json"
AUTH = "Bearer sk_test_a"
BODY = b"amount=1500&currency=usd&metadata[vy_customer_id]=c1"


# 1. The idempotency layer alone, on a fake clock.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def send(
    layer: StripeIdempotency, body: bytes = BODY, status: int = 200, key: str | None = "k1", acted: bool = True
) -> tuple[Answer, bool]:
    """One request through the layer; returns (answer, whether the endpoint ran)."""
    started = layer.begin("POST", "/v1/payment_intents", body, authorization=AUTH, key=key)
    if isinstance(started, Answer):
        return started, False
    return layer.finish(started, Answer(status, json.dumps({"n": uuid.uuid4().hex}).encode()), acted=acted), True


def test_a_2xx_is_replayed_with_its_saved_answer_marked_idempotent_replayed():
    layer = StripeIdempotency()
    first, ran = send(layer)
    again, ran_again = send(layer)
    assert ran and not ran_again
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert "Stripe-Should-Retry" not in again.headers


def test_the_same_parameters_in_another_order_are_the_same_request():
    layer = StripeIdempotency()
    first, _ = send(layer, b"a=1&b=2&c=")
    again, ran = send(layer, b"c=&b=2&a=1")
    assert not ran and again.body == first.body


def test_a_5xx_after_acting_is_saved_and_replayed_with_stripe_should_retry_false():
    layer = StripeIdempotency()
    first, _ = send(layer, status=500, acted=True)
    again, ran = send(layer)
    assert first.status == 500 and first.headers["Stripe-Should-Retry"] == "false"
    assert not ran and (again.status, again.body) == (500, first.body)
    assert again.headers["Stripe-Should-Retry"] == "false" and again.headers["Idempotent-Replayed"] == "true"


def test_other_parameters_under_a_used_key_are_a_400_idempotency_error_not_saved():
    layer = StripeIdempotency()
    first, _ = send(layer)
    other, ran = send(layer, b"amount=9999&currency=usd")
    error = other.json()["error"]
    assert not ran and other.status == 400 and error["type"] == "idempotency_error"
    assert error["message"] == (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        "Try using a key other than 'k1' if you meant to execute a different request."
    )
    again, _ = send(layer)
    assert again.body == first.body  # the original still replays


def test_a_key_still_executing_answers_409_in_use_and_is_not_saved():
    layer = StripeIdempotency()
    started = layer.begin("POST", "/v1/payment_intents", BODY, authorization=AUTH, key="k1")
    assert isinstance(started, Execution)
    busy, ran = send(layer)
    assert not ran and busy.status == 409
    assert busy.json()["error"]["code"] == "idempotency_key_in_use"
    assert busy.json()["error"]["type"] == "invalid_request_error"
    done = layer.finish(started, Answer(200, b'{"id": "pi_1"}'))
    again, _ = send(layer)
    assert again.body == done.body  # the 409 left nothing behind


def test_concurrent_requests_with_one_key_execute_once():
    layer, ran = StripeIdempotency(), []

    def execute() -> Answer:
        ran.append(1)
        time.sleep(0.2)
        return Answer(200, b'{"id": "pi_1"}')

    def call(_: int) -> int:
        return layer.handle("POST", "/v1/refunds", BODY, execute, authorization=AUTH, key="k1").status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(8)))
    assert len(ran) == 1 and statuses.count(200) == 1 and statuses.count(409) == 7


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 429])
def test_validation_conflict_and_rate_limit_failures_are_not_saved_so_the_key_then_executes(status):
    layer = StripeIdempotency()
    refused, _ = send(layer, status=status)
    assert refused.status == status and "Stripe-Should-Retry" not in refused.headers
    again, ran = send(layer)
    assert ran and again.status == 200


def test_a_402_card_error_is_saved_and_replayed():
    layer = StripeIdempotency()
    declined, _ = send(layer, status=402)
    again, ran = send(layer)
    assert not ran and (again.status, again.body) == (402, declined.body)


def test_a_5xx_without_acting_is_not_saved_and_says_stripe_should_retry_true():
    layer = StripeIdempotency()
    failed, _ = send(layer, status=500, acted=False)
    assert failed.headers["Stripe-Should-Retry"] == "true"
    again, ran = send(layer)
    assert ran and again.status == 200


def test_a_saved_answer_is_forgotten_after_24_hours():
    clock = Clock()
    layer = StripeIdempotency(clock=clock)
    first, _ = send(layer)
    clock.now += 24 * 3600 - 1
    assert send(layer)[0].body == first.body
    clock.now += 1
    fresh, ran = send(layer, b"amount=1&currency=eur")  # the key starts afresh, other parameters and all
    assert ran and fresh.status == 200 and fresh.body != first.body


def test_keys_are_scoped_by_account_and_ignored_without_a_key_or_on_get():
    layer = StripeIdempotency()
    send(layer)
    other_account = layer.begin("POST", "/v1/payment_intents", BODY, authorization="Bearer sk_test_b", key="k1")
    on_get = layer.begin("GET", "/v1/payment_intents", b"", authorization=AUTH, key="k1")
    assert isinstance(other_account, Execution) and isinstance(on_get, Execution) and on_get.scope is None
    assert send(layer, key=None)[1] and send(layer, key=None)[1]


# 2. and 3. The fault modes, through a stand-in process and through the drills' proxy.


def start_stand_in(*flags: str) -> tuple[subprocess.Popen, str]:
    port = services.free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "localstripe-drill13.log", "ab") as log:
        proc = subprocess.Popen(
            [services.PYTHON, "-m", "stand_ins.localstripe_server", "--port", str(port), *flags],
            cwd=services.ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    services.wait_until(lambda: requests.get(f"{base}/v1/customers", auth=(KEY, ""), timeout=1).ok, 30, "stand-in")
    return proc, base


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    """The stand-in as tests and `make run` start it: Stripe's idempotency by default."""
    proc, base = start_stand_in()
    try:
        yield base
    finally:
        services.stop(proc)


@pytest.fixture(scope="module")
def plain_stand_in() -> Iterator[str]:
    """The stand-in ignoring keys, as the original localstripe: the proxy in front carries idempotency."""
    proc, base = start_stand_in("--no-idempotency")
    try:
        yield base
    finally:
        services.stop(proc)


def client(base: str) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": base}, max_network_retries=0)


def create_intent(sdk: stripe.StripeClient, customer: str, tag: str, key: str) -> Any:
    params = {"amount": 1500, "currency": "usd", "customer": customer, "metadata": {"vy_customer_id": tag}}
    return sdk.v1.payment_intents.create(params=params, options={"idempotency_key": key})


def customer_with_card(sdk: stripe.StripeClient, **customer: Any) -> tuple[str, str]:
    """A new customer (with the `customer` parameters given) and a Visa test card attached to it: their ids."""
    customer_id = sdk.v1.customers.create(params=customer).id
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    method = sdk.v1.payment_methods.create(params={"type": "card", "card": card}).id
    sdk.v1.payment_methods.attach(method, params={"customer": customer_id})
    return customer_id, method


def paid_by_card(sdk: stripe.StripeClient, amount: int) -> Any:
    """An intent for `amount` USD confirmed with a new customer's card: succeeded, its charge captured whole."""
    customer, method = customer_with_card(sdk)
    return sdk.v1.payment_intents.create(
        params={"amount": amount, "currency": "usd", "customer": customer, "payment_method": method, "confirm": True}
    )


def intents_of(sdk: stripe.StripeClient, customer: str, **filters: Any) -> list[Any]:
    return list(sdk.v1.payment_intents.list(params={"customer": customer, "limit": 100, **filters}).data)


def assert_500(sdk: stripe.StripeClient, customer: str, tag: str, key: str, should_retry: str) -> stripe.APIError:
    with pytest.raises(stripe.APIError) as failed:
        create_intent(sdk, customer, tag, key)
    assert failed.value.http_status == 500 and failed.value.headers["Stripe-Should-Retry"] == should_retry
    return failed.value


def assert_acted_then_500_replays(sdk: stripe.StripeClient, tag: str) -> None:
    customer, key = sdk.v1.customers.create().id, f"k-{uuid.uuid4()}"
    since = int(time.time()) - 5
    first = assert_500(sdk, customer, tag, key, "false")
    assert len(intents_of(sdk, customer)) == 1  # Stripe acted before failing
    again = assert_500(sdk, customer, tag, key, "false")
    assert again.headers["Idempotent-Replayed"] == "true" and again.json_body == first.json_body
    found = intents_of(sdk, customer, created={"gte": since, "lte": int(time.time()) + 5})
    assert [intent.metadata["vy_customer_id"] for intent in found] == [tag]  # the lookup resolves it


def assert_500_without_acting_then_executes_once(sdk: stripe.StripeClient, tag: str) -> None:
    customer, key = sdk.v1.customers.create().id, f"k-{uuid.uuid4()}"
    assert_500(sdk, customer, tag, key, "true")
    assert intents_of(sdk, customer) == []
    made = create_intent(sdk, customer, tag, key)
    replayed = create_intent(sdk, customer, tag, key)
    assert replayed.id == made.id and replayed.last_response.headers["Idempotent-Replayed"] == "true"
    assert [intent.id for intent in intents_of(sdk, customer)] == [made.id]


def add_fault(base: str, kind: str, tag: str) -> None:
    rule = {"kind": kind, "method": "POST", "path_prefix": "/v1/payment_intents", "count": 1}
    body = {**rule, "form": {"metadata[vy_customer_id]": tag}}
    requests.post(f"{base}/_config/faults", json=body, timeout=5).raise_for_status()


def test_stand_in_act_then_500_creates_one_intent_and_replays_the_saved_500(stand_in):
    tag = uuid.uuid4().hex
    add_fault(stand_in, "act_then_500", tag)
    assert_acted_then_500_replays(client(stand_in), tag)


def test_stand_in_500_without_acting_creates_nothing_says_retry_and_the_key_then_executes_once(stand_in):
    tag = uuid.uuid4().hex
    add_fault(stand_in, "500_without_acting", tag)
    assert_500_without_acting_then_executes_once(client(stand_in), tag)


def test_stand_in_validation_failures_and_other_parameters_are_not_saved(stand_in):
    sdk, key = client(stand_in), f"k-{uuid.uuid4()}"
    customer = sdk.v1.customers.create().id
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.payment_intents.create(params={"amount": 0, "currency": "usd"}, options={"idempotency_key": key})
    made = create_intent(sdk, customer, "t", key)  # the 400 left the key free
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.payment_intents.create(params={"amount": 1, "currency": "usd"}, options={"idempotency_key": key})
    assert create_intent(sdk, customer, "t", key).id == made.id


def test_stand_in_a_key_in_use_answers_409_while_the_first_still_runs(stand_in):
    sdk, key = client(stand_in), f"k-{uuid.uuid4()}"
    customer = sdk.v1.customers.create().id
    hold = {"path_prefix": "/v1/payment_intents", "method": "POST", "seconds": 1.5, "count": 1}
    requests.post(f"{stand_in}/_config/delay", json=hold, timeout=5).raise_for_status()
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(create_intent, sdk, customer, "t", key)
            time.sleep(0.5)
            with pytest.raises(stripe.StripeError) as busy:  # stripe-python raises a 409 as APIError
                create_intent(sdk, customer, "t", key)
            made = first.result()
    finally:
        requests.delete(f"{stand_in}/_config/delay", timeout=5)
    assert busy.value.http_status == 409 and busy.value.error.code == "idempotency_key_in_use"
    assert [intent.id for intent in intents_of(sdk, customer)] == [made.id]


def test_no_idempotency_flag_ignores_keys_as_the_original_localstripe(plain_stand_in):
    sdk, key = client(plain_stand_in), f"k-{uuid.uuid4()}"
    customer = sdk.v1.customers.create().id
    assert create_intent(sdk, customer, "t", key).id != create_intent(sdk, customer, "t", key).id


def test_proxy_act_then_500_creates_one_intent_replays_the_500_and_keeps_raw_bodies(plain_stand_in):
    with stripe_proxy(plain_stand_in) as proxy:
        tag = uuid.uuid4().hex
        proxy.add_rule(lambda m, p, form: form.get("metadata[vy_customer_id]") == [tag], [Fault(ACT_THEN_500)])
        assert_acted_then_500_replays(client(proxy.url), tag)
        seen = proxy.requests_for(lambda s: s.form.get("metadata[vy_customer_id]") == [tag])
    assert [s.fault for s in seen] == [ACT_THEN_500, "pass"] and [s.replayed for s in seen] == [False, True]
    assert seen[0].body == seen[1].body and seen[0].body.startswith(b"amount=1500")
    assert [s.headers["Stripe-Should-Retry"] for s in seen] == ["false", "false"]


def test_proxy_500_without_acting_creates_nothing_says_retry_and_the_key_then_executes_once(plain_stand_in):
    with stripe_proxy(plain_stand_in) as proxy:
        tag = uuid.uuid4().hex
        proxy.add_rule(
            lambda m, p, form: form.get("metadata[vy_customer_id]") == [tag], [Fault.error(500, "api_error")]
        )
        assert_500_without_acting_then_executes_once(client(proxy.url), tag)
        seen = proxy.requests_for(lambda s: s.form.get("metadata[vy_customer_id]") == [tag])
    assert [s.status for s in seen] == [500, 200, 200] and seen[0].headers["Stripe-Should-Retry"] == "true"


# 4. Real object shapes: the fields the service reads, in the stand-in's answers and in Stripe's examples.

READ = {
    "payment_intent": [
        "id", "object", "status", "amount", "currency", "amount_capturable", "amount_received", "capture_method",
        "customer", "client_secret", "created", "metadata", "last_payment_error", "latest_charge", "next_action",
        "cancellation_reason", "payment_method", "description",
    ],
    "payment_method": [
        "id", "object", "type", "customer", "created", "card.brand", "card.last4", "card.exp_month", "card.exp_year",
        "card.fingerprint",
    ],
    "customer": ["id", "object", "created", "metadata", "invoice_settings.default_payment_method"],
    "event": ["id", "object", "type", "created", "api_version", "data.object"],
    "refund": [
        "id", "object", "status", "amount", "currency", "charge", "payment_intent", "reason", "metadata", "created",
    ],
    "charge": [
        "id", "object", "payment_intent", "amount", "amount_captured", "amount_refunded", "captured", "refunded",
        "status", "created",
    ],
}  # fmt: skip
# Nullable at Stripe (null in its example, or in a fresh object): the JSON type when not null.
NULLABLE = {
    "payment_intent.cancellation_reason": "string",
    "payment_intent.customer": "string",
    "payment_intent.description": "string",
    "payment_intent.last_payment_error": "object",
    "payment_intent.latest_charge": "string",
    "payment_intent.next_action": "object",
    "payment_intent.payment_method": "string",
    "payment_method.customer": "string",
    "customer.invoice_settings.default_payment_method": "string",
    "event.api_version": "string",
    "refund.payment_intent": "string",
    "refund.reason": "string",
    "charge.payment_intent": "string",
}
# Present only in some states at Stripe (absent from its example): read with .get, never required.
OPTIONAL = {"refund.failure_reason": "string"}


def json_type(value: Any) -> str:
    names = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(type(value)) or ("object" if isinstance(value, dict) else "array")


def field_of(obj: dict, path: str) -> tuple[bool, Any]:
    """(present, value) of a dotted field."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return False, None
        obj = obj[part]
    return True, obj


def shape_mismatches(resource: str, stand_in: dict, example: dict) -> list[str]:
    wrong = []
    for path in READ[resource] + [p.split(".", 1)[1] for p in OPTIONAL if p.startswith(resource + ".")]:
        name = f"{resource}.{path}"
        sides = {"stand-in": field_of(stand_in, path), "fixture": field_of(example, path)}
        for side, (present, _) in sides.items():
            if not present and name not in OPTIONAL:
                wrong.append(f"{name} missing in the {side}")
        types = {side: json_type(value) for side, (present, value) in sides.items() if present}
        if name in NULLABLE or name in OPTIONAL:
            allowed = {(NULLABLE | OPTIONAL)[name], "null"}
            wrong += [f"{name} is {t} in the {side}, not {allowed}" for side, t in types.items() if t not in allowed]
        elif len(set(types.values())) > 1 or "null" in types.values():
            wrong.append(f"{name}: {types} (null there: add it to NULLABLE with its type)")
    return wrong


def test_the_fields_the_service_reads_have_stripes_types_in_the_stand_in_and_in_stripes_examples(stand_in):
    sdk = client(stand_in)
    get = lambda path: requests.get(f"{stand_in}{path}", auth=(KEY, ""), timeout=5).json()  # noqa: E731
    customer, method = customer_with_card(sdk, metadata={"vy_customer_id": "shape"})
    sdk.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method}})
    intent = sdk.v1.payment_intents.create(
        params={
            "amount": 2500, "currency": "usd", "customer": customer, "payment_method": method, "confirm": True,
            "description": "shape", "metadata": {"vy_payment_intent_id": "vypi_shape"},
        },
        options={"idempotency_key": f"k-{uuid.uuid4()}"},
    )  # fmt: skip
    refund = sdk.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 500, "reason": "requested_by_customer", "metadata": {"a": "b"}}
    )
    answers = {
        "payment_intent": get(f"/v1/payment_intents/{intent.id}"),
        "payment_method": get(f"/v1/payment_methods/{method}"),
        "customer": get(f"/v1/customers/{customer}"),
        "refund": get(f"/v1/refunds/{refund.id}"),
        "charge": get(f"/v1/charges/{intent.latest_charge}"),
    }
    events = {e["type"]: e for e in get("/v1/events?limit=100")["data"] if e["data"]["object"]["id"] == refund.id}
    answers["event"] = events["refund.created"]
    examples = json.loads(FIXTURES.read_text())["resources"]

    wrong = [m for resource, answer in answers.items() for m in shape_mismatches(resource, answer, examples[resource])]
    assert wrong == []
    assert answers["payment_intent"]["latest_charge"].startswith("ch_")  # an id, expandable, as at Stripe
    assert answers["charge"]["amount_captured"] == 2500 and answers["charge"]["amount_refunded"] == 500
    assert answers["event"]["api_version"] == stripe.api_version
    assert "failure_reason" not in answers["refund"]  # only a failed refund has one


def test_a_refund_sends_refund_created_and_charge_refunded_without_a_refunds_list(stand_in):
    sdk = client(stand_in)
    intent = paid_by_card(sdk, 900)
    refund = sdk.v1.refunds.create(params={"payment_intent": intent.id})
    listed = requests.get(f"{stand_in}/v1/events?limit=100", auth=(KEY, ""), timeout=5).json()["data"]
    objects = {
        e["type"]: e["data"]["object"] for e in listed if e["data"]["object"]["id"] in (refund.id, intent.latest_charge)
    }
    assert objects["refund.created"]["id"] == refund.id
    assert objects["charge.refunded"]["refunded"] is True and "refunds" not in objects["charge.refunded"]
    charge = requests.get(f"{stand_in}/v1/charges/{intent.latest_charge}", auth=(KEY, ""), timeout=5).json()
    assert "refunds" not in charge and charge["amount_refunded"] == 900


def test_listing_intents_filters_by_customer_and_created_newest_first_and_pages(stand_in):
    sdk = client(stand_in)
    customer, other = sdk.v1.customers.create().id, sdk.v1.customers.create().id
    made = [create_intent(sdk, customer, "t", f"k-{uuid.uuid4()}").id for _ in range(3)]
    create_intent(sdk, other, "t", f"k-{uuid.uuid4()}")
    now = int(time.time())
    assert [i.id for i in intents_of(sdk, customer)] == made[::-1]
    assert [i.id for i in intents_of(sdk, customer, created={"gte": now - 60, "lte": now + 60})] == made[::-1]
    assert intents_of(sdk, customer, created={"gt": now + 60}) == []
    assert intents_of(sdk, customer, created={"lt": now - 60}) == []
    first = sdk.v1.payment_intents.list(params={"customer": customer, "limit": 2})
    rest = sdk.v1.payment_intents.list(params={"customer": customer, "limit": 2, "starting_after": first.data[-1].id})
    assert first.has_more and [i.id for i in first.data + rest.data] == made[::-1] and not rest.has_more
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.payment_intents.list(params={"customer": customer, "created": {"around": now}})


def test_a_refund_larger_than_what_the_charge_has_left_is_refused_as_stripe_refuses_it(stand_in):
    sdk = client(stand_in)
    intent = paid_by_card(sdk, 1000)
    sdk.v1.refunds.create(params={"payment_intent": intent.id, "amount": 600})
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        sdk.v1.refunds.create(params={"payment_intent": intent.id, "amount": 401})
    assert too_much.value.code == "amount_too_large"
    assert sdk.v1.refunds.create(params={"payment_intent": intent.id, "amount": 400}).amount == 400  # what is left
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        sdk.v1.refunds.create(params={"payment_intent": intent.id})
    assert nothing_left.value.code == "charge_already_refunded"
