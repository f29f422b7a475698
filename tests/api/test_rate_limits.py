"""Per-caller rate limits under a burst, counted in Redis across gunicorn's workers; webhooks by source."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.conftest import Client, running_api
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


def test_a_burst_past_a_callers_limit_is_429_rate_limited_and_other_callers_and_health_are_not(worker):
    keys = (f"burst-{uuid.uuid4().hex[:8]}", f"calm-{uuid.uuid4().hex[:8]}")
    env = {
        "API_KEYS": f"burst:{keys[0]},calm:{keys[1]}",
        "RATE_LIMIT_SERVER": "25/minute",
        "RATE_LIMIT_WEBHOOKS": "",
        "KAFKA_GROUP": f"vyp-limits-{uuid.uuid4().hex[:8]}",  # its own counters (the key prefix), whatever ran before
    }
    with running_api("api-rate-limits.log", **env) as base:
        burst = Client(base, key=keys[0])
        # A read refused before anything is queued: the burst measures the limiter, not the worker.
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: burst.get("/payment-methods"), range(60)))
        statuses = sorted(a.status_code for a in answers)
        # Counted once across both gunicorn workers (the counts live in Redis): exactly the limit got through.
        assert statuses.count(400) == 25 and statuses.count(429) == 35, statuses
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) > 0
        assert limited.headers["RateLimit-Limit"] == "25" and limited.headers["RateLimit-Remaining"] == "0"
        assert int(limited.headers["RateLimit-Reset"]) > 0
        allowed = next(a for a in answers if a.status_code == 400)
        assert allowed.headers["RateLimit-Limit"] == "25"
        calm = Client(base, key=keys[1]).get("/payment-methods")
        assert calm.status_code == 400 and calm.headers["RateLimit-Remaining"] == "24"  # its own budget
        assert all(Client(base, key=None).get(p).status_code == 200 for p in ("/healthz", "/openapi.json", "/metrics"))


def test_webhooks_have_their_own_limit_per_source_and_forged_ones_do_not_use_it(worker):
    from tests.conftest import WEBHOOK_SECRET

    env = {
        "RATE_LIMIT_SERVER": "",
        "RATE_LIMIT_WEBHOOKS": "4/minute",
        "KAFKA_GROUP": f"vyp-limits-{uuid.uuid4().hex[:8]}",
    }
    with running_api("api-webhook-limits.log", **env) as base:
        anonymous = Client(base, key=None)

        def event() -> str:
            return json.dumps(
                {"id": f"evt_{uuid.uuid4().hex}", "type": "customer.created", "created": 1, "data": {"object": {}}}
            )

        forged = [
            anonymous.post("/webhooks/stripe", data=event(), headers={"Stripe-Signature": "t=1,v1=00"})
            for _ in range(8)
        ]
        assert [a.status_code for a in forged] == [400] * 8  # refused at once, and not counted
        signed = []
        for _ in range(5):
            payload = event()
            signed.append(
                anonymous.post(
                    "/webhooks/stripe", data=payload, headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET)}
                )
            )
        assert [a.status_code for a in signed] == [200, 200, 200, 200, 429]
        assert signed[-1].json()["error"]["code"] == "rate_limited" and signed[-1].headers["RateLimit-Limit"] == "4"
        # No per-caller limit was set: a caller's requests are not held back by the webhooks'.
        assert Client(base).get("/payment-methods").status_code == 400


def test_the_socket_door_counts_each_callers_requests_against_its_limit_too():
    import dataclasses

    from settings import get_settings
    from socket_door.server import Caller, SocketLimits

    limits = SocketLimits(
        dataclasses.replace(get_settings(), rate_limit_customer="3/minute", rate_limit_storage="memory://")
    )
    assert [limits.allow(Caller("c-one", customer="a")) for _ in range(4)] == [True, True, True, False]
    assert limits.allow(Caller("c-two", customer="b"))  # each caller its own budget
