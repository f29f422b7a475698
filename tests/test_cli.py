"""The operator's `payments` command: clear output and exit codes."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
from click.testing import CliRunner

import settings
from cli import main
from tests.conftest import WEBHOOK_SECRET
from tests.domain.helpers import call
from tests.support.webhooks import sign

pytestmark = pytest.mark.integration


@pytest.fixture()
def run(mariadb, localstripe_url):
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    yield invoke
    logging.getLogger().handlers[:], level = saved
    logging.getLogger().setLevel(level)


def test_help_explains_every_command(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("migrate", "history", "webhooks", "check"):
        assert command in result.output


def test_migrate_is_idempotent(run):
    result = run("migrate", "--seed")
    assert result.exit_code == 0
    assert "none (schema is current)" in result.output and "currencies seeded" in result.output


def test_history_prints_every_snapshot_and_unknown_is_exit_1(run, mariadb):
    intent = call(
        "create-payment-intent", {"customerId": f"cli-{uuid.uuid4().hex[:6]}", "amount": 500, "currency": "usd"}
    )
    result = run("history", intent["id"])
    assert result.exit_code == 0 and "create-payment-intent" in result.output
    as_json = run("history", intent["id"], "--json")
    assert json.loads(as_json.stdout)[0]["ztrackingVersion"] == 1
    missing = run("history", "vypi_unknown")
    assert missing.exit_code == 1 and "not_found" in missing.output


def test_webhook_replay_applies_a_stored_event_again_harmlessly(run, mariadb):
    intent = call(
        "create-payment-intent", {"customerId": f"cli-{uuid.uuid4().hex[:6]}", "amount": 500, "currency": "usd"}
    )
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = json.dumps(
        {
            "id": event_id,
            "type": "payment_intent.canceled",
            "created": int(time.time()),
            "data": {"object": {"id": intent["stripePaymentIntentId"], "status": "canceled"}},
        }
    )
    call("process-stripe-webhook", {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)})
    result = run("webhooks", "replay", event_id)
    assert result.exit_code == 0 and f"{event_id}: processed" in result.output
    history = call("get-ztracking-payment-intent", {"paymentIntentId": intent["id"]})
    assert [h["status"] for h in history] == ["requires_payment_method", "canceled"]  # the replay changed nothing
    assert run("webhooks", "replay", "evt_unknown").exit_code == 1


def test_check_reports_each_dependency_and_fails_when_one_is_down(run, worker, monkeypatch):
    monkeypatch.setenv("KAFKA_BROKER", "127.0.0.1:9")  # nothing listens there
    settings.reload_settings()
    try:
        result = run("check")
    finally:
        monkeypatch.undo()
        settings.reload_settings()
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert all(" ok" in lines[name] for name in ("database", "broker", "worker", "stripe")), result.output
    assert "FAILED" in lines["kafka"]
    assert result.exit_code == 1


def test_janitor_and_sweep_commands_run_a_pass(run):
    result = run("janitor")
    assert result.exit_code == 0 and "expired keys purged:" in result.output
    swept = run("webhooks", "sweep", "--hours", "0.01")
    assert swept.exit_code == 0 and "events recovered:" in swept.output


def test_version_and_every_operator_command_are_listed(run):
    assert run("--version").output.startswith("payments, version ")
    listed = run("--help").output
    for command in ("claims", "dlq", "events", "janitor", "retention", "webhooks"):
        assert command in listed
    assert "unmatched" in run("webhooks", "--help").output and "replay" in run("dlq", "--help").output


def test_claims_stuck_lists_a_claim_nobody_finishes_and_exits_1(run, mariadb):
    from domain import idempotency
    from models import IdempotencyRecord, unit_of_work, utcnow

    with unit_of_work():
        stuck = idempotency.claim(
            "create-refund", f"cli:{uuid.uuid4()}", {"amount": 1}, "gone-worker", "refund", 3600, "trace-cli"
        )
        idempotency.release(stuck)  # given back after its retries: the janitor's to settle
        IdempotencyRecord.update(updated_at=utcnow()).where(IdempotencyRecord.id == stuck.record_id).execute()
    result = run("claims", "stuck")
    assert result.exit_code == 1 and stuck.resource_id in result.output and "create-refund" in result.output
    found = json.loads(run("claims", "stuck", "--json").stdout)
    assert found["abandoned"]["count"] >= 1
    assert stuck.resource_id in {row["resourceId"] for row in found["abandoned"]["rows"]}


def test_webhooks_unmatched_lists_events_that_name_a_payment_not_known_here(run, mariadb):
    event_id = f"evt_{uuid.uuid4().hex}"
    payload = json.dumps(
        {
            "id": event_id,
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "data": {
                "object": {
                    "id": f"pi_{uuid.uuid4().hex[:14]}",
                    "object": "payment_intent",
                    "status": "succeeded",
                    "metadata": {"vy_payment_intent_id": f"vypi_{uuid.uuid4().hex[:26]}"},
                }
            },
        }
    )
    call("process-stripe-webhook", {"payload": payload, "signature": sign(payload, WEBHOOK_SECRET)})
    listed = run("webhooks", "unmatched", "--json")
    assert listed.exit_code == 0
    assert event_id in {row["eventId"] for row in json.loads(listed.stdout)}
    assert event_id in run("webhooks", "unmatched").output


def test_webhooks_sweep_shows_its_progress(run):
    swept = run("webhooks", "sweep", "--hours", "0.01")
    assert swept.exit_code == 0 and "Stripe's events checked" in swept.stderr


def test_retention_dry_run_says_per_kind_and_month_what_it_would_move_and_moves_nothing(run, mariadb, tmp_path):
    import datetime as dt

    from models import PaymentIntent, unit_of_work
    from tests.domain.test_retention import MARCH, OLD_AGE, make_intent

    with unit_of_work():
        aged = [make_intent(created) for created in MARCH[:2]]
        kept = make_intent(MARCH[2], refunds=((dt.datetime(2023, 5, 1), "succeeded"),))
    try:
        result = run("retention", "--dry-run", "--as-of", "2024-06-15T12:00")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == "retention as of 2024-06-15 12:00 UTC (dry run: nothing moved)"
        assert lines[1].startswith("payment intents created before 2023-06-15: 2 would be archived to ")
        assert lines[1].endswith("payment-intents (2023-03: 2)")
        assert lines[2] == "  with 4 history snapshots, 2 attempts, 0 refunds"
        assert lines[3] == "  aged payment intents kept: 1 with a refund younger than 5 years"
        assert lines[4] == "webhook events received before 2024-03-17: 0 would be deleted"
        with unit_of_work():
            assert PaymentIntent.select().where(PaymentIntent.id.in_([*aged, kept])).count() == 3  # nothing moved
        as_json = json.loads(run("retention", "--dry-run", "--as-of", "2024-06-15T12:00", "--json").stdout)
        assert as_json["intentsByMonth"] == {"2023-03": 2} and as_json["dryRun"] is True
    finally:
        from models import PaymentAttempt, Refund, ZtrackingPaymentIntent

        with unit_of_work():  # the rows made here: never seen by another test of the session's database
            for column in (
                ZtrackingPaymentIntent.version_date,
                PaymentAttempt.created_at,
                Refund.created_at,
                PaymentIntent.created_at,
            ):
                column.model.delete().where(column < OLD_AGE).execute()


def test_retention_refuses_to_run_while_off_and_as_of_without_dry_run(run):
    off = run("retention")
    assert off.exit_code == 1 and "skipped: RETENTION_ENABLED is off" in off.stdout
    assert run("retention", "--as-of", "2024-01-01").exit_code == 2  # a usage error: only a dry run looks ahead
