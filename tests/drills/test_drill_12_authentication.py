"""Drill 12: missing, wrong and near-miss API keys are refused (401) on every protected route, and change nothing."""

from __future__ import annotations

import pytest
import requests

from registry import OPERATIONS
from tests.drills.conftest import API_KEY, OTHER_API_KEY
from tests.drills.helpers import table_counts
from tests.drills.report import report

pytestmark = pytest.mark.integration


def protected_routes() -> list[tuple[str, str, dict]]:
    """(method, path, body) of every operation route that needs a key: every route but Stripe's webhook."""
    samples = {
        "payment_intent_id": "vypi_01drill",
        "refund_id": "vyre_01drill",
        "payment_method_id": "vypm_01drill",
    }
    bodies = {
        "create-payment-intent": {"customerId": "auth-drill", "amount": 1000, "currency": "usd"},
        "create-refund": {"paymentIntentId": "vypi_01drill"},
        "create-payment-method": {"customerId": "auth-drill", "stripePaymentMethodId": "pm_drill"},
    }
    routes = []
    for op in OPERATIONS.values():
        if op.name == "process-stripe-webhook":
            continue
        path = op.path
        for name, value in samples.items():
            path = path.replace(f"<{name}>", value)
        if op.name == "list-payment-methods":
            path += "?customerId=auth-drill"
        routes.append((op.method, path, bodies.get(op.name, {})))
    return routes


def key_variants() -> list[tuple[str, dict[str, str]]]:
    """Authorization headers that must all be refused: none, empty, wrong, and keys one slip away from a real one."""
    key = API_KEY
    return [
        ("missing", {}),
        ("empty header", {"Authorization": ""}),
        ("scheme only", {"Authorization": "Bearer"}),
        ("scheme and space", {"Authorization": "Bearer "}),
        ("wrong key", {"Authorization": "Bearer wrong-key"}),
        ("last character dropped", {"Authorization": f"Bearer {key[:-1]}"}),
        ("one character added", {"Authorization": f"Bearer {key}x"}),
        ("last character changed", {"Authorization": f"Bearer {key[:-1]}{'a' if key[-1] != 'a' else 'b'}"}),
        ("first character changed", {"Authorization": f"Bearer X{key[1:]}"}),
        ("upper case", {"Authorization": f"Bearer {key.upper()}"}),
        ("prefix of the key", {"Authorization": f"Bearer {key[: len(key) // 2]}"}),
        ("two keys glued", {"Authorization": f"Bearer {key}{OTHER_API_KEY}"}),
        ("two keys comma-separated", {"Authorization": f"Bearer {key},{OTHER_API_KEY}"}),
        ("key list as configured", {"Authorization": f"Bearer {API_KEY},{OTHER_API_KEY}"}),
        ("Basic scheme", {"Authorization": f"Basic {key}"}),
        ("Token scheme", {"Authorization": f"Token {key}"}),
        ("no scheme", {"Authorization": key}),
        ("scheme glued", {"Authorization": f"Bearer{key}"}),
        ("key in another header", {"X-Api-Key": key}),
        ("key in the query", {"_query": f"api_key={key}"}),
        ("NUL-padded", {"Authorization": f"Bearer {key}\x00"}),
        ("Latin-1 look-alike", {"Authorization": f"Bearer {key[:-1]}\u00e9".encode("latin-1")}),
    ]


MALFORMED = {"NUL-padded"}


def send(base: str, method: str, path: str, body: dict, headers: dict) -> requests.Response:
    headers = dict(headers)
    query = headers.pop("_query", None)
    if query:
        path += ("&" if "?" in path else "?") + query
    kwargs = {"json": body} if method in ("POST",) else {}
    return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)


def test_missing_wrong_and_near_miss_keys_are_refused_401_on_every_protected_route_and_change_nothing(stack):
    before = table_counts(stack.sql)
    routes, variants = protected_routes(), key_variants()
    refused, refused_by_http_server, other = 0, 0, []
    for method, path, body in routes:
        for label, headers in variants:
            try:
                response = send(stack.api_url, method, path, body, headers)
            except (requests.exceptions.InvalidHeader, ValueError):
                # A header the HTTP client itself refuses to send never reaches the service.
                refused += 1
                continue
            ok = (
                response.status_code == 401
                and response.headers.get("WWW-Authenticate") == "Bearer"
                and response.json()["error"]["code"] == "unauthorized"
                and API_KEY not in response.text
            )
            if ok:
                refused += 1
            elif label in MALFORMED and response.status_code == 400 and "Invalid HTTP Header" in response.text:
                refused_by_http_server += 1  # gunicorn refuses the malformed header before the app sees it
            else:
                other.append((label, method, path, response.status_code, response.text[:200]))
    after = table_counts(stack.sql)
    # Positive control: the right keys are let in on the same routes (a read, then both keys).
    controls = [
        requests.get(
            f"{stack.api_url}/payment-intents/vypi_01drill", headers={"Authorization": f"Bearer {k}"}, timeout=30
        )
        for k in (API_KEY, OTHER_API_KEY)
    ]
    report(
        "12",
        "missing, wrong and near-miss API keys on every protected route",
        routes=len(routes),
        key_variants=len(variants),
        requests_sent=len(routes) * len(variants),
        refused_401=refused,
        refused_400_malformed_header=refused_by_http_server,
        let_in=len(other),
        rows_changed=sum(after.values()) - sum(before.values()),
    )
    assert other == []
    assert after == before
    assert [c.status_code for c in controls] == [404, 404]
