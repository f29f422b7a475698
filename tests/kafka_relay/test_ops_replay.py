"""The operator page's dead-letter replay: the `payments dlq replay` function, from a confirmed form, audited."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests

from tests.api.conftest import running_api
from tests.api.test_ops_actions import audit_rows, confirm_fields
from tests.conftest import API_KEY

pytestmark = pytest.mark.integration

TOPIC = "create-payment-intent"


def test_an_operator_replays_a_topics_dead_letters_from_the_page_once_per_form(gateway, relay):
    key = f"dlq-ops-{uuid.uuid4()}"
    headers = [("dlq-reason", b"validation_error"), ("kafka_dlt-original-topic", TOPIC.encode())]
    good = {"customerId": "kcust-ops-replay", "amount": 4321, "currency": "usd"}
    gateway.send(f"{TOPIC}-dlq", key=key, value=json.dumps(good).encode(), headers=headers)
    gateway.flush()
    support_key = f"support-{uuid.uuid4().hex}"
    with running_api(
        "api-ops-replay.log", API_KEYS=f"{API_KEY},support:{support_key}", OPS_KEY_SCOPES="support=ops:act"
    ) as base:
        operator = requests.Session()
        operator.headers["Authorization"] = f"Bearer {support_key}"
        page = operator.get(f"{base}/ops/").text
        form = re.search(r'action="/ops/actions/replay-dead-letters">(.*?)</form>', page, re.S)
        assert form, "a topic with dead letters offers a replay"
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))
        fields["topic"] = TOPIC
        review = operator.post(f"{base}/ops/actions/replay-dead-letters", data=fields)
        assert f"Send every dead letter of {TOPIC}-dlq back to {TOPIC}" in review.text
        confirmed = confirm_fields(review.text)
        assert operator.post(f"{base}/ops/actions/replay-dead-letters", data=confirmed).status_code == 200
        assert operator.post(f"{base}/ops/actions/replay-dead-letters", data=confirmed).status_code == 200
    assert gateway.reply(TOPIC, key)["response"]["amount"] == 4321  # the relay ran it this time
    (row,) = audit_rows(action="replay-dead-letters", idempotency_key=f"ops:key:support:{fields['formKey']}")
    assert row.outcome == "ok" and row.answer["sent"] >= 1 and row.answer["failed"] == []
