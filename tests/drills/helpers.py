"""What the drills share: callers' steps over REST, and the invariants read back from the database and Stripe."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import requests
import stripe

from tests.drills.conftest import EVIDENCE, Api, make_card
from tests.support.kafka import Collector
from tests.support.stripe_objects import intents_of_customers

HOLDING = ("pending", "requires_action", "succeeded")


def customer(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def vault(api: Api, stripe_api: stripe.StripeClient, customer_id: str, number: str = "4242424242424242") -> dict:
    response = api.post(
        "/payment-methods",
        json={"customerId": customer_id, "setAsDefault": True, "stripePaymentMethodId": make_card(stripe_api, number)},
        headers={"Idempotency-Key": f"pm-{uuid.uuid4()}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def vaulted(stripe_api: stripe.StripeClient, prefix: str, number: str = "4242424242424242") -> str:
    """A customer with a default card, made through the service's own code in this process (fixture `service`)."""
    from tests.domain.helpers import call

    customer_id = customer(prefix)
    call(
        "create-payment-method",
        {"customerId": customer_id, "stripePaymentMethodId": make_card(stripe_api, number), "setAsDefault": True},
    )
    return customer_id


def paid_intent(api: Api, stripe_api: stripe.StripeClient, prefix: str, amount: int = 10_000) -> dict:
    customer_id = customer(prefix)
    vault(api, stripe_api, customer_id)
    response = api.post(
        "/payment-intents",
        json={"customerId": customer_id, "amount": amount, "currency": "usd", "confirm": True},
        headers={"Idempotency-Key": f"pi-{uuid.uuid4()}"},
    )
    assert response.status_code == 201, response.text
    intent = response.json()
    EVIDENCE.client_secrets.add(intent["clientSecret"])
    return intent


def remember_secrets(response: requests.Response | dict) -> None:
    """Client secrets answered to the caller: drill 11 checks they went nowhere else."""
    body = response if isinstance(response, dict) else _json(response)
    if isinstance(body, dict) and isinstance(body.get("clientSecret"), str):
        EVIDENCE.client_secrets.add(body["clientSecret"])


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def retry_until_final(
    send: Callable[[], requests.Response], attempts: int = 60, pause_s: float = 0.5
) -> requests.Response:
    """A caller's retries with the same Idempotency-Key: 409 (in use), 503 and 504 mean "ask again"."""
    response = send()
    for _ in range(attempts):
        if (
            response.status_code not in (409, 500, 502, 503, 504)
            or response.json().get("error", {}).get("code") == "invalid_state"
        ):
            return response
        time.sleep(pause_s)
        response = send()
    return response


def invariant_violations(sql: Callable[..., list[tuple]]) -> dict[str, list]:
    """The stored data against invariants 3, 4 and 7: every finding is a violation (empty lists: all held)."""
    found: dict[str, list] = {}
    found["history_not_one_row_per_change"] = sql(
        """SELECT p.id, p.ztracking_version, COUNT(z.id), COALESCE(MAX(z.ztracking_version), 0)
           FROM payment_intent p LEFT JOIN ztracking_payment_intent z ON z.payment_intent_id = p.id
           GROUP BY p.id, p.ztracking_version
           HAVING COUNT(z.id) <> p.ztracking_version OR COALESCE(MAX(z.ztracking_version), 0) <> p.ztracking_version"""
    )
    found["last_snapshot_differs_from_intent"] = sql(
        """SELECT p.id FROM payment_intent p JOIN ztracking_payment_intent z
             ON z.payment_intent_id = p.id AND z.ztracking_version = p.ztracking_version
           WHERE z.status <> p.status OR z.amount_refunded <> p.amount_refunded
              OR z.amount_received <> p.amount_received"""
    )
    found["history_without_intent"] = sql(
        """SELECT z.payment_intent_id FROM ztracking_payment_intent z
           LEFT JOIN payment_intent p ON p.id = z.payment_intent_id WHERE p.id IS NULL"""
    )
    found["refund_without_intent"] = sql(
        """SELECT r.id FROM refund r LEFT JOIN payment_intent p ON p.id = r.payment_intent_id WHERE p.id IS NULL"""
    )
    found["refunded_total_differs_from_refunds"] = sql(
        """SELECT p.id, p.amount_refunded, COALESCE(SUM(CASE WHEN r.status IN ('pending','requires_action','succeeded')
                  THEN r.amount ELSE 0 END), 0) AS held
           FROM payment_intent p LEFT JOIN refund r ON r.payment_intent_id = p.id
           GROUP BY p.id, p.amount_refunded HAVING held <> p.amount_refunded"""
    )
    found["refunded_more_than_received"] = sql(
        "SELECT id, amount_received, amount_refunded FROM payment_intent WHERE amount_refunded > amount_received"
    )
    found["completed_create_without_its_intent"] = sql(
        """SELECT i.resource_id FROM idempotency_record i LEFT JOIN payment_intent p ON p.id = i.resource_id
           WHERE i.operation = 'create-payment-intent' AND i.state = 'completed'
             AND i.outcome LIKE '{"response"%%' AND p.id IS NULL"""
    )
    return {name: rows for name, rows in found.items() if rows}


def table_counts(sql: Callable[..., list[tuple]]) -> dict[str, int]:
    tables = ("payment_intent", "ztracking_payment_intent", "refund", "payment_method", "webhook_event", "customer")
    return {table: sql(f"SELECT COUNT(*) FROM `{table}`")[0][0] for table in tables}


def one_intent_per_key(replies: dict[str, list[dict]]) -> tuple[set[str], int]:
    """Kafka answers per request key, all successes: the intents answered, and how many keys got more than one."""
    ids, differing = set(), 0
    for answers in replies.values():
        assert all("response" in a for a in answers), answers[0]
        differing += len({a["response"]["id"] for a in answers}) > 1
        ids.add(answers[0]["response"]["id"])
        remember_secrets(answers[0]["response"])
    return ids, differing


def intent_rows(sql: Callable[..., list[tuple]], customers: list[str]) -> int:
    """Payment intents stored for these customers."""
    marks = ",".join(["%s"] * len(customers))
    return sql(f"SELECT COUNT(*) FROM payment_intent WHERE customer_id IN ({marks})", tuple(customers))[0][0]


class KafkaCreates(NamedTuple):
    """What create requests sent over Kafka left: the replies per key, the intents answered, how many keys got
    more than one, the intents at Stripe and the rows stored."""

    replies: dict[str, list[dict]]
    ids: set[str]
    differing: int
    at_stripe: list[dict]
    rows: int


def kafka_creates(
    collector: Collector,
    response_topic: str,
    keys: list[str],
    customers: list[str],
    sql: Callable[..., list[tuple]],
    stripe_api: stripe.StripeClient,
) -> KafkaCreates:
    replies = {key: [r.json() for r in collector.received(key.encode(), response_topic)] for key in keys}
    ids, differing = one_intent_per_key(replies)
    at_stripe = intents_of_customers(stripe_api, customers)
    return KafkaCreates(replies, ids, differing, at_stripe, intent_rows(sql, customers))
