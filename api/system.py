"""Health, readiness and the API's own documentation: no authentication."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from flask_swagger_ui import get_swaggerui_blueprint

from api.openapi import openapi_document

log = logging.getLogger("api")

system = Blueprint("system", __name__)
docs = get_swaggerui_blueprint(
    "/docs", "/openapi.json", config={"app_name": "vy-finance-payments"}, blueprint_name="docs"
)


@system.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@system.get("/readyz")
def readyz() -> Response:
    from models.base import database_ready
    from tasks.app import broker_ready, workers_ready

    checks = {"database": database_ready, "broker": broker_ready, "worker": workers_ready}
    results = {}
    for name, check in checks.items():
        try:
            results[name] = "ok" if check() else "unavailable"
        except Exception as exc:
            log.warning("readiness: %s unavailable (%s)", name, type(exc).__name__)
            results[name] = "unavailable"
    response = jsonify(results)
    response.status_code = 200 if all(v == "ok" for v in results.values()) else 503
    return response


@system.get("/metrics")
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from operations.metrics import api_registry

    return Response(generate_latest(api_registry()), mimetype=CONTENT_TYPE_LATEST)


@system.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_document())


@system.get("/asyncapi.json")
def asyncapi_json() -> Response:
    """The payment events this service publishes on Kafka."""
    from api.asyncapi import asyncapi_document

    return jsonify(asyncapi_document())
