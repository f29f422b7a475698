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


def test_http_requests_are_counted_per_route_and_status_4xx_included_and_logged_as_json_access_lines(client, anonymous):
    import json
    import uuid

    from tests.conftest import LOG_DIR

    route = {"route": "/refunds/<refund_id>", "method": "GET"}
    before = samples(anonymous.get("/metrics").text)
    trace = f"access-{uuid.uuid4().hex[:12]}"
    for _ in range(2):
        assert client.get("/refunds/vyre_http_counted", headers={"X-Trace-Id": trace}).status_code == 404
    assert anonymous.get("/refunds/vyre_http_counted").status_code == 401
    assert client.get("/no-such-route").status_code == 404
    after = samples(anonymous.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("payments_http_requests_total", status="404", **route) == 2
    assert delta("payments_http_requests_total", status="401", **route) == 1
    assert delta("payments_http_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert delta("payments_http_request_seconds_count", **route) == 3
    lines = [json.loads(line) for line in (LOG_DIR / "api.log").read_text().splitlines() if trace in line]
    access = [line for line in lines if line.get("logger") == "api.access"]
    assert len(access) == 2
    assert {(a["method"], a["route"], a["status"], a["traceId"]) for a in access} == {
        ("GET", "/refunds/<refund_id>", 404, trace)
    }
    assert all(isinstance(a["durationMs"], float) and a["caller"] for a in access)


def test_queue_depth_is_read_from_the_broker_at_most_once_per_ttl_however_often_it_is_scraped(worker, monkeypatch):
    from operations import metrics

    collector = metrics.QueueDepthCollector()
    families = [list(collector.collect()) for _ in range(5)]
    assert collector.broker_reads == 1
    assert {s.labels["queue"] for s in families[-1][0].samples} == {"payments", "payment-methods", "webhooks", "reads"}
    monkeypatch.setattr(metrics, "QUEUE_DEPTH_TTL_S", 0.0)
    list(collector.collect())
    assert collector.broker_reads == 2
