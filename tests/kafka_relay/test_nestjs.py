"""The NestJS `ClientKafka.send` convention: the answer goes to the request's reply topic and partition."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support import services

pytestmark = pytest.mark.integration


def nest_send(gateway, topic: str, value: bytes, reply_partition: int = 1) -> str:
    """What ClientKafka.send writes: the JSON value, no key, correlation id and where to answer in headers."""
    correlation_id = str(uuid.uuid4())
    headers = [
        ("kafka_correlationId", correlation_id.encode()),
        ("kafka_replyTopic", f"{topic}.reply".encode()),
        ("kafka_replyPartition", str(reply_partition).encode()),
    ]
    gateway.send(topic, key=None, value=value, headers=headers)
    gateway.flush()
    return correlation_id


def nest_reply(collector, topic: str, correlation_id: str):
    def matching():
        return [
            r
            for r in collector.received(topic=f"{topic}.reply")
            if r.headers.get("kafka_correlationId") == correlation_id.encode()
        ]

    collector.wait(matching, 60, f"NestJS reply {correlation_id}")
    return matching()


def test_a_nestjs_request_is_answered_on_its_reply_topic_and_partition_with_its_correlation_id(gateway, relay):
    payload = {"customerId": f"nest-{uuid.uuid4().hex[:8]}", "amount": 1500, "currency": "usd", "traceId": "t-nest"}
    correlation_id = nest_send(gateway, "create-payment-intent", json.dumps(payload).encode())
    [reply] = nest_reply(gateway.collector, "create-payment-intent", correlation_id)
    assert reply.partition == 1
    assert "kafka_nest-err" not in reply.headers
    assert "kafka_nest-is-disposed" in reply.headers
    body = reply.json()
    assert body["response"]["amount"] == 1500 and body["traceId"] == "t-nest"
    assert body["kafkaResponseKey"] == correlation_id


def test_a_nestjs_request_that_fails_carries_its_error_in_the_kafka_nest_err_header(gateway, relay):
    correlation_id = nest_send(gateway, "get-payment-intent", b'{"paymentIntentId": "vypi_missing"}', 0)
    [reply] = nest_reply(gateway.collector, "get-payment-intent", correlation_id)
    assert reply.partition == 0
    error = json.loads(reply.headers["kafka_nest-err"])
    assert (error["code"], error["status"]) == ("not_found", 404)
    assert reply.json()["error"] == error


def test_a_nestjs_poison_request_is_refused_on_its_reply_topic(gateway, relay):
    correlation_id = nest_send(gateway, "get-payment-intent", b"not json")
    [reply] = nest_reply(gateway.collector, "get-payment-intent", correlation_id)
    assert json.loads(reply.headers["kafka_nest-err"])["code"] == "validation_error"


def test_a_nestjs_reply_partition_that_does_not_exist_is_logged_and_not_retried_forever(gateway, relay, worker):
    payload = b'{"paymentIntentId": "vypi_nowhere"}'
    correlation_id = nest_send(gateway, "get-payment-intent", payload, reply_partition=99)
    services.wait_until(lambda: "can never be delivered" in worker.read_text(errors="replace"), 30, "worker log")
    assert not [
        r
        for r in gateway.collector.received(topic="get-payment-intent.reply")
        if r.headers.get("kafka_correlationId") == correlation_id.encode()
    ]
    # The worker goes on answering.
    assert gateway.request("get-payment-intent", {"paymentIntentId": "vypi_nowhere"})["error"]["code"] == "not_found"
