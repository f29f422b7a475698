"""Drill 11: after every other drill, the test cards, CVCs, client secrets, API keys, Stripe key and webhook secret
appear in no log line any process wrote, in no table of any database the drills used, and in no Sentry event."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest

import tests.conftest as suite
from tests.drills.conftest import EVIDENCE, dump_tables
from tests.drills.helpers import customer, vault
from tests.drills.report import report
from tests.support import services
from tests.support.stripe_proxy import Fault

pytestmark = [pytest.mark.integration, pytest.mark.drill_last]

CLIENT_SECRET = re.compile(r"\b(pi|seti)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+")
# Logs of the stand-ins (Stripe, Kafka) and of private servers are not the service's; reported, not held to it.
STAND_IN_LOGS = ("localstripe", "tansu", "rabbitmq-", "redis-", "mariadb-")


def forbidden_patterns() -> dict[str, re.Pattern[str]]:
    exact = {*EVIDENCE.secrets, suite.STRIPE_KEY, suite.WEBHOOK_SECRET, suite.API_KEY, *EVIDENCE.cards}
    exact |= EVIDENCE.client_secrets
    patterns = {f"secret {s[:8]}…": re.compile(re.escape(s)) for s in exact if s}
    for number, cvc in EVIDENCE.cards.items():
        patterns[f"CVC of {number[-4:]}"] = re.compile(rf"(?i)cvc\W{{0,8}}{cvc}\b")
    patterns["any client secret"] = CLIENT_SECRET
    return patterns


def scan(text: str, patterns: dict[str, re.Pattern[str]]) -> list[str]:
    return [name for name, pattern in patterns.items() if pattern.search(text)]


def provoke_sentry_events(stack, api, stripe_api, proxy) -> None:
    """Errors every process reports to Sentry, carrying a key in their requests: a 500 in the web, a task
    whose Stripe retries run out in the worker."""
    api.post("/payment-intents", data=b'{"a":' * 50_000, headers={"Content-Type": "application/json"})
    customer_id = customer("sentry")
    vault(api, stripe_api, customer_id)
    proxy.add_rule(
        lambda m, p, f: p == "/v1/payment_intents" and f.get("metadata[vy_customer_id]") == [customer_id],
        [Fault.error(500, "api_error")] * 10,
    )
    try:
        api.post(
            "/payment-intents",
            json={"customerId": customer_id, "amount": 999, "currency": "usd", "confirm": True},
            headers={"Idempotency-Key": f"sentry-{uuid.uuid4()}"},
        )
    finally:
        proxy.clear()


def test_no_card_cvc_client_secret_key_or_webhook_secret_in_any_log_table_or_sentry_event(
    stack, api, stripe_api, proxy, sentry
):
    provoke_sentry_events(stack, api, stripe_api, proxy)
    time.sleep(2.0)  # Sentry's transport and the log files catch up
    patterns = forbidden_patterns()

    service_logs, stand_in_logs = [], []
    for directory in EVIDENCE.log_dirs:
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file() and not path.name.startswith("tables-"):  # table dumps are scanned as tables
                (stand_in_logs if path.name.startswith(STAND_IN_LOGS) else service_logs).append(path)
    log_findings = {}
    lines = 0
    for path in service_logs:
        text = path.read_text(errors="replace")
        lines += text.count("\n")
        found = scan(text, patterns)
        if found:
            log_findings[str(path)] = found
    stand_in_findings = {str(p): f for p in stand_in_logs if (f := scan(p.read_text(errors="replace"), patterns))}

    databases = [*EVIDENCE.databases, {**services.MARIADB, "database": suite.DB_NAME}]
    table_findings, rows = {}, 0
    for params in databases:
        try:
            text = dump_tables(params)
        except Exception as exc:  # a database already dropped is nothing to scan
            table_findings[params["database"]] = [f"not scanned: {type(exc).__name__}"]
            continue
        rows += text.count("\n") + 1
        found = scan(text, patterns)
        if found:
            table_findings[params["database"]] = found
    for dump in EVIDENCE.dumps:
        text = dump.read_text(errors="replace")
        rows += text.count("\n") + 1
        if found := scan(text, patterns):
            table_findings[str(dump)] = found

    sentry_text = sentry.text()
    sentry_findings = scan(sentry_text, patterns)
    logs_text = "\n".join(p.read_text(errors="replace") for p in service_logs[:50])
    report(
        "11",
        "scan for cards, CVCs, client secrets, API keys, Stripe key, webhook secret after every drill",
        secrets_looked_for=len(patterns),
        client_secrets_answered=len(EVIDENCE.client_secrets),
        service_log_files=len(service_logs),
        log_lines=lines,
        stand_in_log_files=len(stand_in_logs),
        databases=len(databases) + len(EVIDENCE.dumps),
        rows=rows,
        sentry_envelopes=len(sentry.envelopes),
        sentry_events=sentry.events(),
        found_in_logs=len(log_findings),
        found_in_tables=len(table_findings),
        found_in_sentry=len(sentry_findings),
        found_in_stand_in_logs=len(stand_in_findings),
    )
    for where, found in {**log_findings, **table_findings, **stand_in_findings}.items():
        print(f"  drill 11 finding: {where}: {found}")
    # Positive controls: the scans read what the service wrote, and Sentry did receive the provoked errors.
    assert "vypi_" in logs_text and rows > 0
    assert sentry.events() >= 1
    assert log_findings == {}
    assert table_findings == {}
    assert sentry_findings == []
