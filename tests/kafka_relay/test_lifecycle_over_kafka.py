"""A payment's whole life over Kafka (the scenarios of tests/support/lifecycle.py), as the platform's gateway
sends it: the newer topics, answered with `kafkaResponseStatus`."""

from __future__ import annotations

import pytest

from tests.support.doors import KafkaDoor
from tests.support.lifecycle import SCENARIOS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_the_payment_lifecycle_over_kafka(scenario, gateway, relay, stripe_api, localstripe_url):
    scenario(KafkaDoor(gateway), stripe_api, localstripe_url)
