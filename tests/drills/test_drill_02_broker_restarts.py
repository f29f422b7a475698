"""Drill 2: the Celery broker (RabbitMQ) and the result store (Redis) restart while late-acked tasks run.

A private RabbitMQ node and a private Redis (append-only) serve a worker and an API of their own; Stripe is slowed
so that tasks are mid-flight when a server goes. Tasks whose ack was lost are redelivered and must be absorbed
(one Stripe object, one row per request); nothing accepted is lost (every request ends in a stored result, which
the caller's retry with the same key reads back).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import RUN
from tests.drills.conftest import API_KEY, EVIDENCE, Api, drill_config, dump_tables, size
from tests.drills.helpers import customer, invariant_violations, remember_secrets, retry_until_final
from tests.drills.report import report
from tests.drills.stack import Stack
from tests.support import services
from tests.support.private_servers import PrivateRabbitMQ, PrivateRedis
from tests.support.stripe_objects import intents_of_customers
from tests.support.stripe_proxy import Fault

pytestmark = pytest.mark.integration

DB = f"vyp_drill2_{RUN}"
STRIPE_DELAY_S = 2.0


@pytest.fixture(scope="module")
def broker_stack(drill_log_dir, proxy, sentry) -> Iterator[tuple[Stack, PrivateRabbitMQ, PrivateRedis]]:
    rabbit = PrivateRabbitMQ(drill_log_dir, f"d2-{RUN}")
    redis = PrivateRedis(drill_log_dir, f"d2-{RUN}")
    services.create_mariadb_database(DB)
    stack = None
    try:
        with ThreadPoolExecutor(2) as pool:  # RabbitMQ takes a few seconds: start both at once
            list(pool.map(lambda server: server.start(), (rabbit, redis)))
        config = drill_config(
            "drill2",
            drill_log_dir,
            sentry,
            db_name=DB,
            broker_url=rabbit.url,
            result_backend=redis.url,
            stripe_api_base=proxy.url,
            task_max_retries=4,
            rest_timeout_ms=8000,  # a door that lost its result subscription answers 504 sooner
            stripe_timeout_s=30.0,  # a slow Stripe is slow, not lost: no unknown outcomes here
        )
        stack = Stack(config)
        stack.start_worker(concurrency=50)
        stack.start_api()
        stack.wait_ready()
        yield stack, rabbit, redis
    finally:
        if stack is not None:
            stack.close()
        rabbit.close()
        redis.close()
        dump = drill_log_dir / f"tables-drill2-{RUN}.txt"
        dump.write_text(dump_tables({**services.MARIADB, "database": DB}))
        EVIDENCE.dumps.append(dump)
        services.drop_mariadb_database(DB)


def key_states(stack: Stack, keys: list[str]) -> dict[str, int]:
    caller = hashlib.sha256(API_KEY.encode()).hexdigest()[:16]
    hashes = [hashlib.sha256(f"rest:{caller}:{k}".encode()).hexdigest() for k in keys]
    marks = ",".join(["%s"] * len(hashes))
    rows = stack.sql(
        f"SELECT state, COUNT(*) FROM idempotency_record WHERE key_hash IN ({marks}) GROUP BY state", tuple(hashes)
    )
    return {state: count for state, count in rows}


def run_restart_drill(name: str, stack: Stack, server, stripe_api, proxy, count: int, down_for_s: float) -> None:
    api = Api(stack.api_url)
    buyers = [customer(f"d2{name}") for _ in range(count)]
    keys = [f"d2-{name}-{uuid.uuid4()}" for _ in range(count)]
    bodies = [{"customerId": b, "amount": 1000 + i, "currency": "usd"} for i, b in enumerate(buyers)]

    def send(i: int):
        return api.post("/payment-intents", json=bodies[i], headers={"Idempotency-Key": keys[i]}, timeout=120)

    seen_before = len(proxy.seen)

    def creates_at_stripe() -> list:
        return [
            s
            for s in proxy.seen[seen_before:]
            if s.method == "POST"
            and s.path == "/v1/payment_intents"
            and s.form.get("metadata[vy_customer_id]", [""])[0] in set(buyers)
        ]

    proxy.delay_s["/v1/payment_intents"] = STRIPE_DELAY_S
    try:
        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(send, i) for i in range(count)]
            # The restart falls while tasks are running, waiting on Stripe, not yet acknowledged.
            services.wait_until(
                lambda: sum(s.status is None for s in creates_at_stripe()) >= count // 2,
                30,
                "half the creates waiting on Stripe",
                0.02,
            )
            in_flight = [s for s in creates_at_stripe() if s.status is None]
            losses_before = stack.log_text().count("reply channel lost")
            down_s = server.restart(down_for_s=down_for_s)
            # Stripe answered these while the server was down: their tasks' acks and results met the outage.
            answered_while_down = sum(s.status is not None for s in in_flight)
            first = [f.result() for f in futures]
    finally:
        proxy.delay_s.clear()
    finals = [
        a if a.status_code == 201 else retry_until_final(lambda i=i: send(i), attempts=120) for i, a in enumerate(first)
    ]
    for final in finals:
        remember_secrets(final)
    stack.wait_ready()
    time.sleep(2.0)  # redelivered duplicates finish
    at_stripe = intents_of_customers(stripe_api, buyers)
    rows = stack.sql(
        f"SELECT COUNT(*) FROM payment_intent WHERE customer_id IN ({','.join(['%s'] * count)})", tuple(buyers)
    )[0][0]
    stripe_ids = {pi["id"] for pi in at_stripe}
    ours = creates_at_stripe()
    replays = proxy.requests_for(lambda s: s.method == "GET" and s.path.split("/")[-1] in stripe_ids)
    states = key_states(stack, keys)
    codes = [a.status_code for a in first]
    violations = invariant_violations(stack.sql)
    report(
        "2",
        f"{server.name} restart (SIGTERM, {round(down_s, 1)} s unreachable) with {count} late-acked creates running",
        requests_sent=count,
        in_flight_at_restart=len(in_flight),
        answered_while_down=answered_while_down,
        first_201=codes.count(201),
        first_other=",".join(str(c) for c in sorted(set(codes) - {201})) or "-",
        final_201=sum(f.status_code == 201 for f in finals),
        stripe_create_calls=len(ours),
        stripe_create_keys=len({s.idempotency_key for s in ours}),
        duplicates_replayed=len(replays),
        intents_at_stripe=len(at_stripe),
        intent_rows=rows,
        keys_completed=states.get("completed", 0),
        invariant_violations=len(violations),
    )
    # The restart reached the tasks it was meant to: they were mid-call when it fell, and a redelivered task called
    # Stripe again (a replay under its key), the door lost its reply channel, or a first answer was not a 201.
    reply_channel_losses = stack.log_text().count("reply channel lost") - losses_before
    assert answered_while_down >= 1, len(in_flight)
    assert len(ours) > count or replays or reply_channel_losses or codes != [201] * count, (len(ours), codes)
    assert [f.status_code for f in finals] == [201] * count, [f.text[:200] for f in finals if f.status_code != 201]
    assert len({f.json()["id"] for f in finals}) == count
    assert len(at_stripe) == rows == count
    assert len({s.idempotency_key for s in ours}) == count  # a redelivery repeats its key, never makes a new one
    assert states == {"completed": count}
    assert violations == {}


def test_a_rabbitmq_restart_with_late_acked_tasks_running_loses_nothing_and_charges_nothing_twice(
    broker_stack, stripe_api, proxy
):
    stack, rabbit, _ = broker_stack
    run_restart_drill("rabbitmq", stack, rabbit, stripe_api, proxy, size(10, 40), down_for_s=1.0)


def test_a_redis_restart_with_results_being_written_loses_nothing_and_charges_nothing_twice(
    broker_stack, stripe_api, proxy
):
    stack, _, redis = broker_stack
    run_restart_drill("redis", stack, redis, stripe_api, proxy, size(10, 40), down_for_s=3.0)


def test_a_second_delivery_of_a_running_task_never_answers_an_error_for_a_payment_that_succeeds(
    broker_stack, stripe_api, proxy
):
    """What RabbitMQ does after a connection loss, played exactly: the same task (same id) delivered again while the
    first delivery still waits on Stripe (10 s, longer than the copy's retries last, shorter than the timeout).
    The copy waits for the first execution (the claim's execution lease) and answers its outcome, never its own."""
    stack = broker_stack[0]
    buyer = customer("d2dup")
    seen_before = len(proxy.seen)
    proxy.add_rule(
        lambda m, p, f: m == "POST" and p == "/v1/payment_intents" and f.get("metadata[vy_customer_id]") == [buyer],
        [Fault("slow", hold_s=10.0)],
    )
    task_id = str(uuid.uuid4())
    payload = {"customerId": buyer, "amount": 4100, "currency": "usd"}
    meta = {"idempotencyKey": f"drill:dup:{uuid.uuid4()}", "traceId": f"dup-{uuid.uuid4()}", "door": "drill"}
    try:
        first = stack.send("create-payment-intent", payload, meta, task_id=task_id)
        services.wait_until(  # the first delivery is inside its Stripe call
            lambda: any(
                s.path == "/v1/payment_intents" and s.form.get("metadata[vy_customer_id]") == [buyer]
                for s in proxy.seen[seen_before:]
            ),
            30,
            "the first delivery's Stripe call",
            0.02,
        )
        stack.send("create-payment-intent", payload, meta, task_id=task_id)
        answer = first.get(timeout=60)
        remember_secrets(answer.get("response", {}))
        services.wait_until(
            lambda: stack.sql("SELECT COUNT(*) FROM payment_intent WHERE customer_id = %s", (buyer,))[0][0] == 1,
            40,
            "the first delivery's intent",
        )
        time.sleep(1.0)
    finally:
        proxy.clear()
    final = stack.celery().AsyncResult(task_id).get(timeout=30)
    rows = stack.sql("SELECT COUNT(*) FROM payment_intent WHERE customer_id = %s", (buyer,))[0][0]
    at_stripe = intents_of_customers(stripe_api, [buyer])
    creates = [
        s
        for s in proxy.seen[seen_before:]
        if s.method == "POST"
        and s.path == "/v1/payment_intents"
        and s.form.get("metadata[vy_customer_id]", [""])[0] == buyer
    ]
    report(
        "2",
        "the same task delivered twice while the first delivery waits on Stripe (a redelivery after a lost ack)",
        first_answer=answer.get("error", {}).get("code", "ok"),
        last_stored_answer=final.get("error", {}).get("code", "ok"),
        stripe_create_calls=len(creates),
        intents_at_stripe=len(at_stripe),
        intent_rows=rows,
    )
    assert "response" in answer, answer
    assert answer["response"]["status"] == "requires_payment_method"
    # The copy's stored result is the first one's envelope (a replay fetches the client secret again).
    assert final == answer, final
    assert rows == 1
    assert [pi["id"] for pi in at_stripe] == [answer["response"]["stripePaymentIntentId"]]
    assert len(creates) == 1  # the copy waited for the first execution: it never called Stripe beside it
