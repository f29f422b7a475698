"""One blueprint per resource; each route reads its input, calls `run_operation`, shapes the output."""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from pydantic.alias_generators import to_camel

from api.errors import error_response, from_envelope_error
from domain.answers import widen_envelope
from domain.schemas import parse_input
from domain.webhook_signature import verify_webhook
from domain.webhooks import TOLERANCE_S
from doors.dispatch import run_operation
from doors.envelope import IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY
from doors.platform import take_idempotency_key, translate
from errors import OperationError
from observability import metrics
from registry import OPERATIONS, Operation
from settings import get_settings


@functools.cache
def _int_fields(operation: Operation) -> frozenset[str]:
    """Integer fields of an operation's schema, worked out once (building the schema costs per request)."""
    schema = operation.schema.model_json_schema(by_alias=True)["properties"]
    return frozenset(name for name, spec in schema.items() if spec.get("type") == "integer")


def _query_payload(operation: Operation) -> dict[str, Any]:
    """Query parameters as the schema's fields; integers parsed, repeats refused."""
    payload: dict[str, Any] = {}
    ints = _int_fields(operation)
    for name in request.args:
        values = request.args.getlist(name)
        if len(values) > 1:
            raise OperationError("validation_error", f"Query parameter {name!r} is given more than once.")
        value: Any = values[0]
        if name in ints and re.fullmatch(r"-?\d{1,12}", value):
            value = int(value)
        payload[name] = value
    return payload


def json_body() -> dict[str, Any]:
    if not request.get_data(cache=True):
        return {}  # a POST whose fields are all optional (confirm, capture, cancel, retry) may come without a body
    if not request.is_json:
        raise OperationError("unsupported_media_type", "The body must be JSON (Content-Type: application/json).")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nesting deeper than the parser's stack: bad input like any other
        body = None
    if not isinstance(body, dict):
        raise OperationError("validation_error", "The body must be a JSON object.")
    return body


def read_input(operation: Operation, path_params: dict[str, str]) -> dict[str, Any]:
    if operation.method == "POST":
        if request.args:
            raise OperationError("validation_error", "This route takes no query parameters.")
        payload = json_body()
    else:
        payload = _query_payload(operation)
    payload.update({to_camel(name): value for name, value in path_params.items()})
    return payload


def idempotency_keys(operation: Operation, body_key: Any = None) -> tuple[str | None, str | None]:
    """(the caller's key, the scoped key the task uses); the server makes one when the caller did not.

    The header, else the platform's `idempotencyKey` body field (the same key: both given must agree)."""
    if not operation.mutating:
        return None, None
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if body_key is not None:
        if not isinstance(body_key, str) or not IDEMPOTENCY_KEY.fullmatch(body_key):
            raise OperationError("validation_error", "idempotencyKey must be 1 to 255 printable ASCII characters.")
        if key is not None and key != body_key:
            raise OperationError("validation_error", "Idempotency-Key and idempotencyKey differ: send one key.")
        key = body_key
    if key is None:
        key = f"auto-{uuid.uuid4()}"
    elif not IDEMPOTENCY_KEY.fullmatch(key):
        raise OperationError("validation_error", "Idempotency-Key must be 1 to 255 printable ASCII characters.")
    return key, f"rest:{g.caller_key_id}:{key}"


def _refuse_item_prices(operation: Operation, payload: dict[str, Any]) -> None:
    # The cart's prices are the caller's word: a deployment whose REST callers are not trusted to price can refuse.
    if operation.name == "create-payment-intent" and "items" in payload and not get_settings().rest_item_priced_creates:
        raise OperationError(
            "validation_error",
            "This door does not take creates priced by items (REST_ITEM_PRICED_CREATES=false): send amount.",
            {"fields": [{"field": "items", "message": "not accepted here", "type": "not_accepted"}]},
        )


def respond(operation: Operation, envelope: dict[str, Any], caller_key: str | None) -> Response:
    envelope = widen_envelope(operation.name, envelope)  # the platform's field names beside ours
    if "error" in envelope:
        error = envelope["error"]
        if error.get("code") == "outcome_unknown" and caller_key:
            # The one thing the caller must do next: retry with this very key.
            error = {**error, "details": {**(error.get("details") or {}), "idempotencyKey": caller_key}}
        response = from_envelope_error(error)
    else:
        response = jsonify(envelope["response"])
        response.status_code = operation.success_status
        if operation.location and response.status_code == 201:
            response.headers["Location"] = operation.location.format(id=envelope["response"]["id"])
    if envelope.get("replayed"):
        response.headers["Idempotent-Replayed"] = "true"  # as Stripe says it: this is the first request's answer
    if caller_key:
        response.headers[IDEMPOTENCY_HEADER] = caller_key
    return response


def operation_view(operation: Operation) -> Callable[..., Response]:
    def view(**path_params: str) -> Response:
        payload = read_input(operation, path_params)
        body_key = take_idempotency_key(payload) if operation.mutating else None
        _refuse_item_prices(operation, payload)
        payload = translate(operation.name, payload, get_settings())  # the platform's dialect, read into ours
        parse_input(operation.schema, payload)  # refuse bad input here, before anything is queued
        caller_key, scoped_key = idempotency_keys(operation, body_key)
        with metrics.track(operation.name, "rest", "door"):
            envelope = run_operation(
                operation, payload, trace_id=g.trace_id, idempotency_key=scoped_key, caller_key=caller_key
            )
        return respond(operation, envelope, caller_key)

    view.__name__ = operation.name.replace("-", "_")
    return view


def stripe_webhook() -> Response:
    """Stripe's raw bytes and signature go to the task untouched; 2xx once the event is stored."""
    operation = OPERATIONS["process-stripe-webhook"]
    signature = request.headers.get("Stripe-Signature")
    raw = request.get_data(cache=False)
    try:
        payload = raw.decode("utf-8")
    except UnicodeDecodeError:
        payload = None
    if not signature or not payload:
        return error_response("invalid_signature", "A signed Stripe event is required.")
    body = {"payload": payload, "signature": signature}
    parse_input(operation.schema, body)
    # Checked here, before anything is queued: a forged flood costs a hash each, never a task (the worker checks
    # again: it trusts no body it did not verify).
    verify_webhook(payload, signature, tolerance_s=TOLERANCE_S)
    with metrics.track(operation.name, "rest", "door"):
        envelope = run_operation(operation, body, trace_id=g.trace_id, idempotency_key=None, received_at=time.time())
    return respond(operation, envelope, None)


def resource_blueprints() -> list[Blueprint]:
    """Blueprints built from the registry: adding an operation there adds its route here."""
    blueprints: dict[str, Blueprint] = {}
    for operation in OPERATIONS.values():
        resource = operation.path.strip("/").split("/")[0]
        blueprint = blueprints.setdefault(resource, Blueprint(resource.replace("-", "_"), __name__))
        view = stripe_webhook if operation.name == "process-stripe-webhook" else operation_view(operation)
        blueprint.add_url_rule(operation.path, endpoint=operation.name, view_func=view, methods=[operation.method])
    return list(blueprints.values())
