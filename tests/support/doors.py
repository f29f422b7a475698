"""One way to call an operation on either door, so a scenario is written once and run through both.

`RestDoor` maps an operation to its route (path parameters from the payload, the rest as query or body);
`KafkaDoor` sends it to its topic as the platform's gateway does. Both answer an `Answer`: what the caller got.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from registry import OPERATIONS


def documented(operation: str, body: Any) -> None:
    """A success answer is exactly what the OpenAPI document says it is (its response model forbids any other field):
    the document cannot drift from what is answered."""
    from pydantic import TypeAdapter

    from api.openapi import RESPONSES

    TypeAdapter(RESPONSES[operation]).validate_python(body)


@dataclass
class Answer:
    ok: bool
    body: dict[str, Any]  # the response on success, the error object otherwise
    status: int  # HTTP status (REST), or the error's status / 200 (Kafka)
    raw: Any = None

    @property
    def code(self) -> str | None:
        return None if self.ok else self.body.get("code")


def envelope_answer(operation: str, envelope: dict[str, Any], success_status: int) -> Answer:
    """What an envelope of the platform's (Kafka's reply, Socket.IO's acknowledgement) answers: a success is
    `kafkaResponseStatus` true with a `response`, as documented; an error, false with an `error` and its status."""
    if "response" in envelope:
        assert envelope["kafkaResponseStatus"] is True, envelope
        documented(operation, envelope["response"])
        return Answer(True, envelope["response"], success_status, envelope)
    assert envelope["kafkaResponseStatus"] is False, envelope
    return Answer(False, envelope["error"], envelope["error"]["status"], envelope)


class Door:
    """A way to call an operation through one of the service's doors (`name`), with its own client."""

    name: str

    def __init__(self, client: Any) -> None:
        self.client = client


class RestDoor(Door):
    name = "rest"

    def call(self, operation: str, payload: dict[str, Any], key: str | None = None) -> Answer:
        op = OPERATIONS[operation]
        body = dict(payload)
        path = op.path
        for flask_name in re.findall(r"<(?:\w+:)?(\w+)>", op.path):
            path = path.replace(f"<{flask_name}>", str(body.pop(to_camel(flask_name))))
        headers = {"Idempotency-Key": key} if key and op.mutating else {}
        if op.method == "GET":
            response = self.client.get(path, params=body, headers=headers)
        elif op.method == "DELETE":
            response = self.client.delete(path, headers=headers)
        else:
            response = self.client.post(path, json=body, headers=headers)
        data = response.json()
        if response.status_code < 400:
            documented(operation, data)
            return Answer(True, data, response.status_code, response)
        return Answer(False, data["error"], response.status_code, response)


class KafkaDoor:
    name = "kafka"

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def call(self, operation: str, payload: dict[str, Any], key: str | None = None) -> Answer:
        key = key or f"PaymentsGateway-{uuid.uuid4().hex}"
        trace_id = f"trace-{uuid.uuid4()}"
        seen = len(self.gateway.collector.received(key.encode(), f"{operation}-response"))  # earlier answers
        self.gateway.send(operation, payload, key=key, trace_id=trace_id)
        self.gateway.flush()
        self.gateway.collector.wait(
            lambda: len(self.gateway.collector.received(key.encode(), f"{operation}-response")) > seen,
            90,
            f"{operation} reply",
        )
        reply = self.gateway.collector.received(key.encode(), f"{operation}-response")[seen].json()
        assert reply["kafkaResponseKey"] == key and reply["traceId"] == trace_id, reply
        assert reply.get("response", True), reply  # the gateway resolves only on a truthy response
        return envelope_answer(operation, reply, 200)
