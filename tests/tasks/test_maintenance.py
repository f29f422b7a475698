"""The periodic passes (Procfile `beat`) each run their domain pass in a unit of work and log what it did."""

from __future__ import annotations

import logging

from tasks import maintenance


def test_each_periodic_pass_returns_its_domain_result_and_logs_it(domain_db, caplog):
    caplog.set_level(logging.INFO, logger="tasks.maintenance")
    assert maintenance.prune_events() == 0  # nothing published yet: nothing to prune
    counts = maintenance.run_janitor()
    assert isinstance(counts, dict)
    recovered = maintenance.sweep_stripe_events()
    messages = [record.getMessage() for record in caplog.records if record.name == "tasks.maintenance"]
    assert messages == ["events pruned: 0", f"janitor pass: {counts}", f"sweeper pass: {recovered} events recovered"]


def test_retention_is_scheduled_daily_on_the_payments_queue_and_its_pass_logs_its_report(domain_db, caplog):
    import celeryconfig

    entry = celeryconfig.beat_schedule["retention"]
    assert entry["task"] == maintenance.RETENTION and entry["schedule"].hour == {3} and entry["schedule"].minute == {17}
    assert celeryconfig.task_routes[maintenance.RETENTION]["queue"] == "payments"
    caplog.set_level(logging.INFO, logger="tasks.maintenance")
    report = maintenance.run_retention()  # RETENTION_ENABLED is off by default: it says so and moves nothing
    assert report["skipped"] and "RETENTION_ENABLED" in report["skipped"]
    assert [r.getMessage() for r in caplog.records if r.name == "tasks.maintenance"] == [f"retention pass: {report}"]
