"""The REST door: a Flask app factory; `gunicorn -k gevent 'api:create_app()'`."""

from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from typing import Any

from flask import Flask, Response, g, request

from api.errors import error_response, register_error_handlers
from api.limits import install_limits
from api.ops import ops
from api.ops_actions import csrf
from api.ops_auth import operator_of, session_secret
from api.routes import resource_blueprints
from api.socket_tokens import socket_tokens
from api.system import docs, system
from doors.auth import bearer, caller_key_id
from doors.oauth import SCOPE_WRITE, JwtVerifier, KeysUnavailable, TokenRefused, looks_like_jwt, required_scope
from observability import metrics
from observability.logs import log_context, reset_log_context
from registry import OPERATIONS
from settings import Settings, get_settings

access_log = logging.getLogger("api.access")
auth_log = logging.getLogger("api.auth")

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
# W3C Trace Context: version 00, a trace id and a parent span id (never all zeros), the flags.
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
W3C_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
REALM = 'realm="vy-finance-payments"'


def account(response: Response) -> None:
    """One JSON access line and the HTTP metrics per request, by route template (never the raw path's ids)."""
    route = request.url_rule.rule if request.url_rule else "<unmatched>"
    seconds = time.monotonic() - g.get("started", time.monotonic())
    metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    metrics.HTTP_SECONDS.labels(route, request.method).observe(seconds)
    access_log.info(
        "%s %s %d",
        request.method,
        route,
        response.status_code,
        extra={
            "method": request.method,
            "route": route,
            "status": response.status_code,
            "durationMs": round(seconds * 1000, 1),
            "caller": g.get("caller_key_id"),
        },
    )


def incoming_trace() -> tuple[str, str | None]:
    """(trace id, W3C flags) of a request: its X-Trace-Id, else its `traceparent`'s trace id, else a new one (in
    W3C's shape, so that it can be propagated as a traceparent)."""
    presented = request.headers.get("X-Trace-Id", "")
    if TRACE_ID.fullmatch(presented):
        return presented, None
    parent = TRACEPARENT.fullmatch(request.headers.get("traceparent", "").strip())
    if parent and parent.group(1) != "0" * 32 and parent.group(2) != "0" * 16:
        return parent.group(1), parent.group(3)
    return uuid.uuid4().hex, None


def token_scope(endpoint: str) -> str | None:
    """The scope an OAuth2 token needs for a route; None: the route is not a token's (the operator page, and any
    route not listed here: a new one stays API-key-only until it is given a scope)."""
    if endpoint == "socket_tokens.create_socket_token":
        return SCOPE_WRITE  # a customer token can pay: what payments:write already allows
    blueprint, _, name = endpoint.partition(".")
    operation = OPERATIONS.get(name)
    if operation is None or blueprint != operation.path.strip("/").split("/")[0].replace("-", "_"):
        return None
    return required_scope(operation)


def token_caller(verifier: JwtVerifier, token: str, endpoint: str) -> Response | None:
    """Set the caller of a bearer JWT, or answer why not: 401 invalid_token, 403 insufficient_scope (RFC 6750)."""
    try:
        caller = verifier.verify(token)
    except TokenRefused as refused:
        auth_log.info("access token refused: %s", refused)  # the reason only: a token is never logged
        return error_response(
            "unauthorized",
            f"The bearer token is not valid: {refused}.",
            headers={"WWW-Authenticate": f'Bearer {REALM}, error="invalid_token", error_description="{refused}"'},
        )
    except KeysUnavailable as unavailable:
        auth_log.warning("access token not checked: %s", unavailable)
        return error_response(
            "service_unavailable", "The identity provider's keys cannot be read now. Retry the request."
        )
    g.caller_key_id = caller.caller_id  # in the access line of a refusal below too
    needed = token_scope(endpoint)
    if needed is None:
        return error_response("forbidden", "This route takes an API key, not an OAuth2 token.")
    if needed not in caller.scopes:
        return error_response(
            "forbidden",
            f"The token lacks the scope {needed}.",
            {"scope": needed},
            headers={"WWW-Authenticate": f'Bearer {REALM}, error="insufficient_scope", scope="{needed}"'},
        )
    return None


def _ops_operator(settings: Settings, verifier: JwtVerifier | None) -> Response | None:
    """The operator page's caller (an OPS_USERS person or an API key), or a 401 a browser answers with its prompt."""
    header = request.headers.get("Authorization", "")
    operator = operator_of(header, settings)
    if operator is not None:
        g.operator, g.caller_key_id = operator, operator.caller_id
        return None
    token = bearer(header)
    if verifier is not None and looks_like_jwt(token):
        return token_caller(verifier, token, request.endpoint or "")  # 401 invalid_token, or 403: not a token's page
    refused = error_response(
        "unauthorized", "Log in: a name and password of OPS_USERS, or an API key (Authorization: Bearer <key>)."
    )
    # One challenge per header: Chromium offers its Basic prompt only for a header that is Basic's alone.
    refused.headers["WWW-Authenticate"] = f"Basic {REALM}"
    refused.headers.add("WWW-Authenticate", f"Bearer {REALM}")
    return refused


def create_app(settings: Settings | None = None, config: dict[str, Any] | None = None) -> Flask:
    """Build the app from settings; tests pass their own."""
    from models import bind_database
    from observability.logs import configure_logging
    from observability.sentry import init_sentry

    settings = settings or get_settings()
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY, JSON_SORT_KEYS=False, API_KEYS=settings.api_keys)
    # The operator page's session (its CSRF token only: who acts is the Authorization of each request).
    app.config.update(
        SECRET_KEY=session_secret(settings) or None,
        SESSION_COOKIE_NAME="vyp_ops",
        SESSION_COOKIE_PATH="/ops",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by the operator page's forms only: the API takes no cookie
    )
    app.config.update(config or {})
    app.json.sort_keys = False  # type: ignore[attr-defined]
    configure_logging(settings, "web")
    init_sentry(settings, "web")
    bind_database(settings)
    register_error_handlers(app)
    # Built once: a partial or unsafe OAUTH_* configuration stops the door here, never half-checks tokens.
    verifier = JwtVerifier.from_settings(settings)
    app.extensions["vyp_oauth"] = verifier

    @app.before_request
    def _trace_and_authenticate() -> Response | None:
        g.started = time.monotonic()
        g.trace_id, g.trace_flags = incoming_trace()
        g.log_tokens = log_context(trace_id=g.trace_id, door="rest", operation=request.endpoint)
        endpoint = request.endpoint or ""
        if not endpoint or endpoint in PUBLIC_ENDPOINTS or endpoint.startswith(PUBLIC_BLUEPRINTS):
            return None
        if endpoint.startswith("ops."):
            return _ops_operator(settings, verifier)
        g.caller_key_id = caller_key_id(tuple(app.config["API_KEYS"]))
        if g.caller_key_id is None:
            # Not an API key (those are checked first, so a key that happens to have dots still works): a JWT?
            token = bearer(request.headers.get("Authorization", ""))
            if verifier is not None and looks_like_jwt(token):
                return token_caller(verifier, token, endpoint)
            return error_response(
                "unauthorized",
                "A valid API key is required: Authorization: Bearer <key>."
                if verifier is None
                else "A valid API key or OAuth2 access token is required: Authorization: Bearer <key or token>.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    @app.after_request
    def _trace_header(response: Response) -> Response:
        account(response)
        trace_id = g.get("trace_id") or ""
        response.headers["X-Trace-Id"] = trace_id
        if W3C_TRACE_ID.fullmatch(trace_id):
            # This request as a span of the caller's trace (W3C Trace Context).
            response.headers["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-{g.get('trace_flags') or '01'}"
        return response

    @app.teardown_request
    def _forget_trace(_exc: BaseException | None) -> None:
        tokens = g.pop("log_tokens", None)
        if tokens:
            reset_log_context(tokens)

    app.register_blueprint(system)
    app.register_blueprint(docs)
    app.register_blueprint(socket_tokens)
    app.register_blueprint(ops)
    csrf.init_app(app)  # the operator page's forms (WTF_CSRF_CHECK_DEFAULT off: each ops POST calls protect())
    for blueprint in resource_blueprints():
        app.register_blueprint(blueprint)
    # After the authentication hook: the limits count per caller.
    app.extensions["vyp_limiter"] = install_limits(app, settings)
    return app
