"""Helpers of the dialect tests: the platform's requests as its fixtures show them, sent over REST or Kafka."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

from tests.support.doors import Answer, KafkaDoor, RestDoor

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def value(dto: str, **fields: Any) -> dict[str, Any]:
    """The fixture's request value (without its traceId, which every door adds or reads itself), with `fields` set."""
    sent = json.loads((FIXTURES / f"{dto}.json").read_text())["value"]
    sent.pop("traceId", None)
    return {**sent, **fields}


def platform_key(service: str = "FinancePaymentsKafkaService") -> str:
    """A Kafka key as the platform's client makes it (encodeKafkaMessage): `<class>-<Date.now()>-<Math.random()>`."""
    return f"{service}-{int(time.time() * 1000)}-{random.random()}"


def our_key() -> str:
    return f"PaymentsGateway-{uuid.uuid4().hex}"


def ok(answer: Answer) -> dict[str, Any]:
    assert answer.ok, (answer.status, answer.body)
    return answer.body


def refused(answer: Answer, code: str) -> dict[str, Any]:
    assert not answer.ok and answer.code == code, (answer.status, answer.body)
    assert "Traceback" not in json.dumps(answer.body)
    return answer.body


__all__ = ["Answer", "KafkaDoor", "RestDoor", "ok", "our_key", "platform_key", "refused", "value"]
