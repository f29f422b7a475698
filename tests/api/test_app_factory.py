"""The app factory, in process: routes from the registry; internal failures as JSON, never a traceback."""

from __future__ import annotations

import dataclasses

import pytest
from kombu.exceptions import OperationalError

from api import create_app
from registry import OPERATIONS
from settings import get_settings


@pytest.fixture()
def app():
    return create_app(dataclasses.replace(get_settings(), api_keys=("k1",)))


def test_every_registry_operation_has_its_route(app):
    rules = {(rule.endpoint.split(".")[-1], method) for rule in app.url_map.iter_rules() for method in rule.methods}
    for operation in OPERATIONS.values():
        assert (operation.name, operation.method) in rules


def test_an_unexpected_failure_is_500_internal_error_without_traceback(app, monkeypatch):
    import api.routes

    def explode(*args, **kwargs):
        raise RuntimeError("boom at /secret/path.py line 1")

    monkeypatch.setattr(api.routes, "run_operation", explode)
    response = app.test_client().get("/refunds/vyre_x", headers={"Authorization": "Bearer k1"})
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert "boom" not in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)


def test_a_broker_that_refuses_the_request_is_503(app, monkeypatch):
    from tasks.operations import TASKS

    def refuse(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(TASKS["get-refund"], "apply_async", refuse)
    response = app.test_client().get("/refunds/vyre_x", headers={"Authorization": "Bearer k1"})
    assert response.status_code == 503 and response.json["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) > 0  # when to ask again


def test_no_result_in_time_for_a_read_is_504_timeout_with_retry_after(app, monkeypatch):
    import api.routes
    from errors import OperationError

    def late(*args, **kwargs):
        raise OperationError("timeout", "No result in time. Retry the request.")

    monkeypatch.setattr(api.routes, "run_operation", late)
    response = app.test_client().get("/refunds/vyre_x", headers={"Authorization": "Bearer k1"})
    assert response.status_code == 504 and response.json["error"]["code"] == "timeout"
    assert int(response.headers["Retry-After"]) > 0


def test_without_api_keys_every_protected_route_is_401():
    app = create_app(dataclasses.replace(get_settings(), api_keys=()))
    response = app.test_client().get("/refunds/vyre_x", headers={"Authorization": "Bearer "})
    assert response.status_code == 401
