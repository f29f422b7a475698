"""Keep what the first attempt sent to Stripe, so every retry under the same key sends exactly that."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add idempotency_record.stripe_params."""
    migrator.add_fields("idempotency_record", stripe_params=pw.TextField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop idempotency_record.stripe_params."""
    migrator.remove_fields("idempotency_record", "stripe_params")
