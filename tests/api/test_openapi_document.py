"""The OpenAPI document says what a client generator needs: enums, formats, bounds, descriptions, examples, every
error and header of each route, servers and the build's version."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest

from api.openapi import openapi_document
from api.openapi_docs import EXAMPLES
from domain.schemas import parse_input
from errors import OperationError
from registry import OPERATIONS

DOCUMENT = openapi_document()
SCHEMAS = DOCUMENT["components"]["schemas"]
OPERATION_SPECS = {spec["operationId"]: spec for path in DOCUMENT["paths"].values() for spec in path.values()}
ENUM_FIELDS = {"status", "code", "captureMethod", "reason", "cancellationReason", "operation"}
TIME_FIELDS = {"createdAt", "updatedAt", "captureBefore", "versionDate", "expiresAt", "createdGte", "createdLt"}


def branches(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a property."""
    return [b for b in spec.get("anyOf", [spec]) if b.get("type") != "null"]


def properties() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (schema, name, spec) for schema, body in SCHEMAS.items() for name, spec in body.get("properties", {}).items()
    ]


def test_every_status_code_capture_method_and_reason_is_an_enum():
    found = [(schema, name) for schema, name, spec in properties() if name in ENUM_FIELDS]
    assert len(found) >= 10
    for schema, name, spec in properties():
        # Stripe's own open lists stay strings: the type of an event, the code of a card's failure.
        if name in ENUM_FIELDS and (schema, name) != ("PaymentError", "code"):
            assert all("enum" in b or "const" in b for b in branches(spec)), (schema, name, spec)


def test_every_time_is_a_date_time_and_every_bound_an_integer():
    for schema, name, spec in properties():
        if name in TIME_FIELDS:
            assert all(b.get("format") == "date-time" for b in branches(spec)), (schema, name)

    def bounds(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("minimum", "maximum", "minLength", "maxLength", "minItems"):
                    assert isinstance(item, int), (key, item)
                bounds(item)
        elif isinstance(value, list):
            for item in value:
                bounds(item)

    bounds(DOCUMENT)


def test_every_field_is_described_and_every_operation_has_a_summary_and_a_valid_example():
    assert [(s, n) for s, n, spec in properties() if not spec.get("description")] == []
    for name, operation in OPERATIONS.items():
        spec = OPERATION_SPECS[name]
        assert spec["summary"] and len(spec["description"]) > 40
        assert all(p.get("description") for p in spec["parameters"]), name
        example = EXAMPLES[name]
        shown = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
        shown_params = {p["name"]: p["example"] for p in spec["parameters"] if "example" in p}
        assert shown or shown_params, name
        if name != "process-stripe-webhook":
            parse_input(operation.schema, example)  # the example is a request the service accepts


@pytest.mark.parametrize("name", [n for n in OPERATIONS if n != "process-stripe-webhook"])
def test_a_field_documented_as_nullable_accepts_null(name):
    operation = OPERATIONS[name]
    schema = operation.schema.model_json_schema(by_alias=True)
    for field, spec in schema["properties"].items():
        if any(b.get("type") == "null" for b in spec.get("anyOf", [])):
            try:
                parse_input(operation.schema, {**EXAMPLES[name], field: None})
            except OperationError as exc:
                fields = [f["field"] for f in exc.details.get("fields", [])]
                assert field not in fields, (name, field, exc.details)


def test_every_route_documents_its_errors_and_its_headers():
    for name, operation in OPERATIONS.items():
        responses = OPERATION_SPECS[name]["responses"]
        expected = {"400", "413", "429", "500", "503", "504"} | ({"401"} if name != "process-stripe-webhook" else set())
        if operation.method == "POST":
            expected.add("415")
        assert expected <= set(responses), (name, sorted(responses))
        success = responses[str(operation.success_status)]["headers"]
        assert {"X-Trace-Id", "traceparent", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
            success
        )
        if operation.mutating:
            assert {"Idempotency-Key", "Idempotent-Replayed"} <= set(success), name
        assert ("Location" in success) == (operation.success_status == 201), name
        for status in ("429", "503", "504"):
            assert "Retry-After" in responses[status]["headers"], (name, status)
        assert set(responses["429"]["headers"]) >= {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
        codes = responses["415"]["description"] if "415" in responses else ""
        assert operation.method != "POST" or "unsupported_media_type" in codes


def test_servers_and_the_version_of_the_build_are_given():
    assert DOCUMENT["info"]["version"] == metadata.version("vy-finance-payments")
    assert DOCUMENT["servers"] and DOCUMENT["servers"][0]["url"]


def test_every_authenticated_route_takes_an_api_key_or_an_oauth2_token_with_its_scope():
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["oauth2"]["bearerFormat"] == "JWT" and "payments:refund" in schemes["oauth2"]["description"]
    expected = {"GET": "payments:read", "POST": "payments:write", "DELETE": "payments:write"}
    for name, operation in OPERATIONS.items():
        spec = OPERATION_SPECS[name]
        if name == "process-stripe-webhook":
            assert spec["security"] == [] and "403" not in spec["responses"]
            continue
        scope = "payments:refund" if name == "create-refund" else expected[operation.method]
        assert spec["security"] == [{"bearer": []}, {"oauth2": [scope]}], name
        for status in ("401", "403"):
            headers = spec["responses"][status]["headers"]
            assert "WWW-Authenticate" in headers and "Idempotency-Key" not in headers, (name, status)
        assert "`forbidden`" in spec["responses"]["403"]["description"]
    assert OPERATION_SPECS["create-socket-token"]["security"] == [{"bearer": []}, {"oauth2": ["payments:write"]}]
