"""Prometheus metrics: /metrics on the API, a metrics port on the worker, counting real requests."""

from __future__ import annotations

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import WORKER_METRICS_PORT

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_api_and_worker_metrics_count_requests_per_operation_and_door(client, anonymous):
    door = {"operation": "get-refund", "door": "rest", "stage": "door"}
    before_api = samples(anonymous.get("/metrics").text)
    before_worker = samples(requests.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics", timeout=10).text)
    for _ in range(3):
        assert client.get("/refunds/vyre_counted").status_code == 404
    after_api_response = anonymous.get("/metrics")
    assert after_api_response.status_code == 200
    after_api = samples(after_api_response.text)
    after_worker = samples(requests.get(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics", timeout=10).text)

    api_delta = value(after_api, "payments_operation_seconds_count", **door) - value(
        before_api, "payments_operation_seconds_count", **door
    )
    assert api_delta == 3
    outcome = {"operation": "get-refund", "door": "rest", "outcome": "not_found"}
    worker_delta = value(after_worker, "payments_operations_total", **outcome) - value(
        before_worker, "payments_operations_total", **outcome
    )
    assert worker_delta == 3
    assert ("payments_queue_depth", (("queue", "payments"),)) in after_api
    assert any(name == "payments_in_flight" for name, _ in after_api)
