"""Stripe events of up to 1 MB (the webhook door's limit): MEDIUMTEXT on MariaDB, MySQL and TiDB, where TEXT refused
one past 64 KB (`Data too long`, an internal error); SQLite's TEXT has no such limit."""

import peewee as pw
from peewee_migrate import Migrator

LONG = {"webhook_event": (("payload", "NOT NULL"),)}


def _alter(migrator: Migrator, column_type: str) -> None:
    for table, columns in LONG.items():
        changes = ", ".join(f"MODIFY `{name}` {column_type} {null}" for name, null in columns)
        migrator.sql(f"ALTER TABLE `{table}` {changes}")


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """webhook_event.payload TEXT to MEDIUMTEXT; nothing on SQLite."""
    if fake or isinstance(database, pw.SqliteDatabase):
        return
    _alter(migrator, "MEDIUMTEXT")


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Back to TEXT (a value past 64 KB makes it fail: nothing is cut)."""
    if fake or isinstance(database, pw.SqliteDatabase):
        return
    _alter(migrator, "TEXT")
