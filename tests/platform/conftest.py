"""The platform's contract tests use the doors' own fixtures: REST under gunicorn, the relay over Tansu, and the
Socket.IO stack (its own Tansu, API and two Socket.IO processes) for the web app's events."""

from __future__ import annotations

import pytest

from tests.api.conftest import anonymous, api_url, client  # noqa: F401
from tests.kafka_relay import conftest as kafka_conftest
from tests.kafka_relay.conftest import collector, gateway, kafka_broker, relay, relay_process  # noqa: F401
from tests.sockets.conftest import socket_stack  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    # As tests/kafka_relay does, when these tests run without it: the worker replies over this run's Tansu.
    kafka_conftest.pytest_configure(config)
