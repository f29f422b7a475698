"""The REST door: a Flask app factory; `gunicorn -k gevent 'api:create_app()'`."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Flask, Response, g, request

from api.auth import caller_key_id
from api.errors import error_response, register_error_handlers
from api.routes import resource_blueprints
from api.socket_tokens import socket_tokens
from api.system import docs, system
from settings import Settings, get_settings

MAX_BODY = 1024 * 1024
PUBLIC_ENDPOINTS = {
    "webhooks.process-stripe-webhook",
    "system.healthz",
    "system.readyz",
    "system.openapi_json",
    "system.asyncapi_json",
    "system.metrics",
}
PUBLIC_BLUEPRINTS = ("docs.",)
TRACE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_app(settings: Settings | None = None, config: dict[str, Any] | None = None) -> Flask:
    """Build the app from settings; tests pass their own."""
    from logging_setup import configure_logging
    from models import bind_database
    from observability.sentry import init_sentry

    settings = settings or get_settings()
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, JSON_SORT_KEYS=False, API_KEYS=settings.api_keys)
    app.config.update(config or {})
    app.json.sort_keys = False  # type: ignore[attr-defined]
    configure_logging(settings, "web")
    init_sentry(settings, "web")
    bind_database(settings)
    register_error_handlers(app)

    @app.before_request
    def _trace_and_authenticate() -> Response | None:
        presented = request.headers.get("X-Trace-Id", "")
        g.trace_id = presented if TRACE_ID.fullmatch(presented) else str(uuid.uuid4())
        endpoint = request.endpoint or ""
        if not endpoint or endpoint in PUBLIC_ENDPOINTS or endpoint.startswith(PUBLIC_BLUEPRINTS):
            return None
        g.caller_key_id = caller_key_id(tuple(app.config["API_KEYS"]))
        if g.caller_key_id is None:
            return error_response(
                "unauthorized",
                "A valid API key is required: Authorization: Bearer <key>.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    @app.after_request
    def _trace_header(response: Response) -> Response:
        response.headers["X-Trace-Id"] = g.get("trace_id") or ""
        return response

    app.register_blueprint(system)
    app.register_blueprint(docs)
    app.register_blueprint(socket_tokens)
    for blueprint in resource_blueprints():
        app.register_blueprint(blueprint)
    return app
