"""A payment's whole life: the platform's order and subscription ids, capture deadline, cancellation reason and
next action on intents (and their history), and one row per confirm or capture attempt."""

import peewee as pw
from peewee_migrate import Migrator


class DateTime6(pw.DateTimeField):
    """Frozen copy of models.base.UTCDateTimeField: microsecond precision on MySQL/TiDB."""

    field_type = "DATETIME(6)"


def _lifecycle_fields(indexed: bool = False) -> dict[str, pw.Field]:
    return {
        "order_id": pw.CharField(max_length=255, null=True, index=indexed),
        "subscription_id": pw.CharField(max_length=255, null=True),
        "capture_before": DateTime6(null=True),
        "cancellation_reason": pw.CharField(max_length=32, null=True),
        "next_action_type": pw.CharField(max_length=64, null=True),
    }


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add the lifecycle columns to payment_intent and ztracking_payment_intent; create payment_attempt."""
    migrator.add_fields("payment_intent", **_lifecycle_fields(indexed=True))  # the list filters by order
    migrator.add_fields("ztracking_payment_intent", **_lifecycle_fields())

    @migrator.create_model
    class PaymentAttempt(pw.Model):
        id = pw.CharField(max_length=40, primary_key=True)
        payment_intent_id = pw.CharField(max_length=40)
        attempt_number = pw.IntegerField()
        operation = pw.CharField(max_length=16)
        status = pw.CharField(max_length=16)
        payment_method_id = pw.CharField(max_length=40, null=True)
        amount = pw.BigIntegerField(null=True)
        error_code = pw.CharField(max_length=64, null=True)
        error_message = pw.CharField(max_length=500, null=True)
        retry_of = pw.CharField(max_length=40, null=True)
        created_at = DateTime6()
        updated_at = DateTime6()

        class Meta:
            table_name = "payment_attempt"
            indexes = ((("payment_intent_id", "attempt_number"), True),)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop payment_attempt and the lifecycle columns."""
    migrator.remove_model("payment_attempt")
    for table in ("ztracking_payment_intent", "payment_intent"):
        migrator.remove_fields(table, *_lifecycle_fields())
