"""Stripe calls tracked on their claim (started, unknown outcome, key step); refunds polled with backoff; the
Stripe Customer's key step."""

import peewee as pw
from peewee_migrate import Migrator


class DateTime6(pw.DateTimeField):
    """Frozen copy of models.base.UTCDateTimeField: microsecond precision on MySQL/TiDB."""

    field_type = "DATETIME(6)"


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add the claim's Stripe call state, the refund's next check and the customer's key step."""
    migrator.add_fields(
        "idempotency_record",
        stripe_started_at=DateTime6(null=True),
        stripe_unknown=pw.CharField(max_length=32, null=True),
        stripe_step=pw.IntegerField(default=1),
    )
    migrator.add_fields("refund", next_check_at=DateTime6(null=True), checks=pw.IntegerField(default=0))
    migrator.add_fields("customer", stripe_key_step=pw.IntegerField(default=1))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop what migrate added."""
    migrator.remove_fields("customer", "stripe_key_step")
    migrator.remove_fields("refund", "next_check_at", "checks")
    migrator.remove_fields("idempotency_record", "stripe_started_at", "stripe_unknown", "stripe_step")
