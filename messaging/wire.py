"""The platform's Kafka wire contract (DESIGN.md §Kafka wire contract): requests in, replies and dead letters out.

A request is a JSON object under a string key; its reply carries
`{"kafkaResponseKey", "traceId", "kafkaResponseStatus", "response" | "error"}` under the same key. A request sent
by NestJS
`ClientKafka.send` (headers `kafka_correlationId` + `kafka_replyTopic`) is answered on its reply topic the way
a NestJS server answers it: correlation id echoed, `kafka_nest-is-disposed` set, errors in `kafka_nest-err`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from domain.schemas import parse_input
from errors import OperationError, PicklableError
from messaging.config import dlq_topic
from registry import OPERATIONS

# The platform's idempotency field in a request's body; a Kafka door scopes it by topic.
IDEMPOTENCY_FIELD = "idempotencyKey"
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, as Stripe accepts (doors/envelope.py)
Dialect = Callable[[str, dict[str, Any]], dict[str, Any]]

# The NestJS microservices transport's header names (@nestjs/microservices KafkaHeaders).
CORRELATION_ID = "kafka_correlationId"
REPLY_TOPIC = "kafka_replyTopic"
REPLY_PARTITION = "kafka_replyPartition"
NEST_ERR = "kafka_nest-err"
NEST_IS_DISPOSED = "kafka_nest-is-disposed"

# Dead-letter headers: our reason code and the full error, then Spring Kafka's DLT names for the origin.
DLQ_REASON = "dlq-reason"
DLQ_ERROR = "dlq-error"
DLQ_MESSAGE = "kafka_dlt-exception-message"
DLQ_TOPIC = "kafka_dlt-original-topic"
DLQ_PARTITION = "kafka_dlt-original-partition"
DLQ_OFFSET = "kafka_dlt-original-offset"
DLQ_TIMESTAMP = "kafka_dlt-original-timestamp"
TRACE_ID_HEADER = "traceId"

TRACE_ID_FIELD = "traceId"
MAX_TRACE_ID = 128


@dataclass(frozen=True)
class Record:
    """One message to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None


@dataclass(frozen=True)
class Request:
    """A valid request: the operation's fields (traceId removed) and the meta its task runs with."""

    operation: str
    payload: dict[str, Any]
    meta: dict[str, Any]

    @property
    def trace_id(self) -> str:
        return self.meta["traceId"]


class PoisonMessage(PicklableError):
    """A message that cannot become a request: answered with `error` when it has a key, and dead-lettered."""

    def __init__(self, reason: str, error: OperationError, trace_id: str, reply: dict[str, Any] | None) -> None:
        super().__init__(f"{reason}: {error.message}")
        self.reason = reason  # missing_key, invalid_key, invalid_json, not_object, validation_error, unreadable
        self.error = error
        self.trace_id = trace_id
        self.reply = reply  # where the error reply goes; None without a key


def encode_json(value: Any) -> bytes:
    """JSON as the gateway's `JSON.stringify` writes it: no spaces, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def message_headers(message: Message) -> list[tuple[str, bytes]]:
    """The headers with a value, as bytes: a consumed message has a list of them; the binding also types a dict and
    text values, which are taken as the producer would send them."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs if value is not None]


def _headers(message: Message) -> dict[str, bytes]:
    return dict(message_headers(message))


def consumed_topic(message: Message) -> str:
    """The topic of a consumed message: librdkafka sets it on every message that is not an error event."""
    topic = message.topic()
    if topic is None:
        raise ValueError("a consumed message without a topic (an error event?)")
    return topic


def _text(value: bytes | None) -> str | None:
    try:
        return value.decode("utf-8") if value else None
    except UnicodeDecodeError:
        return None


def _reply_partition(value: bytes | None) -> int | None:
    text = _text(value)
    # NestJS sends the partition as a decimal string; anything else leaves the choice to the partitioner.
    # isascii: "²".isdigit() is True, but int("²") raises, and that must not stop the relay.
    return int(text) if text and text.isascii() and text.isdigit() and len(text) <= 9 else None


def reply_destination(topic: str, key: str | None, headers: dict[str, bytes]) -> dict[str, Any] | None:
    """Where a request's reply goes (JSON-safe: it travels in the task's meta); None without a key."""
    correlation_id, reply_topic = _text(headers.get(CORRELATION_ID)), _text(headers.get(REPLY_TOPIC))
    if correlation_id and reply_topic:
        reply: dict[str, Any] = {
            "topic": reply_topic,
            "key": key or correlation_id,  # NestJS correlates by id; a keyless request is keyed by it
            "headers": {CORRELATION_ID: correlation_id},
        }
        partition = _reply_partition(headers.get(REPLY_PARTITION))
        if partition is not None:
            reply["partition"] = partition
        return reply
    if key is None:
        return None
    return {"topic": OPERATIONS[topic].response_topic, "key": key, "headers": {}}


def _trace_id(data: Any) -> tuple[str, bool]:
    """The request's traceId, or a new one; False when the field is there but not a usable string."""
    value = data.get(TRACE_ID_FIELD) if isinstance(data, dict) else None
    if value is None:
        return str(uuid.uuid4()), True
    if isinstance(value, str) and 0 < len(value) <= MAX_TRACE_ID:
        return value, True
    return str(uuid.uuid4()), False


def _invalid(message: str, fields: list[dict[str, str]] | None = None) -> OperationError:
    return OperationError("validation_error", message, {"fields": fields} if fields else None)


def _unchanged(_topic: str, payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def decode_request(message: Message, dialect: Dialect = _unchanged) -> Request:
    """The request a consumed message carries; raises PoisonMessage for anything the contract refuses.

    `dialect(topic, payload)` reads a request the platform sent in its own field names into ours."""
    topic = consumed_topic(message)
    raw_key = message.key()
    key = _text(raw_key)
    try:
        reply = reply_destination(topic, key, _headers(message))
    except Exception:  # headers that cannot name a reply: treated as none (the key may still)
        reply = None
    if raw_key and key is None and reply is None:
        # A key that is not text still names the caller: answer under the same bytes.
        reply = {"topic": OPERATIONS[topic].response_topic, "key": raw_key.decode("utf-8", "replace"), "headers": {}}
    try:
        return _decode(message, topic, raw_key, key, reply, dialect)
    except PoisonMessage:
        raise
    except Exception as exc:
        # Whatever else a message can do to the parser, it is bad input: the relay answers it and goes on.
        unreadable = _invalid("The message could not be read.")
        raise PoisonMessage("unreadable", unreadable, str(uuid.uuid4()), reply) from exc


def _decode(
    message: Message,
    topic: str,
    raw_key: bytes | None,
    key: str | None,
    reply: dict[str, Any] | None,
    dialect: Dialect,
) -> Request:
    data: Any = None
    problem: tuple[str, OperationError] | None = None
    try:
        data = json.loads(message.value() or b"")
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the interpreter's stack, the cheapest poison there is.
        problem = ("invalid_json", _invalid("The message value is not JSON."))
    trace_id, trace_ok = _trace_id(data)

    if reply is None:
        raise PoisonMessage("missing_key", _invalid("The message has no key to answer under."), trace_id, None)
    if raw_key and key is None:
        raise PoisonMessage("invalid_key", _invalid("The message key is not UTF-8 text."), trace_id, reply)
    if problem is None and not isinstance(data, dict):
        problem = ("not_object", _invalid("The message value must be a JSON object."))
    if problem is None and not trace_ok:
        field_error = {"field": TRACE_ID_FIELD, "message": f"a string of 1 to {MAX_TRACE_ID} characters"}
        problem = ("validation_error", _invalid("The request is not valid.", [{**field_error, "type": "string_type"}]))
    body_key = None
    if problem is None:
        payload = {name: value for name, value in data.items() if name != TRACE_ID_FIELD}
        if OPERATIONS[topic].mutating:
            body_key = payload.pop(IDEMPOTENCY_FIELD, None)
            if body_key is not None and not (isinstance(body_key, str) and IDEMPOTENCY_KEY.fullmatch(body_key)):
                field_error = {"field": IDEMPOTENCY_FIELD, "message": "1 to 255 printable ASCII characters"}
                invalid = _invalid("The request is not valid.", [{**field_error, "type": "string_pattern_mismatch"}])
                problem = ("validation_error", invalid)
        payload = dialect(topic, payload)  # the platform's dialect, read into ours (the door's own translation)
    if problem is None:
        try:
            parse_input(OPERATIONS[topic].schema, payload)
        except OperationError as exc:
            if exc.code != "not_found":  # an id that cannot be ours is a request for an unknown record, not poison
                problem = ("validation_error", exc)
    if problem is not None:
        raise PoisonMessage(problem[0], problem[1], trace_id, reply)

    meta = {
        "traceId": trace_id,
        # The platform's own key when it sent one (its retries come under new message keys), else the message's.
        "idempotencyKey": f"kafka:{topic}:body:{body_key}" if body_key else f"kafka:{topic}:{reply['key']}",
        "door": "kafka",
        # A redelivered request waits for its first attempt instead of answering idempotency_key_in_use.
        "waitInFlight": True,
        "reply": reply,
    }
    if topic == "process-stripe-webhook":
        meta["receivedAt"] = time.time()  # the worker's signature check allows for the time it queued
    return Request(operation=topic, payload=payload, meta=meta)


def reply_record(
    envelope: dict[str, Any], reply: dict[str, Any], trace_id: str, raw_key: bytes | None = None
) -> Record:
    """The reply message for a task's envelope (`{"response": …}` or `{"error": …}`)."""
    body: dict[str, Any] = {"kafkaResponseKey": reply["key"], "traceId": trace_id}
    # As the platform's responders write it: the gateway reads kafkaResponseStatus beside response or error.
    if "error" in envelope:
        body["error"] = envelope["error"]
        body["kafkaResponseStatus"] = False
    else:
        body["response"] = envelope["response"]
        body["kafkaResponseStatus"] = True
    headers = [(name, str(value).encode("utf-8")) for name, value in reply.get("headers", {}).items()]
    if CORRELATION_ID in reply.get("headers", {}):
        # A NestJS server ends each answer as disposed; an error travels in its own header.
        if "error" in envelope:
            headers.append((NEST_ERR, encode_json(envelope["error"])))
        headers.append((NEST_IS_DISPOSED, b"\x00"))
    return Record(
        topic=reply["topic"],
        key=raw_key if raw_key else reply["key"].encode("utf-8"),
        value=encode_json(body),
        headers=headers,
        partition=reply.get("partition"),
    )


def dlq_record(message: Message, poison: PoisonMessage) -> Record:
    """The poison message, byte for byte, on `<topic>-dlq`, with why and where it came from in headers."""
    error = poison.error.to_error()
    _, timestamp = message.timestamp()
    headers = [
        *message_headers(message),
        (DLQ_REASON, poison.reason.encode()),
        (DLQ_ERROR, encode_json(error)),
        (DLQ_MESSAGE, error["message"].encode()),
        (DLQ_TOPIC, consumed_topic(message).encode()),
        (DLQ_PARTITION, str(message.partition()).encode()),
        (DLQ_OFFSET, str(message.offset()).encode()),
        (DLQ_TIMESTAMP, str(timestamp).encode()),
        (TRACE_ID_HEADER, poison.trace_id.encode()),
    ]
    return Record(topic=dlq_topic(consumed_topic(message)), key=message.key(), value=message.value(), headers=headers)
