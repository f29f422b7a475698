"""The operator page's audit trail (`ops_audit`): one row per support action."""

import peewee as pw
from peewee_migrate import Migrator

BYTES_PER_CHARACTER = 4  # utf8mb4, as 009


class DateTime6(pw.DateTimeField):
    """Frozen copy of models.base.UTCDateTimeField: microsecond precision on MySQL/TiDB."""

    field_type = "DATETIME(6)"


class Binary(pw.CharField):
    """An identifier compared byte for byte (009's rule for every `id`/`…_id` column): VARBINARY, its length in
    bytes."""

    field_type = "VARBINARY"

    def __init__(self, characters: int, **kwargs):
        super().__init__(max_length=characters * BYTES_PER_CHARACTER, **kwargs)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Create ops_audit."""
    sqlite = isinstance(database, pw.SqliteDatabase)  # SQLite already compares bytes in VARCHAR (see 009)

    def identifier(characters: int, **kwargs):
        return pw.CharField(max_length=characters, **kwargs) if sqlite else Binary(characters, **kwargs)

    @migrator.create_model
    class OpsAudit(pw.Model):
        id = pw.AutoField()
        at = DateTime6()
        operator = pw.CharField(max_length=80)
        action = pw.CharField(max_length=40)
        target = pw.CharField(max_length=255)
        payment_intent_id = identifier(40, null=True, index=True)
        params = pw.TextField()
        idempotency_key = identifier(255, unique=True)
        outcome = pw.CharField(max_length=40)
        answer = pw.TextField(null=True)
        trace_id = identifier(128)
        finished_at = DateTime6(null=True)

        class Meta:
            table_name = "ops_audit"
            indexes = ((("at",), False),)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop the audit trail."""
    migrator.remove_model("ops_audit")
