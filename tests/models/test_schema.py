"""Versioned migrations: applied once, idempotent, and in step with the models."""

from __future__ import annotations

import dataclasses

import pytest

import models
from models.schema import migrate, pending_migrations, seed
from settings import get_settings

pytestmark = pytest.mark.integration


def test_migrations_apply_once_then_are_a_no_op_on_sqlite(tmp_path):
    settings = dataclasses.replace(get_settings(), tidb_host="", sqlite_path=str(tmp_path / "s.sqlite3"))
    from models.base import make_database

    db = make_database(settings)
    assert migrate(db) == [
        "001_initial",
        "002_currency",
        "003_idempotency_request",
        "004_idempotency_stripe_params",
        "005_idempotency_execution_lease",
        "006_stripe_call_tracking",
        "007_payment_lifecycle",
        "008_payment_events",
    ]
    assert migrate(db) == []
    assert pending_migrations(db) == []


def test_the_migrated_schema_has_every_model_column(domain_db):
    for model in models.ALL_MODELS:
        table = model._meta.table_name
        columns = {c.name for c in domain_db.get_columns(table)}
        assert columns == set(model._meta.columns), table


def test_seed_fills_the_currencies_once(domain_db):
    from models.currencies import Currency

    seed(domain_db)
    seed(domain_db)
    assert Currency.get_by_id("jpy").minor_unit_exponent == 0
    assert Currency.get_by_id("kwd").minor_unit_exponent == 3
    assert Currency.get_by_id("usd").minimum_charge == 50
    assert Currency.select().count() > 100
