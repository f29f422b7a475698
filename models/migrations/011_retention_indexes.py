"""Indexes retention reads by (domain/retention.py): intents by creation time, webhook events by arrival, and
idempotency records by state (the few unresolved ones, among a day of resolved ones). Each is built online by
MariaDB, MySQL and TiDB: no table is locked for writes while it is made."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add the three indexes."""
    migrator.add_index("payment_intent", "created_at")
    migrator.add_index("webhook_event", "received_at")
    migrator.add_index("idempotency_record", "state")


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop them."""
    migrator.drop_index("idempotency_record", "state")
    migrator.drop_index("webhook_event", "received_at")
    migrator.drop_index("payment_intent", "created_at")
