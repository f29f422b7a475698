"""schemathesis over /openapi.json: no 5xx, and every response matches the document."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from registry import OPERATIONS
from tests.conftest import API_KEY

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_route_answers_within_its_documented_responses(api_url):
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    failures: list[str] = []
    exercised = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS, timeout=60)

        try:
            call()
        except Exception as exc:  # one line per failing route, all routes still run
            failures.append(f"{operation.label}: {str(exc).splitlines()[0:6]}")
        exercised += 1
    assert exercised == len(OPERATIONS) + 3  # every operation, /healthz, /readyz and /socket-tokens
    assert failures == []
