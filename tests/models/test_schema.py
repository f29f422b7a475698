"""Versioned migrations: applied once, idempotent, and in step with the models."""

from __future__ import annotations

import dataclasses
import importlib.util
import uuid
from types import ModuleType
from typing import Any

import pytest
from peewee import IntegrityError

import models
from models.schema import MIGRATIONS_DIR, migrate, pending_migrations, seed
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
        "009_binary_identifiers",
        "010_checkout_items",
        "011_retention_indexes",
        "012_ops_audit",
        "013_long_payloads",
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


def binary_identifiers() -> ModuleType:
    """Migration 009, loaded as peewee-migrate loads it."""
    spec = importlib.util.spec_from_file_location("m009", MIGRATIONS_DIR / "009_binary_identifiers.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def textual_id_columns(db: Any) -> list[tuple[str, str]]:
    """Columns named as ids (`id`, `…_id`) that compare as text under the database's collation."""
    rows = db.execute_sql(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = DATABASE()"
        " AND data_type IN ('varchar', 'char', 'text') AND (column_name = 'id' OR column_name LIKE '%%\\_id')"
        " AND table_name <> 'migratehistory'"
    ).fetchall()
    return sorted(rows)


@pytest.fixture()
def database_at_008(mariadb: Any) -> Any:
    """A MariaDB database of its own, migrated up to 008 (the schema before identifiers were binary)."""
    from peewee_migrate import Router

    from models.base import make_database
    from tests.support.services import create_mariadb_database, drop_mariadb_database

    name = f"{mariadb.database}_m{uuid.uuid4().hex[:6]}"
    create_mariadb_database(name)
    db = make_database(dataclasses.replace(get_settings(), tidb_database=name))
    try:
        with db.connection_context():
            Router(db, migrate_dir=str(MIGRATIONS_DIR)).run("008_payment_events")
        yield db
    finally:
        db.close_all()
        drop_mariadb_database(name)


def test_the_binary_identifiers_migration_alters_a_database_holding_rows(database_at_008):
    db = database_at_008
    long_accented = "é" * 255  # 255 characters, 510 bytes: what fitted before still fits
    with db.connection_context():
        for customer_id in ("alice", long_accented):
            db.execute_sql(
                "INSERT INTO customer (id, platform_customer_id, created_at, updated_at, stripe_key_step)"
                " VALUES (%s, %s, NOW(), NOW(), 1)",
                (f"cus_{uuid.uuid4().hex[:12]}", customer_id),
            )
        before = "SELECT COUNT(*) FROM customer WHERE platform_customer_id = %s"
        assert db.execute_sql(before, ("Alice",)).fetchone()[0] == 1  # the old collation: Alice is alice

        assert ("customer", "platform_customer_id") in textual_id_columns(db)  # positive control of the check
        assert migrate(db) == [
            "009_binary_identifiers",
            "010_checkout_items",
            "011_retention_indexes",
            "012_ops_audit",
            "013_long_payloads",
        ]
        assert textual_id_columns(db) == []

        assert db.execute_sql(before, ("Alice",)).fetchone()[0] == 0
        assert db.execute_sql(before, ("alice ",)).fetchone()[0] == 0
        assert db.execute_sql(before, ("alicé",)).fetchone()[0] == 0
        assert db.execute_sql(before, ("alice",)).fetchone()[0] == 1  # positive controls: the rows kept their bytes
        assert db.execute_sql(before, (long_accented,)).fetchone()[0] == 1
        kinds = dict(
            db.execute_sql(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND table_name = 'customer'"
            ).fetchall()
        )
        assert kinds["platform_customer_id"] == kinds["id"] == "varbinary"
        insert = (
            "INSERT INTO customer (id, platform_customer_id, created_at, updated_at, stripe_key_step)"
            " VALUES (%s, %s, NOW(), NOW(), 1)"
        )
        db.execute_sql(insert, ("cus_upper", "Alice"))  # another customer now
        with pytest.raises(IntegrityError):  # and the unique index is still there
            db.execute_sql(insert, ("cus_again", "alice"))
        assert migrate(db) == []


def test_every_identifier_column_is_binary_on_mariadb(mariadb):
    module = binary_identifiers()
    with mariadb.connection_context():
        assert module.dialect(mariadb) == "mariadb"
        for table, columns in module.IDENTIFIERS.items():
            kinds = dict(
                mariadb.execute_sql(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = DATABASE() AND table_name = %s",
                    (table,),
                ).fetchall()
            )
            assert {name: kinds[name] for name, _, _ in columns} == {name: "varbinary" for name, _, _ in columns}
            assert kinds.get("created_at", kinds.get("seen_at", kinds.get("until"))) != "varbinary"
        assert textual_id_columns(mariadb) == []  # a column added later that holds an id is binary too


class _Answers:
    """A database that answers VERSION() as TiDB does, and says whether its tables hold rows."""

    def __init__(self, version: str, rows: bool) -> None:
        self.version, self.rows = version, rows

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if sql.startswith("SHOW CREATE TABLE"):
            raise LookupError(sql)  # the rebuild goes on to read each table's definition
        row = (self.version,) if sql == "SELECT VERSION()" else ((1,) if self.rows else None)

        class Cursor:
            def fetchone(self) -> Any:
                return row

        return Cursor()


def test_tidb_is_told_apart_from_mariadb_and_mysql_by_its_version():
    module = binary_identifiers()
    assert module.dialect(_Answers("8.0.11-TiDB-v7.5.1", rows=False)) == "tidb"
    assert module.dialect(_Answers("10.11.19-MariaDB-0+deb12u1", rows=False)) == "mariadb"
    assert module.dialect(_Answers("8.0.36", rows=False)) == "mysql"


def test_on_tidb_tables_holding_rows_are_rebuilt_only_when_the_operator_says_so():
    from models import schema

    module = binary_identifiers()
    with pytest.raises(RuntimeError, match="payments migrate --rebuild-tables"):
        module._tidb_statements(_Answers("8.0.11-TiDB-v7.5.1", rows=True))
    token = schema._rebuild_tables.set(True)  # what `payments migrate --rebuild-tables` sets
    try:
        with pytest.raises(LookupError, match="SHOW CREATE TABLE"):  # positive control: past the guard
            module._tidb_statements(_Answers("8.0.11-TiDB-v7.5.1", rows=True))
    finally:
        schema._rebuild_tables.reset(token)


# SHOW CREATE TABLE as TiDB answers it for the outbox made by migration 008 (TiDB's own comment syntax included).
TIDB_PAYMENT_EVENT = """CREATE TABLE `payment_event` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `event_id` varchar(64) NOT NULL,
  `type` varchar(64) NOT NULL,
  `payment_intent_id` varchar(40) COLLATE utf8mb4_general_ci NOT NULL,
  `shard` int(11) NOT NULL,
  `version` bigint(20) NOT NULL,
  `payload` text NOT NULL,
  `occurred_at` datetime(6) NOT NULL,
  `published_at` datetime(6) DEFAULT NULL,
  `publish_attempts` int(11) NOT NULL DEFAULT '0',
  `last_error` text DEFAULT NULL,
  PRIMARY KEY (`id`) /*T![clustered_index] CLUSTERED */,
  UNIQUE KEY `paymentevent_event_id` (`event_id`),
  KEY `paymentevent_shard_published_at_id` (`shard`,`published_at`,`id`),
  KEY `paymentevent_occurred_at` (`occurred_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin AUTO_INCREMENT=90001"""


def test_outbox_order_on_tidb_the_migration_rebuilds_the_outbox_with_auto_id_cache_1():
    """Point 8: TiDB hands out auto-increment ranges per server unless AUTO_ID_CACHE is 1; the outbox's order (and
    the `sequence` header) is its id, so the migration's DDL for TiDB makes the outbox with AUTO_ID_CACHE=1."""
    module = binary_identifiers()
    names = ["id", "event_id", "type", "payment_intent_id", "shard", "version", "payload", "occurred_at"]
    names += ["published_at", "publish_attempts", "last_error"]
    columns = module.IDENTIFIERS["payment_event"]
    drop, create, copy, swap, drop_old = module.tidb_rebuild_statements(
        "payment_event", TIDB_PAYMENT_EVENT, columns, names
    )
    assert drop == "DROP TABLE IF EXISTS `payment_event__binary_ids`"
    assert create.startswith("CREATE TABLE `payment_event__binary_ids` (\n")
    assert create.endswith("COLLATE=utf8mb4_bin AUTO_INCREMENT=90001 AUTO_ID_CACHE=1")
    assert "  `event_id` varbinary(256) NOT NULL," in create
    assert "  `payment_intent_id` varbinary(160) NOT NULL," in create  # its COLLATE gone with its character set
    assert "  `type` varchar(64) NOT NULL," in create  # not an identifier: untouched
    assert "UNIQUE KEY `paymentevent_event_id` (`event_id`)" in create
    assert "PRIMARY KEY (`id`) /*T![clustered_index] CLUSTERED */" in create
    assert copy == (
        "INSERT INTO `payment_event__binary_ids` (`id`, `event_id`, `type`, `payment_intent_id`, `shard`, `version`,"
        " `payload`, `occurred_at`, `published_at`, `publish_attempts`, `last_error`) SELECT `id`, `event_id`, `type`,"
        " `payment_intent_id`, `shard`, `version`, `payload`, `occurred_at`, `published_at`, `publish_attempts`,"
        " `last_error` FROM `payment_event`"
    )  # every id kept: the order already published stays the order
    assert swap == (
        "RENAME TABLE `payment_event` TO `payment_event__before_binary_ids`,"
        " `payment_event__binary_ids` TO `payment_event`"
    )
    assert drop_old == "DROP TABLE `payment_event__before_binary_ids`"
    # A table whose cache was set already gets it once; other tables keep TiDB's default.
    cached = TIDB_PAYMENT_EVENT + " /*T![auto_id_cache] AUTO_ID_CACHE=1 */"
    assert module.tidb_create_statement("payment_event", cached, columns).count("AUTO_ID_CACHE") == 1
    customer = module.tidb_create_statement(
        "customer",
        "CREATE TABLE `customer` (\n  `id` varchar(40) NOT NULL,\n  `platform_customer_id` varchar(255) NOT NULL,\n"
        "  `stripe_customer_id` varchar(255) DEFAULT NULL,\n  PRIMARY KEY (`id`) /*T![clustered_index] CLUSTERED */\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
        module.IDENTIFIERS["customer"],
    )
    assert "AUTO_ID_CACHE" not in customer
    assert "`platform_customer_id` varbinary(1020) NOT NULL" in customer
    assert "`stripe_customer_id` varbinary(1020) DEFAULT NULL" in customer


def test_a_tidb_table_of_an_unexpected_shape_stops_the_rebuild():
    module = binary_identifiers()
    with pytest.raises(RuntimeError, match="column event_id"):
        module.tidb_create_statement(
            "payment_event",
            TIDB_PAYMENT_EVENT.replace("`event_id` varchar", "`event_id` text"),
            module.IDENTIFIERS["payment_event"],
        )
