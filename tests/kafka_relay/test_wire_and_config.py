"""The wire format and the clients' settings, without a broker."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Message

import settings as settings_module
from messaging import config, wire


def message(value: bytes | None, key: bytes | None = b"k-1", headers: list | None = None) -> Message:
    return Message(
        topic="get-refund", partition=1, offset=41, key=key, value=value, headers=headers or [], timestamp=(1, 1700)
    )


def test_kafka_opt_variables_become_librdkafka_options_of_their_clients(monkeypatch):
    monkeypatch.setenv("KAFKA_OPT_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_CONSUMER_OPT_FETCH_WAIT_MAX_MS", "10")
    monkeypatch.setenv("KAFKA_PRODUCER_OPT_LINGER_MS", "20")
    loaded = settings_module.load_settings()
    consumer, producer = config.consumer_config(loaded), config.producer_config(loaded)
    assert consumer["security.protocol"] == producer["security.protocol"] == "SASL_SSL"
    assert consumer["fetch.wait.max.ms"] == "10" and "fetch.wait.max.ms" not in producer
    assert producer["linger.ms"] == "20" and "linger.ms" not in consumer


def test_offsets_stored_by_hand_and_an_idempotent_producer_cannot_be_configured_away(monkeypatch):
    monkeypatch.setenv("KAFKA_CONSUMER_OPT_ENABLE_AUTO_OFFSET_STORE", "true")
    monkeypatch.setenv("KAFKA_PRODUCER_OPT_ENABLE_IDEMPOTENCE", "false")
    loaded = settings_module.load_settings()
    assert config.consumer_config(loaded)["enable.auto.offset.store"] is False
    assert config.producer_config(loaded)["enable.idempotence"] is True


def test_an_empty_kafka_broker_means_the_local_broker_and_the_group_comes_from_kafka_group(monkeypatch):
    monkeypatch.setenv("KAFKA_BROKER", "")
    monkeypatch.setenv("KAFKA_GROUP", "payments-eu")
    loaded = settings_module.load_settings()
    assert config.consumer_config(loaded)["bootstrap.servers"] == "127.0.0.1:9092"
    assert config.consumer_config(loaded)["group.id"] == "payments-eu"


def test_a_valid_request_carries_its_trace_id_and_kafka_idempotency_key_into_the_task_meta():
    request = wire.decode_request(message(b'{"refundId": "vyre_1", "traceId": "t-1"}'))
    assert request.payload == {"refundId": "vyre_1"}
    assert request.meta == {
        "traceId": "t-1",
        "idempotencyKey": "kafka:get-refund:k-1",
        "door": "kafka",
        "waitInFlight": True,
        "reply": {"topic": "get-refund-response", "key": "k-1", "headers": {}},
    }


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"{", b"k", "invalid_json"),
        (None, b"k", "invalid_json"),
        (b"\xff", b"k", "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, b"k", "invalid_json"),
        (b"[1]", b"k", "not_object"),
        (b'"refundId"', b"k", "not_object"),
        (b'{"refundId": 5}', b"k", "validation_error"),
        (b'{"refundId": "vyre_1", "traceId": ""}', b"k", "validation_error"),
        (b'{"refundId": "vyre_1"}', None, "missing_key"),
        (b'{"refundId": "vyre_1"}', b"", "missing_key"),
        (b'{"refundId": "vyre_1"}', b"\xff", "invalid_key"),
    ],
)
def test_poison_is_refused_with_its_reason(value, key, reason):
    with pytest.raises(wire.PoisonMessage) as refused:
        wire.decode_request(message(value, key))
    assert refused.value.reason == reason
    assert refused.value.error.code == "validation_error"
    assert (refused.value.reply is None) == (reason == "missing_key")


def test_a_reply_is_the_gateway_envelope_byte_for_byte():
    reply = {"topic": "get-refund-response", "key": "k-1", "headers": {}}
    record = wire.reply_record({"response": {"id": "vyre_1", "note": "é"}}, reply, "t-1")
    expected = (
        '{"kafkaResponseKey":"k-1","traceId":"t-1","response":{"id":"vyre_1","note":"é"},"kafkaResponseStatus":true}'
    )
    assert record.value == expected.encode()
    assert (record.topic, record.key, record.headers, record.partition) == ("get-refund-response", b"k-1", [], None)


def test_an_error_reply_says_kafka_response_status_false_as_the_platform_s_responders_do():
    reply = {"topic": "get-refund-response", "key": "k-2", "headers": {}}
    error = {"code": "not_found", "message": "No refund.", "status": 404, "details": {}}
    body = json.loads(wire.reply_record({"error": error}, reply, "t-2").value)
    assert body == {"kafkaResponseKey": "k-2", "traceId": "t-2", "error": error, "kafkaResponseStatus": False}


def test_a_nestjs_error_reply_echoes_the_correlation_id_and_carries_the_error_in_kafka_nest_err():
    headers = [
        ("kafka_correlationId", b"c-9"),
        ("kafka_replyTopic", b"get-refund.reply"),
        ("kafka_replyPartition", b"3"),
    ]
    request = wire.decode_request(message(b'{"refundId": "vyre_1"}', key=None, headers=headers))
    assert request.meta["reply"] == {
        "topic": "get-refund.reply",
        "key": "c-9",
        "headers": {"kafka_correlationId": "c-9"},
        "partition": 3,
    }
    error = {"code": "not_found", "message": "No refund.", "status": 404, "details": {}}
    record = wire.reply_record({"error": error}, request.meta["reply"], "t-2")
    assert (record.topic, record.partition) == ("get-refund.reply", 3)
    assert dict(record.headers) == {
        "kafka_correlationId": b"c-9",
        "kafka_nest-err": json.dumps(error, separators=(",", ":")).encode(),
        "kafka_nest-is-disposed": b"\x00",
    }


def test_a_dead_letter_copy_keeps_the_message_and_says_why_and_where_from():
    original = message(b"{", headers=[("origin", b"x")])
    with pytest.raises(wire.PoisonMessage) as refused:
        wire.decode_request(original)
    record = wire.dlq_record(original, refused.value)
    assert (record.topic, record.key, record.value) == ("get-refund-dlq", b"k-1", b"{")
    headers = dict(record.headers)
    assert headers["origin"] == b"x" and headers["dlq-reason"] == b"invalid_json"
    assert (headers["kafka_dlt-original-partition"], headers["kafka_dlt-original-offset"]) == (b"1", b"41")


def test_a_reply_partition_header_that_only_looks_numeric_does_not_stop_the_relay():
    from messaging import wire

    assert wire._reply_partition("²".encode()) is None
    assert wire._reply_partition(b"3") == 3
    assert wire._reply_partition(b"99999999999999999999") is None
