"""Drill 10: hostile input — property-based fuzzing (hypothesis) of every operation's payload on both doors.

REST under gunicorn and Kafka through the relay each take thousands of generated inputs (valid, mutated, oversized,
deeply nested, not UTF-8, SQL- and script-looking). Nothing may answer 5xx, no process may die, /readyz stays 200,
and the stored data keeps its invariants (no partial row) afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from registry import OPERATIONS
from tests.drills import fuzz_inputs
from tests.drills.conftest import API_KEY, WEBHOOK_SECRET, Api, size
from tests.drills.helpers import customer, invariant_violations, paid_intent, table_counts, vault
from tests.drills.report import report
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration

REST_INPUTS = size(300, 3500)
KAFKA_INPUTS = size(150, 6700)
REST_BATCH = 32  # requests in flight at once
CHUNK = 200  # inputs drawn per round
ALLOWED_REST = {200, 201, 400, 401, 402, 404, 405, 409, 413, 422}
KNOWN_ERROR_CODES = {
    "validation_error",
    "card_declined",
    "not_found",
    "idempotency_key_in_use",
    "idempotency_key_reused",
    "refund_exceeds_amount",
    "invalid_state",
    "invalid_signature",
    "payload_too_large",
}


def generate(strategy: st.SearchStrategy, count: int) -> list:
    """`count` inputs drawn by hypothesis (generation only: no shrinking, no example database)."""
    drawn: list = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        drawn.append(value)

    collect()
    return drawn[:count]


@dataclass
class Tally:
    sent: int = 0
    by_status: dict[int | str, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def count(self, status: int | str) -> None:
        self.sent += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def fail(self, what: str, detail: str) -> None:
        if len(self.failures) < 30:
            self.failures.append((what[:300], detail[:300]))


@dataclass
class Known:
    customers: list[str]
    intents: list[str]
    methods: list[str]


@pytest.fixture(scope="module")
def known(stack, stripe_api) -> Known:
    """A few real customers, cards and paid intents, so that generated valid requests do real work."""
    api = Api(stack.api_url)
    customers, intents, methods = [], [], []
    for _ in range(3):
        customer_id = customer("fuzz")
        methods.append(vault(api, stripe_api, customer_id)["id"])
        customers.append(customer_id)
    for _ in range(2):
        intents.append(paid_intent(api, stripe_api, "fuzz", amount=50_000)["id"])
    return Known(customers, intents, methods)


PATH_PARAMS = ("payment_intent_id", "refund_id", "payment_method_id", "attempt_id")


def _fill_path(op_path: str, payload: Any) -> tuple[str, Any]:
    """The route with its path parameters taken from the payload (what is left goes in the body or query)."""
    path, rest = op_path, dict(payload) if isinstance(payload, dict) else payload
    for name in PATH_PARAMS:
        if f"<{name}>" not in path:
            continue
        camel = "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))
        value = rest.pop(camel, "x") if isinstance(rest, dict) else json.dumps(payload)
        path = path.replace(f"<{name}>", quote(str(value) if value != "" else "x", safe=""))
    return path, rest


def rest_request(operation: str, payload: Any, raw: bytes | None, headers: dict[str, str]) -> tuple[str, str, dict]:
    """(method, path, requests kwargs) for one generated input."""
    op = OPERATIONS[operation]
    path, rest = _fill_path(op.path, payload)
    if op.method == "POST":
        if raw is not None:
            return "POST", path, {"data": raw, "headers": {"Content-Type": "application/json", **headers}}
        if operation == "process-stripe-webhook" and isinstance(payload, dict):
            body = payload.get("payload")
            body = body if isinstance(body, str) else json.dumps(body)
            signature = payload.get("signature")
            return (
                "POST",
                path,
                {
                    "data": body.encode("utf-8", "surrogatepass"),
                    "headers": {"Stripe-Signature": str(signature)[:8000], **headers},
                },
            )
        return (
            "POST",
            path,
            {"data": json.dumps(rest).encode(), "headers": {"Content-Type": "application/json", **headers}},
        )
    params: Any = None
    if isinstance(rest, dict) and operation in ("list-payment-methods", "list-payment-intents"):
        params = {k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in rest.items()}
    return op.method, path, {"params": params, "headers": headers}


signed_events = st.builds(
    lambda event_id, event_type, created, obj: {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "data": {"object": obj},
    },
    st.one_of(st.from_regex(r"\Aevt_[a-z0-9]{8,20}\Z"), fuzz_inputs.json_values),
    st.one_of(
        st.sampled_from(["payment_intent.succeeded", "payment_intent.canceled", "charge.refunded", "refund.updated"]),
        fuzz_inputs.json_values,
    ),
    st.one_of(st.integers(0, 2**40), fuzz_inputs.json_values),
    fuzz_inputs.json_values,
)

headers_strategy = st.fixed_dictionaries(
    {},
    optional={
        "Idempotency-Key": st.one_of(
            st.uuids().map(str), st.text(max_size=300).filter(lambda s: "\n" not in s and "\r" not in s)
        ),
        "X-Trace-Id": st.one_of(st.uuids().map(str), st.text(alphabet="abc;<>'\" ", max_size=200)),
    },
)


def operation_payloads(known: Known) -> dict[str, st.SearchStrategy]:
    """Per operation: valid payloads with hostile strings, mutated ones, any JSON; signed events for the webhook."""
    fields = fuzz_inputs.field_strategies(known.customers, known.intents, known.methods)
    strategies = {
        op: fuzz_inputs.payloads(
            op, fields, fuzz_inputs.valid_payloads(op, known.customers, known.intents, known.methods)
        )
        for op in OPERATIONS
    }
    signed = signed_events.map(lambda e: {"payload": json.dumps(e), "signature": "sign"})
    strategies["process-stripe-webhook"] = st.one_of(strategies["process-stripe-webhook"], signed, signed)
    return strategies


@pytest.mark.timeout(900)
def test_ten_thousand_hostile_inputs_on_both_doors_get_no_5xx_crash_or_partial_row(stack, known, drill_kafka):
    operations = list(OPERATIONS)
    by_operation = operation_payloads(known)
    one_rest_input = st.one_of(
        st.one_of([st.tuples(st.just(op), by_operation[op], st.none(), headers_strategy) for op in operations]),
        st.tuples(
            st.sampled_from([op for op in operations if OPERATIONS[op].method == "POST"]),
            st.none(),
            fuzz_inputs.raw_bodies,
            headers_strategy,
        ),
    )
    before = table_counts(stack.sql)
    rest, kafka_tally = Tally(), Tally()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=REST_BATCH))
    pool = ThreadPoolExecutor(REST_BATCH)

    def send_rest(item: tuple) -> None:
        operation, payload, raw, headers = item
        signed = isinstance(payload, dict) and payload.get("signature") == "sign"
        if operation == "process-stripe-webhook" and signed:
            payload = {**payload, "signature": sign(payload["payload"], WEBHOOK_SECRET)}
        # Header values as UTF-8 bytes: http.client refuses to encode anything past Latin-1 itself.
        method, path, kwargs = rest_request(operation, payload, raw, {k: v.encode() for k, v in headers.items()})
        what = f"{method} {path[:120]} {str(payload)[:120]!r} raw={raw[:60] if raw else None!r} {headers}"
        try:
            response = session.request(method, stack.api_url + path, timeout=90, **kwargs)
        except (requests.exceptions.InvalidHeader, ValueError):
            rest.count("not sent (the HTTP client refused the header)")
            return
        except requests.RequestException as exc:
            rest.count("connection error")
            rest.fail(what, f"{type(exc).__name__}: {exc}")
            return
        rest.count(response.status_code)
        if response.status_code in (414, 431):
            pass  # gunicorn's own limits on the request line and headers: a 4xx, before the app
        elif response.status_code not in ALLOWED_REST:
            rest.fail(what, f"{response.status_code} {response.text[:200]}")
        elif response.status_code >= 400:
            try:
                body = response.json()
                ok = set(body) == {"error", "traceId"} and "Traceback" not in response.text
            except ValueError:
                ok = "Invalid HTTP" in response.text  # gunicorn's own refusal of a malformed request line
            if not ok:
                rest.fail(what, f"{response.status_code} not in the error format: {response.text[:200]}")

    started = time.monotonic()
    for _ in range(10 * REST_INPUTS // CHUNK + 10):  # bounded: a round draws up to CHUNK inputs
        if rest.sent >= REST_INPUTS:
            break
        # Drawn in chunks, then sent concurrently: hypothesis generates, the pool does the I/O.
        list(pool.map(send_rest, generate(one_rest_input, min(CHUNK, REST_INPUTS - rest.sent))))
    rest_seconds = time.monotonic() - started

    # Kafka: the same payloads as message values (and raw bytes), keys mostly uuids, some missing or not UTF-8.
    gateway, collector = drill_kafka.gateway, drill_kafka.collector
    sent_keyed: list[tuple[str, bytes]] = []
    keyless = 0
    produced = [0]
    key_kinds = st.one_of(st.just("uuid"), st.just("uuid"), st.just("uuid"), st.none(), st.just(b"\xff\xfe-not-utf8"))
    raw_values = st.sampled_from([None] * 8 + fuzz_inputs.RAW_BODIES[:10])
    one_kafka_input = st.one_of(
        [
            st.tuples(
                st.just(op),
                by_operation[op],
                st.one_of(raw_values, st.binary(max_size=200)) if op != "process-stripe-webhook" else st.none(),
                key_kinds,
            )
            for op in operations
        ]
    )

    def produce(item: tuple) -> None:
        nonlocal keyless
        operation, payload, raw, key_kind = item
        if operation == "process-stripe-webhook" and isinstance(payload, dict) and payload.get("signature") == "sign":
            payload = {**payload, "signature": sign(payload["payload"], WEBHOOK_SECRET)}
        value = raw if raw is not None else json.dumps(payload).encode("utf-8", "surrogatepass")
        if key_kind is None:
            key = None
            keyless += 1
        elif key_kind == "uuid":
            key = f"fuzz-{uuid.uuid4()}".encode()
        else:
            key = key_kind + uuid.uuid4().hex.encode()
        gateway.producer.produce(operation, value=value[:900_000], key=key)
        gateway.producer.poll(0)
        if key is not None:
            sent_keyed.append((operation, key))
        produced[0] += 1

    started = time.monotonic()
    for _ in range(10 * KAFKA_INPUTS // CHUNK + 10):
        if produced[0] >= KAFKA_INPUTS:
            break
        for item in generate(one_kafka_input, min(CHUNK, KAFKA_INPUTS - produced[0])):
            produce(item)
    gateway.flush()
    answered = lambda: sum(bool(collector.received(k, f"{op}-response")) for op, k in sent_keyed)  # noqa: E731
    try:
        collector.wait(lambda: answered() == len(sent_keyed), 240, "an answer to every keyed fuzz message")
    except TimeoutError:
        pass
    kafka_seconds = time.monotonic() - started
    for operation, key in sent_keyed:
        replies = collector.received(key, f"{operation}-response")
        if not replies:
            kafka_tally.count("unanswered")
            kafka_tally.fail(f"{operation} key={key[:40]!r}", "no reply")
            continue
        body = replies[0].json()
        if "response" in body:
            kafka_tally.count("response")
        else:
            error = body.get("error", {})
            kafka_tally.count(error.get("code", "?"))
            if error.get("status", 500) >= 500 or error.get("code") not in KNOWN_ERROR_CODES:
                kafka_tally.fail(f"{operation} key={key[:40]!r}", json.dumps(error)[:300])

    time.sleep(1.0)
    alive = stack.alive()
    ready = requests.get(f"{stack.api_url}/readyz", timeout=10)
    after = table_counts(stack.sql)
    stuck = stack.sql("SELECT COUNT(*) FROM idempotency_record WHERE state = 'in_flight'")[0][0]
    violations = invariant_violations(stack.sql)
    report(
        "10",
        "property-based fuzzing (hypothesis) of all 9 operations: valid, mutated, oversized, nested, non-UTF-8, "
        "SQL- and script-looking",
        rest_inputs=rest.sent,
        rest_by_status=json.dumps({str(k): v for k, v in sorted(rest.by_status.items(), key=str)}),
        rest_seconds=round(rest_seconds, 1),
        kafka_inputs=produced[0],
        kafka_keyed=len(sent_keyed),
        kafka_keyless_or_dead_lettered=keyless,
        kafka_by_outcome=json.dumps({str(k): v for k, v in sorted(kafka_tally.by_status.items(), key=str)}),
        kafka_seconds=round(kafka_seconds, 1),
        inputs_total=rest.sent + produced[0],
        processes_alive=f"{sum(alive.values())}/{len(alive)}",
        readyz=ready.status_code,
        rows_added=json.dumps({t: after[t] - before[t] for t in after}),
        keys_left_in_flight=stuck,
        invariant_violations=len(violations),
    )
    for what, detail in rest.failures + kafka_tally.failures:
        print(f"  drill 10 finding: {what} -> {detail}")
    assert rest.failures == [], rest.failures[:5]
    assert kafka_tally.failures == [], kafka_tally.failures[:5]
    assert all(alive.values()), alive
    assert ready.status_code == 200
    assert violations == {}
    assert stuck == 0


NESTED_BODIES = {
    "object nested 50 000 deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "array nested 100 000 deep": b"[" * 100_000 + b"]" * 100_000,
}


def test_a_json_body_nested_past_the_parser_stack_is_refused_400_not_500(stack, api):
    answers = {
        label: api.post("/payment-intents", data=body, headers={"Content-Type": "application/json"}).status_code
        for label, body in NESTED_BODIES.items()
    }
    report(
        "10",
        "JSON bodies nested past the parser's stack over REST",
        **{k.replace(" ", "_"): v for k, v in answers.items()},
    )
    assert set(answers.values()) == {400}, answers


SIGNED_SHAPES = {
    "created is a list": {"created": [1]},
    "created is text": {"created": "yesterday"},
    "created is 1e309": {"created": 1e309},
    "data is text": {"data": "x"},
    "data is a list": {"data": [1]},
    "data.object is a list": {"data": {"object": [1]}},
}


def test_a_signed_event_of_an_unexpected_shape_is_answered_4xx_not_500(stack):
    answers = {}
    for label, change in SIGNED_SHAPES.items():
        event = {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {"object": {"id": "pi_x", "status": "succeeded"}},
            **change,
        }
        payload = json.dumps(event)
        response = requests.post(
            f"{stack.api_url}/webhooks/stripe",
            data=payload,
            headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
            timeout=60,
        )
        answers[label] = response.status_code
    report(
        "10",
        "correctly signed events of unexpected shapes over REST",
        **{k.replace(" ", "_"): v for k, v in answers.items()},
    )
    assert all(status < 500 for status in answers.values()), answers
