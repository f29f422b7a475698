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


def test_every_request_dto_has_a_contract_test_named_after_it():
    """tests/platform/test_contract.py replays each request fixture: a test `test_<dto>_dto…` per request DTO."""
    import ast

    tree = ast.parse((HERE / "test_contract.py").read_text())
    tests = [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    requests = [dto for dto in sorted(DTO_FILES) if fixture(dto)["role"] == "request"]
    assert len(requests) == 16
    missing = [
        dto
        for dto in requests
        if not any(
            name.startswith("test_" + dto.removesuffix(".ts").replace("-", "_").replace(".", "_")) for name in tests
        )
    ]
    assert missing == []


def test_the_repository_readme_summarises_every_request_dto():
    """The README's "As the platform's original service" table names each request DTO (details stay here)."""
    readme = (HERE.parents[1] / "README.md").read_text()
    section = readme.split("### As the platform's original service", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {dto for line in rows for dto in re.findall(r"`([a-z-]+\.dto\.ts)`", line.split("|")[1])}
    assert named == {dto for dto in DTO_FILES if fixture(dto)["role"] == "request"}
    assert "tests/platform/README.md" in section and "What is not supported" in section
