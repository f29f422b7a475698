"""The Grafana dashboard and the Prometheus alert rules under deploy/ name only metrics the service exports."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import yaml
from prometheus_client import Counter, Gauge, Histogram

ROOT = Path(__file__).resolve().parents[1]
METRIC = re.compile(r"\bpayments_[a-z_]+")


def exported() -> set[str]:
    """Every sample name the service's processes can export."""
    from observability import metrics
    from operations import view as ops

    names = {"payments_queue_depth"}
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names |= {f"{value._name}_total", f"{value._name}_created"}
        elif isinstance(value, Histogram):
            names |= {f"{value._name}_{suffix}" for suffix in ("bucket", "count", "sum", "created")}
        elif isinstance(value, Gauge):
            names.add(value._name)
    full_view = {
        "read_at": dt.datetime.now(dt.UTC),
        "readiness": {"database": {"ok": True, "detail": ""}},
        "claims": {"in_flight": {"count": 0, "oldest_s": None}, "abandoned": {"count": 1, "oldest_s": 5.0}},
        "webhooks": {"by_status": {"processed": 1}, "last_received_age_s": 3.0},
        "dead_letters": {"create-payment-intent-dlq": 0},
        "outbox": {"backlog": 0, "oldest_s": 0.0},
    }
    original = ops.snapshot
    ops.snapshot = lambda fresh=False: full_view
    try:
        for family in ops.OpsCollector().collect():
            names |= {sample.name for sample in family.samples}
    finally:
        ops.snapshot = original
    return names


def named_in(text: str) -> set[str]:
    return set(METRIC.findall(text))


def test_every_metric_of_the_dashboard_and_the_alerts_is_exported():
    known = exported()
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    used = set().union(*(named_in(e) for e in [*exprs, *alerts.values()]))
    assert used and used <= known, sorted(used - known)
    # The alerts the operator needs: abandoned claims, webhook silence, DLQ growth, queue depth, error rate.
    for metric in (
        "payments_claims",
        "payments_webhook_last_received_seconds",
        "payments_dlq_messages",
        "payments_queue_depth",
        "payments_http_requests_total",
    ):
        assert any(metric in expr for expr in alerts.values()), metric
    assert len(dashboard["panels"]) >= 10 and all(panel["targets"] for panel in dashboard["panels"])
