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
