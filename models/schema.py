"""Versioned migrations (peewee-migrate), applied idempotently at start, and the seed."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from peewee import Database, SqliteDatabase
from peewee_migrate import Router

from models import currency_data as currencies
from models.base import database
from models.currencies import Currency

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LOCK_NAME = "vy_finance_payments_migrate"

log = logging.getLogger(__name__)
# A migration that rebuilds tables holding rows (009 on TiDB) runs only when the operator said the writers are stopped.
_rebuild_tables = contextvars.ContextVar("rebuild_tables", default=False)


def rebuild_tables_allowed() -> bool:
    """Whether this migration run may rebuild tables that hold rows (`payments migrate --rebuild-tables`)."""
    return _rebuild_tables.get()


@contextlib.contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    """Only one process migrates at a time (web, workers and relay start together)."""
    if isinstance(db, SqliteDatabase):
        lock_path = f"{os.path.abspath(db.database)}.migrate.lock"
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    acquired = db.execute_sql("SELECT GET_LOCK(%s, 120)", (LOCK_NAME,)).fetchone()[0]
    if acquired != 1:
        raise RuntimeError("could not take the migration lock within 120 s")
    try:
        yield
    finally:
        db.execute_sql("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))


def pending_migrations(db: Database | None = None) -> list[str]:
    """Names of the migrations not applied yet."""
    router = Router(db or database.obj, migrate_dir=str(MIGRATIONS_DIR), logger=log)
    return list(router.diff)


def migrate(db: Database | None = None, *, rebuild_tables: bool = False) -> list[str]:
    """Apply every pending migration; a no-op when the schema is current. Returns what ran. `rebuild_tables`: every
    other process is stopped, so a migration may copy a table holding rows into a new one."""
    db = db or database.obj
    token = _rebuild_tables.set(rebuild_tables)
    try:
        with db.connection_context(), _migration_lock(db):
            router = Router(db, migrate_dir=str(MIGRATIONS_DIR), logger=log)
            todo = list(router.diff)
            if todo:
                router.run()
            return todo
    finally:
        _rebuild_tables.reset(token)


def seed(db: Database | None = None) -> int:
    """Fill the reference data the service needs (currencies); nothing fake. Idempotent."""
    db = db or database.obj
    rows = [
        {
            "code": code,
            "minor_unit_exponent": currencies.exponent(code),
            "minimum_charge": currencies.minimum_charge(code),
        }
        for code in sorted(currencies.SUPPORTED)
    ]
    with db.connection_context(), db.atomic():
        Currency.insert_many(rows).on_conflict(
            # SQLite names the conflicting key; MySQL/TiDB infer it (ON DUPLICATE KEY UPDATE).
            conflict_target=[Currency.code] if isinstance(db, SqliteDatabase) else None,
            preserve=[Currency.minor_unit_exponent, Currency.minimum_charge],
        ).execute()
    return len(rows)


def prepare_database(auto_seed: bool) -> None:
    """What every process does at start: migrate, and seed when AUTO_SEED is on."""
    migrate()
    if auto_seed:
        seed()
