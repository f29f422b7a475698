"""The Kafka door's tests: their fixtures are the run's shared stacks (tests/support/stacks.py)."""

from __future__ import annotations

import pytest

from tests.support.stacks import (  # noqa: F401  (imported by the tests of this folder)
    KAFKA_ENV,
    NEST_REPLY_TOPICS,
    PARTITIONS,
    RELAY_METRICS_PORT,
    fresh_outbox_reader,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The crash tests leave hundreds of intents at localstripe, past the first page of its list that
    # tests/tasks counts intents with: they run last, whatever else the session holds.
    crash = [item for item in items if item.nodeid.startswith("tests/kafka_relay/test_crash_recovery.py")]
    items[:] = [item for item in items if item not in crash] + crash
