"""The platform's DTO fixtures and their table (tests/platform/README.md) cannot drift apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
DTO_DIR = "libs/ez-utils/src/DTO/domain-finance/vy-finance-payments/"
# Every file of that folder in the platform's repository (read 2026-12-06).
DTO_FILES = {
    "address.dto.ts",
    "capture-payment-intent.dto.ts",
    "confirm-payment-intent.dto.ts",
    "confirmed-payment-intent.dto.ts",
    "create-payment-intent-payload.dto.ts",
    "create-payment-intent.dto.ts",
    "create-payment-method.dto.ts",
    "create-refund.dto.ts",
    "create-stripe-contact.dto.ts",
    "customer-details.dto.ts",
    "delete-payment-method.dto.ts",
    "get-payment-intent-status.dto.ts",
    "get-payment-intent.dto.ts",
    "get-payment-methods.dto.ts",
    "get-payment-refund.dto.ts",
    "get-ztracking-payment-intent.dto.ts",
    "item.dto.ts",
    "payment-attempt.dto.ts",
    "payment-intent-created.dto.ts",
    "payment-intent.dto.ts",
    "payment-method.dto.ts",
    "payment-status-update-payload.dto.ts",
    "payment-status-update.dto.ts",
    "refund.dto.ts",
    "retry-payment-attempt.dto.ts",
    "stripe-webhook.dto.ts",
    "ztracking-payment-intent.dto.ts",
}
ROLES = {"request", "part", "response", "record", "outgoing"}


def table() -> dict[str, dict[str, object]]:
    """The README's rows by DTO file: role, topics named, fields sent."""
    rows: dict[str, dict[str, object]] = {}
    for line in (HERE / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not re.fullmatch(r"`[a-z-]+\.dto\.ts`", cells[0]):
            continue
        dto = cells[0].strip("`")
        assert dto not in rows, f"{dto} has two rows"
        rows[dto] = {
            "role": cells[1],
            "topics": set(re.findall(r"`([a-z-]+)`", cells[2])),
            "fields": re.findall(r"`([A-Za-z]+)`", cells[4]),
        }
    return rows


def fixture(dto: str) -> dict:
    return json.loads((FIXTURES / f"{dto.removesuffix('.ts')}.json").read_text())


def test_the_table_has_one_row_per_dto_file_and_a_fixture_each_and_no_fixture_more():
    rows = table()
    assert set(rows) == DTO_FILES
    assert {p.name for p in FIXTURES.glob("*.json")} == {f"{d.removesuffix('.ts')}.json" for d in DTO_FILES}


@pytest.mark.parametrize("dto", sorted(DTO_FILES))
def test_each_fixture_is_the_json_its_row_describes_with_exactly_the_fields_sent(dto):
    row, body = table()[dto], fixture(dto)
    assert body["dto"] == DTO_DIR + dto
    assert body["role"] == row["role"] and body["role"] in ROLES
    assert body["topic"] in row["topics"]
    fields = row["fields"]
    assert fields and len(fields) == len(set(fields))
    assert set(body["value"]) == set(fields)
    if body["role"] == "request" and "key" in body:  # the platform's keys: <ServiceName>-<epoch ms>-<random>
        assert re.fullmatch(r"[A-Za-z]+-\d{13}-0\.\d+", body["key"])


def test_the_parts_are_the_objects_the_create_request_nests():
    create = fixture("create-payment-intent-payload.dto.ts")["value"]
    assert create["customerDetails"] == fixture("customer-details.dto.ts")["value"]
    assert create["customerDetails"]["address"] == fixture("address.dto.ts")["value"]
    assert create["items"] == [fixture("item.dto.ts")["value"]]


def test_the_table_is_read_as_written():
    """Positive control for the comparisons above: a known row comes out of the README whole."""
    assert table()["create-refund.dto.ts"] == {
        "role": "request",
        "topics": {"create-refund"},
        "fields": ["paymentIntentId", "amountCents", "reason", "traceId"],
    }
