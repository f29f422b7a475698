"""Hypothesis strategies for drill 10: every operation's payload, valid, mutated and hostile, for both doors."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import strategies as st

from registry import OPERATIONS

SQL_LOOKING = [
    "' OR '1'='1",
    "'; DROP TABLE payment_intent; --",
    '" OR ""="',
    "1; SELECT SLEEP(10)",
    "x' UNION SELECT key_hash, outcome FROM idempotency_record --",
    "vypi_1' OR 1=1 --",
    "\\'; DELETE FROM refund WHERE '1'='1",
    "%27%20OR%201%3D1",
    "`; TRUNCATE ztracking_payment_intent; `",
]
SCRIPT_LOOKING = [
    "<script>alert(document.cookie)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(1)",
    "{{7*7}}${7*7}<%= 7*7 %>",
    "${jndi:ldap://127.0.0.1/a}",
    "__proto__",
    "constructor",
    "../../../../etc/passwd",
    "\u202eevil\u202c",
    "\x00\x01\x1f\x7f",
    "a\r\nX-Injected: 1",
    "\ufeff\u200b\u2028\u2029",
    "\U0001d54f\U0001f600\U0010ffff",
]
HOSTILE_STRINGS = SQL_LOOKING + SCRIPT_LOOKING + ["", " ", "null", "NaN", "-1", "0", "1e309", "true"]
CURRENCIES = ["usd", "eur", "jpy", "gbp", "USD", "Eur", "xxx", "us", "usdd", "", "💵"]

text_alone = st.text(max_size=40)
printable_text = st.text(alphabet=string.printable, min_size=1, max_size=300)
known_hostile = st.sampled_from(HOSTILE_STRINGS)
oversized = st.integers(0, 6).map(lambda n: "x" * (10**n // 2 + 1))  # up to 500 001 characters
# Oversized values one draw in eight: enough to test every field's limit, few enough to keep the drill fast.
hostile_text = st.one_of(
    text_alone, known_hostile, printable_text, text_alone, known_hostile, printable_text, text_alone, oversized
)
ids = st.one_of(
    st.from_regex(r"\A(vypi|vyre|vypm|pi|pm|re)_[A-Za-z0-9]{1,30}\Z"),
    st.from_regex(r"\A[A-Za-z0-9_]{1,64}\Z"),
    hostile_text,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
amounts = st.one_of(
    st.integers(1, 99_999_999), st.integers(-(2**64), 2**64), st.floats(allow_nan=False), st.text(max_size=5)
)
metadata = st.one_of(
    st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=500), max_size=5),
    st.dictionaries(st.sampled_from([*HOSTILE_STRINGS, "vy_customer_id", "k[0]"]), hostile_text, max_size=3),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), min_size=48, max_size=60),
    json_values,
)


emails = st.one_of(st.emails(), st.sampled_from(["a@b", "@x.io", "x@y.z\u202e", "Ada@Example.COM"]))
cart_items = st.fixed_dictionaries(
    {
        "id": st.one_of(st.uuids().map(str), hostile_text),
        "quantity": st.one_of(st.integers(-2, 20), json_values),
        "priceCents": st.one_of(st.integers(-100, 10**9), json_values),
        "currency": st.one_of(st.sampled_from(CURRENCIES), json_values),
    }
)
customer_details = st.fixed_dictionaries(
    {"email": st.one_of(emails, hostile_text, json_values)},
    optional={
        "firstName": hostile_text,
        "lastName": hostile_text,
        "address": st.one_of(
            st.dictionaries(st.sampled_from(["street", "city", "zip", "country"]), hostile_text), json_values
        ),
    },
)


def field_strategies(customers: list[str], intents: list[str], methods: list[str]) -> dict[str, Any]:
    """Plausible values for each field name, mixed with hostile ones; some known ids so work really runs."""
    known_customers = st.sampled_from(customers) if customers else hostile_text
    known_intents = st.sampled_from(intents) if intents else ids
    return {
        "customerId": st.one_of(known_customers, hostile_text, json_values),
        "amount": amounts,
        "currency": st.one_of(st.sampled_from(CURRENCIES), json_values),
        "paymentMethodId": st.one_of(st.sampled_from(methods) if methods else ids, ids, st.none(), json_values),
        "confirm": st.one_of(st.booleans(), json_values),
        "captureMethod": st.one_of(st.sampled_from(["automatic", "manual", "AUTOMATIC", ""]), json_values),
        "description": st.one_of(hostile_text, st.none(), json_values),
        "metadata": metadata,
        "paymentIntentId": st.one_of(known_intents, ids, json_values),
        "reason": st.one_of(st.sampled_from(["duplicate", "fraudulent", "requested_by_customer", "x"]), json_values),
        "refundId": st.one_of(ids, json_values),
        "stripePaymentMethodId": st.one_of(st.from_regex(r"\Apm_[A-Za-z0-9]{1,24}\Z"), hostile_text, json_values),
        "setAsDefault": st.one_of(st.booleans(), json_values),
        "limit": st.one_of(st.integers(-5, 200), json_values),
        "startingAfter": st.one_of(ids, st.none(), json_values),
        "payload": st.one_of(hostile_text, json_values),
        "signature": st.one_of(hostile_text, st.just("t=1,v1=00")),
        "orderId": st.one_of(hostile_text, st.none(), json_values),
        "subscriptionId": st.one_of(hostile_text, st.none(), json_values),
        "amountToCapture": amounts,
        "cancellationReason": st.one_of(st.sampled_from(["duplicate", "abandoned", "automatic", ""]), json_values),
        "status": st.one_of(st.sampled_from(["succeeded", "canceled", "failed"]), json_values),
        "createdGte": st.one_of(st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "yesterday"]), json_values),
        "createdLt": st.one_of(st.sampled_from(["2999-01-01T00:00:00+02:00", "1e309"]), json_values),
        "endingBefore": st.one_of(ids, st.none(), json_values),
        "attemptId": st.one_of(st.from_regex(r"\Avyat_[A-Za-z0-9]{1,30}\Z"), ids, json_values),
        # The platform's dialect (doors/platform.py): its cart, its person, its confirm's extras.
        "items": st.one_of(st.lists(cart_items, max_size=4), json_values),
        "customerDetails": st.one_of(customer_details, json_values),
        "receiptEmail": st.one_of(emails, hostile_text, json_values),
        "returnUrl": st.one_of(
            st.sampled_from(["https://shop.example/done", "http://127.0.0.1/x", "javascript:1"]),
            hostile_text,
            json_values,
        ),
        "setupFutureUsage": st.one_of(st.sampled_from(["off_session", "on_session", "OFF"]), json_values),
        "shipping": st.one_of(st.fixed_dictionaries({"name": hostile_text, "address": json_values}), json_values),
        "ifCaptured": st.one_of(st.sampled_from(["refuse", "answer", "ANSWER"]), json_values),
        "type": st.one_of(st.sampled_from(["CARD", "ACH", "APPLE_PAY", "GOOGLE_PAY", "OTHER", "card"]), json_values),
    }


def payloads(operation: str, fields: dict[str, Any], valid: Any = None) -> st.SearchStrategy[Any]:
    """A payload for `operation`: valid, its own fields mutated (each maybe dropped, extra ones), or any JSON."""
    names = list(OPERATIONS[operation].schema.model_json_schema(by_alias=True)["properties"])

    @st.composite
    def build(draw: Any) -> Any:
        chosen = {}
        for name in names:
            if draw(st.integers(0, 9)) > 0:  # a field is missing one time in ten
                chosen[name] = draw(fields[name])
        if draw(st.integers(0, 9)) == 0:
            chosen.update(
                draw(st.dictionaries(st.sampled_from([*HOSTILE_STRINGS, "traceId", "extra"]), json_values, max_size=2))
            )
        return chosen

    if valid is None:
        return st.one_of(build(), build(), build(), json_values)
    return st.one_of(valid, valid, build(), build(), json_values)


# Raw bodies no JSON encoder writes: not UTF-8, nested past any stack, lone surrogates, NaN, huge numbers.
RAW_BODIES = [
    b"\xff\xfe\x00{",
    b'{"customerId": "\xc3\x28", "amount": 100, "currency": "usd"}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b'{"customerId": "\\ud800", "amount": 100, "currency": "usd"}',
    b'{"customerId": "c", "amount": NaN, "currency": "usd"}',
    b'{"customerId": "c", "amount": 1e400, "currency": "usd"}',
    b'{"customerId": "c", "amount": 100000000000000000000000000000000000000, "currency": "usd"}',
    b'{"customerId": "c", "customerId": "d", "amount": 100, "currency": "usd"}',
    b"\xef\xbb\xbf{}",
    b"",
    b"null",
    b"x" * (2 * 1024 * 1024),
    json.dumps({"customerId": "c", "amount": 100, "currency": "usd", "description": "é" * 600_000}).encode(),
]
raw_bodies = st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=300))


printable_hostile = st.one_of(
    st.sampled_from([s for s in HOSTILE_STRINGS if s.strip() and not any(ord(c) < 32 or ord(c) == 127 for c in s)]),
    st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFFF, exclude_categories=("Cs", "Cc")),
        min_size=1,
        max_size=60,
    ),
)
valid_ids = st.from_regex(r"\A(vypi|vyre|vypm)_[A-Za-z0-9]{1,30}\Z")


def valid_payloads(operation: str, customers: list[str], intents: list[str], methods: list[str]) -> Any:
    """Payloads the schema accepts, with hostile-looking strings wherever a string may be anything."""
    known_customer = st.sampled_from(customers) if customers else printable_hostile
    known_intent = st.sampled_from(intents) if intents else valid_ids
    small_metadata = st.dictionaries(
        st.text(alphabet=string.ascii_letters, min_size=1, max_size=20),
        printable_hostile.map(lambda s: s[:500]),
        max_size=3,
    )
    an_intent = st.one_of(known_intent, valid_ids)
    a_customer = st.one_of(known_customer, printable_hostile)

    def on_intent(**optional: Any) -> Any:
        """An operation on one payment intent: its id, and the optional fields given."""
        return st.fixed_dictionaries({"paymentIntentId": an_intent}, optional=optional)

    def of_customer(**optional: Any) -> Any:
        return st.fixed_dictionaries({"customerId": a_customer}, optional=optional)

    by_operation = {
        "create-payment-intent": st.fixed_dictionaries(
            {
                "customerId": a_customer,
                "amount": st.integers(100, 99_999_999),
                "currency": st.sampled_from(["usd", "eur", "gbp", "USD"]),
            },
            optional={
                "description": printable_hostile,
                "metadata": small_metadata,
                "captureMethod": st.sampled_from(["automatic", "manual"]),
                "confirm": st.just(False),
            },
        ),
        "get-payment-intent": on_intent(),
        "get-ztracking-payment-intent": on_intent(),
        "create-refund": on_intent(
            amount=st.integers(1, 500), reason=st.sampled_from(["duplicate", "fraudulent"]), metadata=small_metadata
        ),
        "get-refund": st.fixed_dictionaries({"refundId": valid_ids}),
        "process-stripe-webhook": st.fixed_dictionaries({"payload": printable_hostile, "signature": printable_hostile}),
        "create-payment-method": st.fixed_dictionaries(
            {"customerId": a_customer, "stripePaymentMethodId": st.from_regex(r"\Apm_[A-Za-z0-9]{1,24}\Z")},
            optional={"setAsDefault": st.booleans()},
        ),
        "list-payment-methods": of_customer(limit=st.integers(1, 100)),
        "delete-payment-method": st.fixed_dictionaries({"paymentMethodId": valid_ids}),
        "confirm-payment-intent": on_intent(paymentMethodId=valid_ids),
        "capture-payment-intent": on_intent(amountToCapture=st.integers(1, 99_999_999)),
        "cancel-payment-intent": on_intent(cancellationReason=st.sampled_from(["duplicate", "abandoned"])),
        "get-payment-intent-status": on_intent(),
        "list-payment-intents": of_customer(
            limit=st.integers(1, 100), status=st.sampled_from(["succeeded", "canceled"]), orderId=printable_hostile
        ),
        "list-refunds": on_intent(),
        "retry-payment-attempt": st.fixed_dictionaries({"attemptId": st.from_regex(r"\Avyat_[A-Za-z0-9]{1,30}\Z")}),
        "payment-status-update": on_intent(status=printable_hostile, orderId=printable_hostile),
    }
    return by_operation[operation]
