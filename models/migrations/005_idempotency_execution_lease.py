"""One execution at a time per claim: the running execution's token and the lease its heartbeat keeps renewing."""

import peewee as pw
from peewee_migrate import Migrator


class DateTime6(pw.DateTimeField):
    """Frozen copy of models.base.UTCDateTimeField: microsecond precision on MySQL/TiDB."""

    field_type = "DATETIME(6)"


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add idempotency_record.execution_token and idempotency_record.execution_until."""
    migrator.add_fields(
        "idempotency_record",
        execution_token=pw.CharField(max_length=32, null=True),
        execution_until=DateTime6(null=True),
    )


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop idempotency_record.execution_token and idempotency_record.execution_until."""
    migrator.remove_fields("idempotency_record", "execution_token", "execution_until")
