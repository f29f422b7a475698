"""CELERY_QUEUE_TYPE=quorum on the machine's RabbitMQ: the Celery queues are declared as quorum queues, a task a worker
held unacknowledged (acks_late) when it was killed is delivered again, and the delivery limit bounds a poison task.

Each test has a vhost of its own: the run's vhost holds the same queues as classic ones, and RabbitMQ refuses to
declare an existing queue with another type.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from celeryconfig import declared_queues
from registry import QUEUES
from tests.conftest import LOG_DIR, RUN
from tests.support import services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def quorum_vhost(request: pytest.FixtureRequest) -> Iterator[str]:
    name = services.create_rabbit_vhost(f"vyp_test_{RUN}_{request.node.name[-20:]}")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        services.delete_rabbit_vhost(name)


def listed_queues(broker_url: str, column: str) -> dict[str, Any]:
    """Each queue of the broker URL's vhost → one column of `rabbitmqctl list_queues` (type, messages…)."""
    vhost = broker_url.rsplit("/", 1)[1]
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", column, "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {row["name"]: row[column] for row in json.loads(listed.stdout)}


def queue_types(broker_url: str) -> dict[str, str]:
    return listed_queues(broker_url, "type")


def test_the_setting_declares_every_celery_queue_as_a_quorum_queue_with_the_delivery_limit(quorum_vhost):
    quorum = declared_queues("quorum", 4)
    assert {q.name for q in quorum} == set(QUEUES)
    assert all(q.queue_arguments == {"x-queue-type": "quorum", "x-delivery-limit": 4} and q.durable for q in quorum)
    with Connection(quorum_vhost) as conn:
        for queue in quorum:
            queue(conn.default_channel).declare()
    assert queue_types(quorum_vhost) == dict.fromkeys(QUEUES, "quorum")
    # The positive control: the default declares classic queues, which the same listing tells apart.
    assert all(q.queue_arguments is None for q in declared_queues("classic", 4))


def test_a_real_worker_consumes_quorum_queues_and_answers(quorum_vhost):
    # Celery must see the quorum type (no global QoS) or the broker refuses its basic.qos and the worker never consumes.
    env = {"CELERY_BROKER_URL": quorum_vhost, "CELERY_QUEUE_TYPE": "quorum", "METRICS_PORT": "0"}
    proc = services.start_worker(env, LOG_DIR / "worker-quorum.log", "payments", f"quorum-{RUN}", concurrency=4)
    try:
        # Celery's own accumulate task: an answer through the quorum queue, with nothing of Stripe's in the way.
        answer = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tasks.app import app; print(app.send_task('celery.accumulate', args=[7], queue='payments')"
                ".get(timeout=60))",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert answer.stdout.strip() == "[7]"
        assert queue_types(quorum_vhost)["payments"] == "quorum"
        assert proc.poll() is None
    finally:
        services.stop(proc)


def _messages(broker_url: str, queue: str) -> int | None:
    return listed_queues(broker_url, "messages").get(queue)


# A consumer as a late-acking worker is: it takes the message, says so, and is killed before it acks.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from kombu import Connection
    from celeryconfig import declared_queues
    queue = [q for q in declared_queues("quorum", int(sys.argv[2])) if q.name == "payments"][0]
    with Connection(sys.argv[1]) as conn:
        with conn.Consumer(queue, callbacks=[lambda body, message: print("holding", flush=True)], prefetch_count=1):
            while True:
                conn.drain_events(timeout=60)
    """
)


def _hold_and_kill(broker_url: str, limit: int) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, broker_url, str(limit)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)


def test_a_task_held_by_a_killed_worker_is_delivered_again_and_a_poison_one_is_dropped_at_the_limit(quorum_vhost):
    limit = 2
    queue = next(q for q in declared_queues("quorum", limit) if q.name == "payments")
    with Connection(quorum_vhost) as conn:
        conn.Producer().publish(
            {"task": "held"}, exchange=queue.exchange, routing_key="payments", declare=[queue], delivery_mode=2
        )
    _hold_and_kill(quorum_vhost, limit)  # the first delivery, unacknowledged when its holder died
    # It survives the kill: the next consumer gets it again, marked redelivered and counted.
    with Connection(quorum_vhost) as conn:
        message = queue(conn.default_channel).get(no_ack=False)
        assert message is not None and message.payload == {"task": "held"} and message.delivery_info["redelivered"]
        assert message.headers.get("x-delivery-count") == 1
        message.requeue()
    _hold_and_kill(quorum_vhost, limit)
    # Three deliveries, over the limit of two returns: RabbitMQ dropped it rather than hand it to a third worker.
    services.wait_until(lambda: _messages(quorum_vhost, "payments") == 0, 30, "the poison task dropped")
    with Connection(quorum_vhost) as conn:
        assert queue(conn.default_channel).get(no_ack=False) is None


@pytest.fixture()
def silent_stripe() -> Iterator[tuple[int, list[socket.socket]]]:
    """A "Stripe" that accepts connections and never answers: a task calling it stays in flight."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        server.close()
        for conn in accepted:
            conn.close()


def test_a_task_a_real_worker_holds_when_killed_goes_back_to_the_quorum_queue(quorum_vhost, silent_stripe, mariadb):
    port, accepted = silent_stripe
    env = {
        "CELERY_BROKER_URL": quorum_vhost,
        "CELERY_QUEUE_TYPE": "quorum",
        "METRICS_PORT": "0",
        "STRIPE_API_BASE": f"http://127.0.0.1:{port}",
        "STRIPE_TIMEOUT_S": "120",
    }
    worker = services.start_worker(env, LOG_DIR / "worker-quorum-kill.log", "payment-methods", f"qkill-{RUN}", 4)
    try:
        # A vaulting whose first Stripe call (the customer's creation) never returns: the task is held, unacked.
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from tasks.operations import TASKS; TASKS['create-payment-method'].apply_async(args=["
                "{'customerId': 'cust-quorum-kill', 'stripePaymentMethodId': 'pm_card_visa'},"
                "{'idempotencyKey': None, 'traceId': 'quorum-kill', 'door': 'test'}], ignore_result=True)",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            check=True,
            timeout=60,
        )
        services.wait_until(lambda: accepted, 90, "the task calling Stripe")
        # Held by the worker, not acknowledged (RabbitMQ's queue counts lag a few seconds behind).
        services.wait_until(lambda: _counts(quorum_vhost, "payment-methods") == (0, 1), 60, "the task held unacked")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    # The worker died holding it: the quorum queue has it ready for the next worker.
    services.wait_until(lambda: _counts(quorum_vhost, "payment-methods") == (1, 0), 60, "the task back in the queue")


def _counts(broker_url: str, queue: str) -> tuple[int, int] | None:
    """(ready, unacknowledged) messages of a queue."""
    vhost = broker_url.rsplit("/", 1)[1]
    listed = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "list_queues",
            "-p",
            vhost,
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "--formatter",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {row["name"]: (row["messages_ready"], row["messages_unacknowledged"]) for row in json.loads(listed.stdout)}
    return rows.get(queue)
