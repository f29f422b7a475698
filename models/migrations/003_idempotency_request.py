"""Keep each idempotent request's canonical body, so the janitor can finish one whose worker died."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add idempotency_record.request."""
    migrator.add_fields("idempotency_record", request=pw.TextField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop idempotency_record.request."""
    migrator.remove_fields("idempotency_record", "request")
