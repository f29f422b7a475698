"""A payment's whole life over REST (the scenarios of tests/support/lifecycle.py), through a real worker."""

from __future__ import annotations

import pytest

from tests.support.doors import RestDoor
from tests.support.lifecycle import SCENARIOS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.__name__ for s in SCENARIOS])
def test_the_payment_lifecycle_over_rest(scenario, client, stripe_api, localstripe_url):
    scenario(RestDoor(client), stripe_api, localstripe_url)


def test_confirm_capture_and_cancel_take_no_body_and_answer_their_routes(client, stripe_api, localstripe_url):
    from tests.support.lifecycle import _authorised

    intent = _authorised(RestDoor(client), stripe_api, 900)
    captured = client.post(f"/payment-intents/{intent['id']}/capture")  # no body at all
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded", captured.text
    assert captured.headers["Idempotency-Key"]  # made by the server, as for every POST without one
