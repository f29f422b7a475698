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
        "webhooks": {"by_status": {"processed": 1}, "last_received_age_s": 3.0, "backlog_oldest_s": 2.0},
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


# PromQL's words that are not series: keywords, and the modifiers whose parenthesised lists name labels.
PROMQL_KEYWORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "inf", "nan"}
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """Every series a PromQL expression reads: each identifier that is not a function (followed by `(`), a keyword,
    a label (inside `{}` or a `by (…)` list), a duration (inside `[]`, or after `offset`) or part of a number."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values may hold anything
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = LABEL_LISTS.sub(" ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\(?)", text):
        name, call = match.groups()
        if not call and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def alert_rules() -> list[dict]:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_promql_reader_finds_series_and_skips_functions_labels_durations_and_numbers():
    expr = (
        'sum by (le, queue) (rate(payments_a_total{status=~"5..", x="rate(y)"}[5m] offset 1h))'
        " / clamp_min(sum(rate(payments_b_total[5m])), 1e-9) > 0.01 and on() up == 1"
        " or histogram_quantile(0.99, sum without (pod) (rate(payments_c_bucket[5m]))) > 300"
    )
    assert metric_names(expr) == {"payments_a_total", "payments_b_total", "up", "payments_c_bucket"}


def test_every_alert_reads_only_series_the_service_exports():
    known = exported()
    for rule in alert_rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= known, (rule["alert"], sorted(used - known))


def test_the_prds_alerts_are_there_and_each_alert_has_a_runbook_section_in_the_readme():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    # PRD §9: attempts failing over 1 % (5 min), webhooks waiting over 5 min; and refunds failing.
    assert "payments_payment_attempts_total" in rules["PaymentsAttemptFailureRate"]["expr"]
    assert (
        "> 0.01" in rules["PaymentsAttemptFailureRate"]["expr"]
        and "[5m]" in rules["PaymentsAttemptFailureRate"]["expr"]
    )
    assert "> 300" in rules["PaymentsWebhookBacklog"]["expr"]
    assert "payments_webhook_backlog_oldest_seconds" in rules["PaymentsWebhookBacklog"]["expr"]
    assert "payments_webhook_wait_seconds_bucket" in rules["PaymentsWebhookBacklog"]["expr"]
    assert "payments_refunds_ended_total" in rules["PaymentsRefundErrors"]["expr"]
    readme = (ROOT / "README.md").read_text()
    runbook = readme[readme.index("### Runbook") :]
    sections = dict(re.findall(r"^#### (\w+)\n(.*?)(?=^#|\Z)", runbook, flags=re.M | re.S))
    for name in rules:
        assert name in sections, f"README, Runbook: no section for {name}"
        for part in ("**What it means**", "**On /ops/**", "**What fixes it**"):
            assert part in " ".join(sections[name].split()), (name, part)  # as Markdown reads it: lines joined


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
