"""POST /socket-tokens: a server (API key) gets a short-lived token a browser connects to the Socket.IO door with,
acting for one customer only."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, jsonify

from api.routes import json_body
from domain.schemas import OperationInput, PlatformId, parse_input
from doors.auth import issue_socket_token
from settings import get_settings

socket_tokens = Blueprint("socket_tokens", __name__)


class SocketTokenInput(OperationInput):
    customer_id: PlatformId


@socket_tokens.post("/socket-tokens")
def create_socket_token() -> Response:
    inp = parse_input(SocketTokenInput, json_body())
    settings = get_settings()
    token, expires = issue_socket_token(inp.customer_id, settings)
    expires_at = dt.datetime.fromtimestamp(expires, dt.UTC).isoformat().replace("+00:00", "Z")
    response = jsonify(
        {
            "token": token,
            "customerId": inp.customer_id,
            "expiresAt": expires_at,
            "expiresIn": settings.socket_token_ttl_s,
        }
    )
    response.headers["Cache-Control"] = "no-store"  # a credential: never kept by a proxy or the browser's cache
    return response
