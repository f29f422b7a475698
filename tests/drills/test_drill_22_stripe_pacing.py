"""Drill 19 (issue 24, point 9): Stripe's rate limit is a pace, not an error.

Stripe refuses more than 25 calls a second per account in test mode (100 live) with a 429. Under DRILLS_FULL=1 the
drill offers 300 creates at 100/s to a stack of its own whose Stripe is a localstripe that refuses above 25/s, as
Stripe does, and counts what it refused; the service runs with STRIPE_RATE_LIMIT unset: the test key's default,
25/s. The fast run offers 30 at 30/s against a stand-in refusing above 5/s (STRIPE_RATE_LIMIT=5): a rate even a
busy shared machine outruns, so that without the pace it would meet 429s. Every caller's first answer is the
payment (201), each paid once at Stripe, no 429 reaches a caller and few reach Stripe: the burst waited its turn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import stripe

from tests.conftest import RUN
from tests.drills.conftest import API_KEY, EVIDENCE, FULL, Api, drill_config, dump_tables, local_broker, size
from tests.drills.helpers import customer, remember_secrets, vault
from tests.drills.report import report
from tests.drills.stack import Stack
from tests.support import services
from tests.support.stripe_objects import intents_of_customers

pytestmark = pytest.mark.integration

STRIPE_LIMIT = size(5, 25)  # what the stand-in enforces (full: Stripe's test mode)
SERVICE_LIMIT = "" if FULL else "5"  # the service's STRIPE_RATE_LIMIT ("": the key's mode decides, 25/s in test mode)
SERVICE_KEY = f"sk_test_drill{RUN}pacing"  # the service's Stripe account (its default pace follows: test mode)
PROBE_KEY = "sk_test_drill19probe"  # the drill's own look-ups: another account, with a budget of its own
CREATES = size(30, 300)
OFFERED_PER_S = size(30, 100)
CUSTOMERS = 10


@dataclass
class PacingStack:
    stack: Stack
    stripe_base: str
    probe: stripe.StripeClient


def stand_in_counts(base: str, afresh: bool = False) -> dict[str, int]:
    """What the stand-in's rate limit admitted and refused (`afresh`: from zero on)."""
    return requests.request("DELETE" if afresh else "GET", f"{base}/_config/rate_limit", timeout=5).json()


@pytest.fixture(scope="module")
def paced(drill_log_dir: Path, sentry) -> Iterator[PacingStack]:
    """A stack of its own (database, vhost, worker, API) whose Stripe refuses above 25 calls/s per account."""
    EVIDENCE.secrets.add(SERVICE_KEY)
    db_name = f"vyp_drill19_{RUN}"
    services.create_mariadb_database(db_name)
    vhost = services.create_rabbit_vhost(f"vyp_drill19_{RUN}")
    port = services.free_port()
    log = drill_log_dir / "localstripe-drill19.log"
    try:
        with services.localstripe(port, log, "--rate-limit", str(STRIPE_LIMIT)) as base:
            config = drill_config(
                "drill19",
                drill_log_dir,
                sentry,
                db_name=db_name,
                broker_url=local_broker(vhost),
                stripe_api_base=base,
                stripe_key=SERVICE_KEY,
                api_keys=(API_KEY,),
                stripe_rate_limit=SERVICE_LIMIT,
                stripe_endpoint_rate_limit="25",  # Stripe's default, as in production
            )
            stack = Stack(config)
            try:
                # The service's own level, not the drills' most verbose: its pace, not its logging, is measured.
                stack.start_worker(concurrency=60, LOG_STREAM_LEVEL="ProdStandard")
                stack.start_api(LOG_STREAM_LEVEL="ProdStandard")
                stack.wait_ready()
                yield PacingStack(stack, base, stripe.StripeClient(PROBE_KEY, base_addresses={"api": base}))
            finally:
                stack.close()
    finally:
        services.delete_rabbit_vhost(vhost)
        # Drill 11 scans what this stack wrote: its tables are kept as a dump, since the database goes now.
        dump = drill_log_dir / f"tables-drill22-{RUN}.txt"
        dump.write_text(dump_tables({**services.MARIADB, "database": db_name}))
        EVIDENCE.dumps.append(dump)
        services.drop_mariadb_database(db_name)


def test_the_stand_in_refuses_a_burst_above_its_limit_and_counts_it(paced):
    """The positive control of the drill's count: a burst straight at the stand-in, unpaced, meets its 429s."""
    before = stand_in_counts(paced.stripe_base)
    key = f"sk_test_drill19burst{uuid.uuid4().hex[:8]}"
    calls = 10 * STRIPE_LIMIT

    def call(_: int) -> requests.Response:
        return requests.get(f"{paced.stripe_base}/v1/customers", auth=(key, ""), timeout=30)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(call, range(calls)))
    refused = stand_in_counts(paced.stripe_base)["refused"] - before["refused"]
    report("19", f"{calls} calls at once straight at a stand-in limited to {STRIPE_LIMIT}/s", refused=refused)
    statuses = [a.status_code for a in answers]
    assert refused >= 1 and statuses.count(429) == refused
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {"rate_limit"}
    assert statuses.count(200) >= STRIPE_LIMIT  # the bucket's worth went through


def test_a_burst_of_creates_above_stripes_limit_waits_its_turn_and_every_caller_is_paid_once(paced):
    api = Api(paced.stack.api_url)
    customers = [customer("pace") for _ in range(CUSTOMERS)]
    for customer_id in customers:
        vault(api, paced.probe, customer_id)
    before = stand_in_counts(paced.stripe_base, afresh=True)
    started = time.monotonic()

    def create(i: int) -> requests.Response:
        time.sleep(max(0.0, started + i / OFFERED_PER_S - time.monotonic()))  # open loop: arrivals at the rate
        with Api(paced.stack.api_url) as caller:
            return caller.post(
                "/payment-intents",
                json={"customerId": customers[i % CUSTOMERS], "amount": 1000 + i, "currency": "usd", "confirm": True},
                headers={"Idempotency-Key": f"pace-{uuid.uuid4()}"},
            )

    with ThreadPoolExecutor(CREATES) as pool:
        answers = list(pool.map(create, range(CREATES)))
    took = time.monotonic() - started
    for answer in answers:
        remember_secrets(answer)
    after = stand_in_counts(paced.stripe_base)
    statuses = [a.status_code for a in answers]
    ours = {a.json()["id"] for a in answers if a.status_code == 201}
    at_stripe = intents_of_customers(paced.probe, customers)
    per_intent: dict[str, int] = {}
    for intent in at_stripe:
        vy_id = intent["metadata"]["vy_payment_intent_id"]
        per_intent[vy_id] = per_intent.get(vy_id, 0) + 1
    succeeded = sum(1 for i in at_stripe if i["status"] == "succeeded")
    refused = after["refused"] - before["refused"]
    admitted = after["admitted"] - before["admitted"]
    requeued = paced.stack.log_text().count("waits in the queue")
    report(
        "19",
        f"{CREATES} creates offered at {OFFERED_PER_S}/s, Stripe refusing above {STRIPE_LIMIT}/s, "
        f"STRIPE_RATE_LIMIT={SERVICE_LIMIT or '(the key default)'}",
        first_answers_201=statuses.count(201),
        answers_429=statuses.count(429),
        other_answers=len(statuses) - statuses.count(201) - statuses.count(429),
        intents_at_stripe=len(at_stripe),
        succeeded_at_stripe=succeeded,
        stripe_calls=admitted,
        stripe_429=refused,
        stripe_peak_per_s=after["peakPerSecond"],  # the burst reached Stripe's limit (a busy machine may not)
        requeued_for_the_budget=requeued,
        seconds=round(took, 1),
    )
    assert statuses == [201] * CREATES, [a.text for a in answers if a.status_code != 201][:3]
    assert all(a.json()["status"] == "succeeded" for a in answers)
    assert len(ours) == CREATES and set(per_intent) == ours  # every answer is its own intent at Stripe ...
    assert set(per_intent.values()) == {1} and succeeded == CREATES  # ... paid, once
    assert refused <= max(2, CREATES // 50)  # few 429s ever reach Stripe: the service kept its pace
