"""The payment events outbox and its publishers' shard leases."""

import peewee as pw
from peewee_migrate import Migrator


class DateTime6(pw.DateTimeField):
    """Frozen copy of models.base.UTCDateTimeField: microsecond precision on MySQL/TiDB."""

    field_type = "DATETIME(6)"


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Create payment_event, outbox_publisher and outbox_lease."""

    @migrator.create_model
    class PaymentEvent(pw.Model):
        id = pw.AutoField()
        event_id = pw.CharField(max_length=64, unique=True)
        type = pw.CharField(max_length=64)
        payment_intent_id = pw.CharField(max_length=40)
        shard = pw.IntegerField()
        version = pw.BigIntegerField()
        payload = pw.TextField()
        occurred_at = DateTime6()
        published_at = DateTime6(null=True)
        publish_attempts = pw.IntegerField(default=0)
        last_error = pw.TextField(null=True)

        class Meta:
            table_name = "payment_event"
            indexes = ((("shard", "published_at", "id"), False), (("occurred_at",), False))

    @migrator.create_model
    class OutboxPublisher(pw.Model):
        owner = pw.CharField(max_length=64, primary_key=True)
        seen_at = DateTime6()

        class Meta:
            table_name = "outbox_publisher"

    @migrator.create_model
    class OutboxLease(pw.Model):
        shard = pw.IntegerField(primary_key=True)
        owner = pw.CharField(max_length=64, null=True)
        until = DateTime6(null=True)

        class Meta:
            table_name = "outbox_lease"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop the outbox."""
    migrator.remove_model("outbox_lease")
    migrator.remove_model("outbox_publisher")
    migrator.remove_model("payment_event")
