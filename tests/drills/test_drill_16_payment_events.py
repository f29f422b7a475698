"""Drill 16 (issue 13): payment events reach Kafka once per change, in order per intent, nothing lost.

Payments go through the drills' stack over REST; the publisher runs as the Procfile runs it (`python -m
event_publisher`), against the drills' Tansu behind its TCP proxy. A collector reads every event topic. An intent's
events are put back in the order the service wrote them by their `sequence` header (each type has its own topic),
and a repeat is recognised by its `eventId`.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from settings import get_settings
from tests.drills.conftest import QuietCollector, size
from tests.drills.helpers import customer, vault
from tests.drills.report import report
from tests.support import services
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration

TOPICS = list(get_settings().event_topics.values())


@pytest.fixture(scope="module")
def events(drill_kafka) -> Iterator[QuietCollector]:
    """Every event topic of the drills' Kafka, read from the start."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": drill_kafka.address})
    for future in admin.create_topics([NewTopic(t, 2) for t in TOPICS]).values():
        try:
            future.result(10)
        except Exception:  # already there (a publisher made it first)
            pass
    reader = QuietCollector(drill_kafka.address, TOPICS)
    yield reader
    reader.close()


@pytest.fixture()
def publisher(stack) -> Iterator[str]:
    """The stack's publisher, started for the drill and stopped after it."""
    stack.start_publisher()
    yield "publisher"
    stack.stop("publisher")


# An intent's events are keyed by its order where it has one (the PRD partitions by order): intent → Kafka key.
KEY_OF: dict[str, str] = {}


def key_of(intent_id: str) -> bytes:
    return KEY_OF.get(intent_id, intent_id).encode()


def pay(api, stripe_api, prefix: str, refund: bool = False) -> dict:
    buyer = customer(prefix)
    vault(api, stripe_api, buyer)
    intent = api.post(
        "/payment-intents",
        json={"customerId": buyer, "amount": 3000, "currency": "usd", "confirm": True, "orderId": f"o-{buyer}"},
        headers={"Idempotency-Key": f"pi-{uuid.uuid4()}"},
    ).json()
    KEY_OF[intent["id"]] = f"o-{buyer}"
    if refund:
        api.post(
            "/refunds",
            json={"paymentIntentId": intent["id"], "amount": 1000},
            headers={"Idempotency-Key": f"re-{uuid.uuid4()}"},
        )
    return intent


def outbox_of(stack, ids: list[str]) -> dict[str, list[tuple[int, str, str]]]:
    """What the service wrote: per intent, (sequence, eventId, type) in order."""
    marks = ",".join(["%s"] * len(ids))
    rows = stack.sql(
        f"SELECT payment_intent_id, id, event_id, type FROM payment_event WHERE payment_intent_id IN ({marks})"
        " ORDER BY id",
        tuple(ids),
    )
    written: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for intent_id, seq, event_id, event_type in rows:
        written[intent_id].append((seq, event_id, event_type))
    return written


def received(reader: QuietCollector, intent_id: str) -> list[tuple[int, str, dict]]:
    """What Kafka has for an intent: (sequence, eventId, payload), in sequence order, repeats included."""
    found = [
        (int(m.headers["sequence"]), m.headers["eventId"].decode(), {**json.loads(m.value), "_at": m.timestamp_ms})
        for m in reader.received(key_of(intent_id))
    ]
    return sorted(found, key=lambda item: item[0])


def wait_all(reader: QuietCollector, written: dict[str, list], timeout: float) -> None:
    def done() -> bool:
        return all({e for _, e, _ in received(reader, i)} >= {e for _, e, _ in w} for i, w in written.items())

    try:
        reader.wait(done, timeout, "every event written")
    except TimeoutError:
        missing = {
            i: [(seq, t) for seq, e, t in w if e not in {e2 for _, e2, _ in received(reader, i)}]
            for i, w in written.items()
        }
        print("MISSING", {i: m for i, m in missing.items() if m}, "KEYS", {i: KEY_OF.get(i) for i in missing})
        raise


def copies_of(reader: QuietCollector, intent_id: str) -> str:
    """Every copy Kafka has of an intent's events, as produced (CreateTime): what a failed order check shows."""
    copies = sorted(reader.received(key_of(intent_id)), key=lambda m: (m.timestamp_ms, int(m.headers["sequence"])))
    lines = [
        f"CreateTime {m.timestamp_ms} sequence {int(m.headers['sequence'])} {m.topic}[{m.partition}]@{m.offset}"
        for m in copies
    ]
    return f"{intent_id}:\n" + "\n".join(lines)


def order_kept(reader: QuietCollector, written: dict[str, list]) -> tuple[int, int]:
    """Checks, per intent, that Kafka has every written event, each repeat identical to the first, and the first
    copies in the order written; returns (events, repeats)."""
    total = repeats = 0
    for intent_id, wrote in written.items():
        firsts: dict[str, tuple[int, dict]] = {}
        for seq, event_id, payload in sorted(received(reader, intent_id), key=lambda item: item[2]["_at"]):
            body = {k: v for k, v in payload.items() if k != "_at"}
            if event_id in firsts:
                repeats += 1
                assert firsts[event_id] == (seq, body), event_id  # a repeat is the same event
                continue
            firsts[event_id] = (seq, body)
        # First copies, in the order they were produced (CreateTime), are the events in the order written.
        assert [event_id for _, event_id, _ in wrote] == list(firsts), copies_of(reader, intent_id)
        versions = [payload["version"] for _, payload in sorted(firsts.values(), key=lambda i: i[0])]
        assert versions == sorted(versions), (intent_id, versions)
        total += len(wrote)
    return total, repeats


def test_payments_made_while_kafka_is_unreachable_are_all_announced_afterwards_in_order(
    stack, api, stripe_api, drill_kafka, events, publisher
):
    count, outage_s = size(40, 200), size(6, 30)
    intents: list[dict] = []
    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(lambda _: pay(api, stripe_api, "d16out"), range(count // 2)))
        drill_kafka.proxy.cut()  # the broker goes away for outage_s while payments go on
        cut_at = time.monotonic()
        second = list(pool.map(lambda _: pay(api, stripe_api, "d16out"), range(count - count // 2)))
        time.sleep(max(0.0, outage_s - (time.monotonic() - cut_at)))
        backlog_during = stack.sql("SELECT COUNT(*) FROM payment_event WHERE published_at IS NULL")[0][0]
        drill_kafka.proxy.start()
    intents = first + second
    # A refused refund rolls back: it announces nothing.
    refused = api.post("/refunds", json={"paymentIntentId": intents[0]["id"], "amount": 999_999})
    assert refused.status_code == 422
    ids = [i["id"] for i in intents]
    written = outbox_of(stack, ids)
    wait_all(events, written, 120)
    total, repeats = order_kept(events, written)
    report(
        "16",
        f"{count} payments, Kafka unreachable {outage_s} s in the middle",
        events_written=total,
        waiting_during_outage=backlog_during,
        repeats=repeats,
        all_published=True,
    )
    told = {i: [t for _, _, t in written[i] if t != "payment-status-changed"] for i in ids}
    assert all(told[i] == ["created-payment-intent", "succeeded-payment"] for i in ids)
    assert all("payment-status-changed" in [t for _, _, t in written[i]] for i in ids)
    assert not any("refund" in t for w in written.values() for _, _, t in w)  # the refused refund wrote nothing
    assert backlog_during > 0  # they waited in the outbox while Kafka was away

    def unpublished() -> int:
        marks = ",".join(["%s"] * len(ids))
        query = f"SELECT COUNT(*) FROM payment_event WHERE published_at IS NULL AND payment_intent_id IN ({marks})"
        return stack.sql(query, tuple(ids))[0][0]

    # Marked once the broker's acknowledgement reached the publisher, which can trail the consumer's reading.
    services.wait_until(lambda: unpublished() == 0, 30, "every event marked published")


def test_a_publisher_killed_mid_batch_loses_nothing_and_repeats_only_with_the_same_event_id(
    stack, api, stripe_api, events
):
    with ThreadPoolExecutor(8) as pool:
        intents = list(pool.map(lambda _: pay(api, stripe_api, "d16kill", refund=True), range(size(20, 80))))
    ids = [i["id"] for i in intents]
    written = outbox_of(stack, ids)
    stack.start_publisher(OUTBOX_BATCH="5")  # small batches: the kill lands between a send and its marking
    services.wait_until(
        lambda: (
            stack.sql(
                "SELECT COUNT(*) FROM payment_event WHERE published_at IS NOT NULL AND payment_intent_id IN "
                f"({','.join(['%s'] * len(ids))})",
                tuple(ids),
            )[0][0]
            >= 5
        ),
        60,
        "the first events published",
        0.02,
    )
    stack.kill("publisher", signal.SIGKILL)
    stack.stop("publisher")
    stack.start_publisher()
    try:
        wait_all(events, written, 120)
    finally:
        stack.stop("publisher")
    total, repeats = order_kept(events, written)
    report("16", "publisher SIGKILLed mid-batch (batches of 5), then started again", events=total, repeats=repeats)
    assert total == sum(len(w) for w in written.values())


def test_a_webhook_and_the_answer_telling_one_success_make_one_succeeded_payment(
    stack, api, stripe_api, events, publisher
):
    from tests.drills.conftest import WEBHOOK_SECRET

    intent = pay(api, stripe_api, "d16twice")
    at_stripe = stripe_api.v1.payment_intents.retrieve(intent["stripePaymentIntentId"]).to_dict()
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()) + 2,
            "data": {"object": at_stripe},
        }
    )
    answer = api.post(
        "/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    written = outbox_of(stack, [intent["id"]])
    wait_all(events, written, 60)
    time.sleep(1.0)  # a second one, if any, would be published by now
    succeeded = {e for _, e, p in received(events, intent["id"]) if p["type"] == "succeeded-payment"}
    report("16", "a payment's success told by its answer and by a webhook", succeeded_payment_events=len(succeeded))
    assert len(succeeded) == 1


def test_two_publishers_running_share_the_shards_and_keep_each_intents_order(stack, api, stripe_api, events):
    stack.start_publisher("publisher-a")
    stack.start_publisher("publisher-b")
    try:
        # Both running: each keeps its share of the shards (the first gives half back once it sees the second).
        services.wait_until(
            lambda: len(stack.sql("SELECT DISTINCT owner FROM outbox_lease WHERE owner IS NOT NULL")) == 2,
            30,
            "the shards shared by two publishers",
            0.25,
        )
        shares = stack.sql("SELECT owner, COUNT(*) FROM outbox_lease WHERE owner IS NOT NULL GROUP BY owner")
        with ThreadPoolExecutor(8) as pool:
            intents = list(pool.map(lambda _: pay(api, stripe_api, "d16two", refund=True), range(size(20, 80))))
        ids = [i["id"] for i in intents]
        written = outbox_of(stack, ids)
        wait_all(events, written, 120)
    finally:
        stack.stop("publisher-a")
        stack.stop("publisher-b")
    total, repeats = order_kept(events, written)
    used = {
        row[0]
        for row in stack.sql(
            f"SELECT DISTINCT shard FROM payment_event WHERE payment_intent_id IN ({','.join(['%s'] * len(ids))})",
            tuple(ids),
        )
    }
    report(
        "16",
        "two publishers at once",
        events=total,
        repeats=repeats,
        shards_per_publisher=",".join(str(count) for _, count in shares),
        shards_used=len(used),
    )
    assert sorted(count for _, count in shares) == [get_settings().outbox_shards // 2] * 2
    assert total == sum(len(w) for w in written.values())
