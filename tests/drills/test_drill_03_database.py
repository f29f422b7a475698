"""Drill 3: the database goes away — a connection killed mid-transaction, and a MariaDB restart under load.

A private MariaDB (tests/support/private_servers.py) serves a worker and an API of their own. A blocker holds the
history table's insert lock, so the refund and the create stop inside their transaction with the first rows
written; their connections are killed there. Then the server is restarted while requests run. Every request ends
retried to success or answered `service_unavailable` (the caller then retries with the same key); nothing is ever
half-written: no intent without its history row, no refund without its amount on the intent.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pymysql
import pytest

from tests.conftest import RUN
from tests.drills.conftest import EVIDENCE, FULL, Api, drill_config, dump_tables, local_broker, size
from tests.drills.helpers import customer, invariant_violations, paid_intent, remember_secrets, retry_until_final, vault
from tests.drills.report import report
from tests.drills.stack import Stack
from tests.support import services
from tests.support.private_servers import PrivateMariaDB
from tests.support.stripe_objects import intents_of_customers, refunds_of

pytestmark = pytest.mark.integration

DB = "payments_drill3"


@pytest.fixture(scope="module")
def db_stack(drill_log_dir, proxy, sentry) -> Iterator[tuple[Stack, PrivateMariaDB]]:
    vhost = services.create_rabbit_vhost(f"vyp_drill3_{RUN}")
    mariadb = PrivateMariaDB(drill_log_dir, f"d3-{RUN}")
    stack = None
    try:
        mariadb.start()
        mariadb.create_database(DB)
        config = drill_config(
            "drill3",
            drill_log_dir,
            sentry,
            db_port=mariadb.port,
            db_name=DB,
            broker_url=local_broker(vhost),
            stripe_api_base=proxy.url,
            task_max_retries=4,
            extra={"DB_POOL_SIZE": "40"},
        )
        stack = Stack(config)
        stack.start_worker(concurrency=30)
        stack.start_api()
        stack.wait_ready()
        yield stack, mariadb
    finally:
        if stack is not None:
            stack.close()
        if mariadb.running:
            dump = drill_log_dir / f"tables-drill3-{RUN}.txt"
            dump.write_text(dump_tables(mariadb.connect_params(DB)))
            EVIDENCE.dumps.append(dump)
        mariadb.close()
        services.delete_rabbit_vhost(vhost)


def blocked_inserts(mariadb: PrivateMariaDB) -> list[int]:
    """Connections waiting to insert a history row (blocked by our lock)."""
    conn = pymysql.connect(**mariadb.connect_params())
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM information_schema.processlist "
                "WHERE info LIKE 'INSERT INTO `ztracking_payment_intent`%%' AND db = %s",
                (DB,),
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def test_a_connection_killed_mid_transaction_rolls_back_whole_and_the_task_retries_to_one_result(db_stack, stripe_api):
    stack, mariadb = db_stack
    api = Api(stack.api_url)
    intent = paid_intent(api, stripe_api, "d3kill", amount=8000)
    new_customer = customer("d3kill")
    vault(api, stripe_api, new_customer)
    refund_key, create_key = f"d3-refund-{uuid.uuid4()}", f"d3-create-{uuid.uuid4()}"

    blocker = pymysql.connect(**mariadb.connect_params(DB), autocommit=False)
    answers: dict[str, object] = {}
    with blocker.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT id FROM ztracking_payment_intent FOR UPDATE")  # every record and the gap after them

    def refund() -> None:
        answers["refund"] = api.post(
            "/refunds", json={"paymentIntentId": intent["id"], "amount": 3000}, headers={"Idempotency-Key": refund_key}
        )

    def create() -> None:
        answers["create"] = api.post(
            "/payment-intents",
            json={"customerId": new_customer, "amount": 2500, "currency": "usd", "confirm": True},
            headers={"Idempotency-Key": create_key},
        )

    threads = [threading.Thread(target=refund), threading.Thread(target=create)]
    for thread in threads:
        thread.start()
    try:
        services.wait_until(lambda: len(blocked_inserts(mariadb)) == 2, 30, "both transactions at their history insert")
        victims = blocked_inserts(mariadb)
        with blocker.cursor() as cur:
            for victim in victims:
                cur.execute(f"KILL CONNECTION {int(victim)}")
        # Right after the kill: nothing of either transaction is left.
        probe = pymysql.connect(**mariadb.connect_params(DB))
        with probe.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM refund WHERE payment_intent_id = %s", (intent["id"],))
            refunds_after_kill = cur.fetchone()[0]
            cur.execute("SELECT amount_refunded, ztracking_version FROM payment_intent WHERE id = %s", (intent["id"],))
            intent_after_kill = cur.fetchone()
            cur.execute("SELECT COUNT(*) FROM payment_intent WHERE customer_id = %s", (new_customer,))
            intents_after_kill = cur.fetchone()[0]
        probe.close()
    finally:
        blocker.rollback()
        blocker.close()
    for thread in threads:
        thread.join(120)
    finals = {
        "refund": retry_until_final(
            lambda: api.post(
                "/refunds",
                json={"paymentIntentId": intent["id"], "amount": 3000},
                headers={"Idempotency-Key": refund_key},
            )
        ),
        "create": retry_until_final(
            lambda: api.post(
                "/payment-intents",
                json={"customerId": new_customer, "amount": 2500, "currency": "usd", "confirm": True},
                headers={"Idempotency-Key": create_key},
            )
        ),
    }
    remember_secrets(finals["create"])
    refunds_at_stripe = refunds_of(stripe_api, intent["stripePaymentIntentId"])
    intents_at_stripe = intents_of_customers(stripe_api, [new_customer])
    stored = api.get(f"/payment-intents/{intent['id']}").json()
    report(
        "3a",
        "KILL of 2 connections blocked inside their transaction (refund and create, at the history insert)",
        connections_killed=len(victims),
        first_answers=f"refund={answers['refund'].status_code},create={answers['create'].status_code}",
        final_answers=f"refund={finals['refund'].status_code},create={finals['create'].status_code}",
        rows_left_by_killed_txn=refunds_after_kill + intents_after_kill,
        refunds_at_stripe=len(refunds_at_stripe),
        intents_at_stripe=len(intents_at_stripe),
        amount_refunded=stored["amountRefunded"],
        history_rows=len(api.get(f"/payment-intents/{intent['id']}/history").json()),
    )
    assert len(victims) == 2
    assert refunds_after_kill == 0 and intent_after_kill == (0, 1) and intents_after_kill == 0
    assert {answers["refund"].status_code, answers["create"].status_code} <= {201, 503}
    assert finals["refund"].status_code == 201 and finals["create"].status_code == 201
    assert len(refunds_at_stripe) == 1 and stored["amountRefunded"] == 3000
    assert len(intents_at_stripe) == 1
    assert intents_at_stripe[0]["metadata"]["vy_payment_intent_id"] == finals["create"].json()["id"]
    assert invariant_violations(stack.sql) == {}


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(signal.SIGTERM, id="graceful-restart"),
        pytest.param(
            signal.SIGKILL,
            id="crash-restart",
            marks=[] if FULL else pytest.mark.skip(reason="full run only (make drills)"),
        ),
    ],
)
def test_a_mariadb_restart_under_load_ends_every_request_once_and_half_writes_nothing(db_stack, stripe_api, proxy, how):
    stack, mariadb = db_stack
    api = Api(stack.api_url)
    creates, refunds = size(10, 30), size(10, 30)
    paid = [paid_intent(api, stripe_api, "d3restart", amount=20_000) for _ in range(max(1, refunds // 10))]
    buyers = [customer("d3restart") for _ in range(creates)]
    for buyer in buyers:
        vault(api, stripe_api, buyer)
    requests_to_send = [
        (
            "/payment-intents",
            {"customerId": b, "amount": 1000 + i, "currency": "usd", "confirm": True},
            f"d3c-{uuid.uuid4()}",
        )
        for i, b in enumerate(buyers)
    ] + [
        ("/refunds", {"paymentIntentId": paid[i % len(paid)]["id"], "amount": 700}, f"d3r-{uuid.uuid4()}")
        for i in range(refunds)
    ]

    def send(item: tuple) -> object:
        path, body, key = item
        return api.post(path, json=body, headers={"Idempotency-Key": key})

    seen_before = len(proxy.seen)

    paid_stripe_ids = {p["stripePaymentIntentId"] for p in paid}

    def posts_at_stripe() -> list:
        """This test's creates and refunds as Stripe received them (a replay under the same key included)."""
        return [
            s
            for s in proxy.seen[seen_before:]
            if s.method == "POST"
            and (
                (s.path == "/v1/payment_intents" and s.form.get("metadata[vy_customer_id]", [""])[0] in set(buyers))
                or (s.path == "/v1/refunds" and s.form.get("payment_intent", [""])[0] in paid_stripe_ids)
            )
        ]

    proxy.delay_s["/v1/"] = 0.4  # Stripe takes its time: the restart falls while tasks are mid-flight
    try:
        with ThreadPoolExecutor(len(requests_to_send)) as pool:
            futures = [pool.submit(send, item) for item in requests_to_send]
            # Several requests inside their Stripe call when MariaDB goes: a quarter at the fast size (5 of 20); the
            # full size's 60 never have 15 there at once (refunds of one intent queue on its row lock), so at most 5.
            in_flight = min(len(requests_to_send) // 4, 5)
            services.wait_until(
                lambda: sum(s.status is None for s in posts_at_stripe()) >= in_flight,
                30,
                f"{in_flight} requests waiting on Stripe",
                0.01,
            )
            down_s = mariadb.restart(how, down_for_s=3.0)
            first = [f.result() for f in futures]
    finally:
        proxy.delay_s.clear()
    finals = [
        a if a.status_code == 201 else retry_until_final(lambda item=item: send(item), attempts=120)
        for a, item in zip(first, requests_to_send, strict=True)
    ]
    for final in finals:
        remember_secrets(final)
    stack.wait_ready()
    created_ids = [
        f.json().get("id") for f, item in zip(finals, requests_to_send, strict=True) if item[0] == "/payment-intents"
    ]
    at_stripe = intents_of_customers(stripe_api, buyers)
    refunded_at_stripe = sum(r["amount"] for p in paid for r in refunds_of(stripe_api, p["stripePaymentIntentId"]))
    refunded_in_db = sum(api.get(f"/payment-intents/{p['id']}").json()["amountRefunded"] for p in paid)
    codes = [a.status_code for a in first]
    violations = invariant_violations(stack.sql)
    report(
        "3b",
        f"MariaDB {signal.Signals(how).name} + restart with {len(requests_to_send)} requests in flight",
        requests_sent=len(requests_to_send),
        stripe_posts=len(posts_at_stripe()),
        db_down_s=round(down_s, 1),
        first_201=codes.count(201),
        first_503=codes.count(503),
        first_other=len(codes) - codes.count(201) - codes.count(503),
        final_201=sum(f.status_code == 201 for f in finals),
        intents_at_stripe=len(at_stripe),
        intent_rows=stack.sql(
            f"SELECT COUNT(*) FROM payment_intent WHERE customer_id IN ({','.join(['%s'] * len(buyers))})",
            tuple(buyers),
        )[0][0],
        refunded_at_stripe=refunded_at_stripe,
        refunded_in_db=refunded_in_db,
        invariant_violations=len(violations),
    )
    # The restart reached requests in flight: a task that lost its write called Stripe again (a replay under the
    # same key), or a caller's first answer was not the 201 of an undisturbed run.
    stripe_posts = posts_at_stripe()
    assert len(stripe_posts) > len(requests_to_send) or codes != [201] * len(codes), (len(stripe_posts), codes)
    assert set(codes) <= {201, 503, 504}, codes
    assert [f.status_code for f in finals] == [201] * len(finals), [
        f.text[:200] for f in finals if f.status_code != 201
    ]
    assert len(at_stripe) == len(buyers) == len(set(created_ids))
    assert {pi["metadata"]["vy_payment_intent_id"] for pi in at_stripe} == set(created_ids)
    assert refunded_at_stripe == refunded_in_db == 700 * refunds
    assert violations == {}
