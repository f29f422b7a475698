"""Poison input: an error reply when it has a key, a copy on `<topic>-dlq`, and the relay goes on."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from tests.kafka_relay.conftest import RELAY_METRICS_PORT

pytestmark = pytest.mark.integration

TOPIC = "create-payment-intent"
GOOD = {"customerId": "kcust-poison", "amount": 1000, "currency": "usd"}

# kind: (message key, message value, the reason the dead-letter copy carries)
POISON = {
    "value_not_json": ("key", b'{"customerId": "c", amount: 1', "invalid_json"),
    "value_empty": ("key", b"", "invalid_json"),
    "value_not_an_object": ("key", b'["customerId", "c"]', "not_object"),
    "field_of_the_wrong_type": ("key", b'{"customerId": "c", "amount": "1000", "currency": "usd"}', "validation_error"),
    "unknown_field": ("key", b'{"customerId": "c", "amount": 1000, "currency": "usd", "x": 1}', "validation_error"),
    "trace_id_not_a_string": (
        "key",
        b'{"customerId": "c", "amount": 1000, "currency": "usd", "traceId": 7}',
        "validation_error",
    ),
    "key_not_utf8": (b"\xff\xfe-" + uuid.uuid4().bytes, json.dumps(GOOD).encode(), "invalid_key"),
    "no_key": (None, json.dumps({**GOOD, "traceId": "marker"}).encode(), "missing_key"),
}


def dead_letters(collector, value: bytes) -> list:
    return [r for r in collector.received(topic=f"{TOPIC}-dlq") if r.value == value]


@pytest.mark.parametrize("kind", list(POISON))
def test_poison_gets_an_error_reply_and_a_dead_letter_copy_between_answered_requests(gateway, relay, kind):
    key, value, reason = POISON[kind]
    if key == "key":
        key = f"poison-{uuid.uuid4()}"
    if value and b"marker" in value:
        value = value.replace(b"marker", str(uuid.uuid4()).encode())  # makes the keyless copy findable
    # One partition, so the good requests are read just before and just after the poison.
    before = gateway.send(TOPIC, {**GOOD, "amount": 1001}, partition=0)
    gateway.send(TOPIC, key=key, value=value, partition=0, headers=[("origin", b"test")])
    after = gateway.send(TOPIC, {**GOOD, "amount": 1002}, partition=0)
    gateway.flush()

    assert gateway.reply(TOPIC, before)["response"]["amount"] == 1001
    assert gateway.reply(TOPIC, after)["response"]["amount"] == 1002
    gateway.collector.wait(lambda: dead_letters(gateway.collector, value), 30, "dead-letter copy")
    [copy] = dead_letters(gateway.collector, value)
    assert copy.key == (key.encode() if isinstance(key, str) else key)
    assert copy.headers["dlq-reason"] == reason.encode()
    assert copy.headers["origin"] == b"test"
    assert copy.headers["kafka_dlt-original-topic"] == TOPIC.encode()
    assert json.loads(copy.headers["dlq-error"])["code"] == "validation_error"
    if key is None:
        assert not [r for r in gateway.collector.received(topic=f"{TOPIC}-response") if r.key is None]
        return
    raw_key = key.encode() if isinstance(key, str) else key
    reply = gateway.collector.wait_for_key(raw_key, f"{TOPIC}-response", 30).json()
    assert reply["error"]["code"] == "validation_error" and reply["error"]["status"] == 400
    assert reply["traceId"] == copy.headers["traceId"].decode()
    assert relay.running


def poison_count() -> float:
    text = requests.get(f"http://127.0.0.1:{RELAY_METRICS_PORT}/metrics", timeout=10).text
    prefix = f'payments_operations_total{{door="kafka",operation="{TOPIC}",outcome="validation_error"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def test_poison_answered_by_the_relay_is_counted_in_its_metrics(gateway, relay):
    before = poison_count()
    key = gateway.send(TOPIC, key=f"poison-{uuid.uuid4()}", value=b"nope")
    gateway.flush()
    gateway.collector.wait_for_key(key.encode(), f"{TOPIC}-response", 30)
    assert poison_count() == before + 1


def test_the_operator_view_counts_each_topics_dead_letters(gateway, relay):
    from operations.view import dead_letters as counted
    from registry import OPERATIONS

    before = counted()
    assert before is not None and set(before) == {f"{name}-dlq" for name in OPERATIONS}
    value = b'{"customerId": "c", "amount": "not a number", "currency": "usd", "n": "%s"}' % uuid.uuid4().hex.encode()
    gateway.send(TOPIC, key=f"ops-dlq-{uuid.uuid4()}", value=value)
    gateway.flush()
    gateway.collector.wait(lambda: dead_letters(gateway.collector, value), 30, "dead-letter copy")
    after = counted()
    assert after[f"{TOPIC}-dlq"] == before[f"{TOPIC}-dlq"] + 1
    assert {t: n for t, n in after.items() if t != f"{TOPIC}-dlq"} == {
        t: n for t, n in before.items() if t != f"{TOPIC}-dlq"
    }


def test_payments_dlq_lists_the_dead_letters_and_replays_one_to_its_topic_after_a_fix(gateway, relay):
    from click.testing import CliRunner

    from cli import main

    runner = CliRunner()
    key = f"dlq-cli-{uuid.uuid4()}"
    # A request dead-lettered before a fix (written to the DLQ as the relay writes its copies); now it is readable.
    headers = [("dlq-reason", b"validation_error"), ("kafka_dlt-original-topic", TOPIC.encode()), ("origin", b"t")]
    gateway.send(f"{TOPIC}-dlq", key=key, value=json.dumps({**GOOD, "amount": 1234}).encode(), headers=headers)
    gateway.flush()
    listed = runner.invoke(main, ["dlq", "list", TOPIC], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    [line] = [line for line in listed.output.splitlines() if key in line]
    where = line.split()[0]
    assert "validation_error" in line and re.fullmatch(r"\d+:\d+", where)
    assert runner.invoke(main, ["dlq", "replay", TOPIC], catch_exceptions=False).exit_code == 2  # says which
    replayed = runner.invoke(main, ["dlq", "replay", TOPIC, "--offset", where], catch_exceptions=False)
    assert replayed.exit_code == 0 and "1 sent back" in replayed.output, replayed.output
    answer = gateway.reply(TOPIC, key)  # the relay ran it this time
    assert answer["response"]["amount"] == 1234
