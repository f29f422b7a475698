"""The platform's checkout: the cart an intent was priced from (on the intent and its history) and where its receipt
goes (on the intent only: an e-mail address is kept once, where the receipt needs it)."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add items to payment_intent and ztracking_payment_intent, receipt_email to payment_intent."""
    migrator.add_fields(
        "payment_intent", items=pw.TextField(null=True), receipt_email=pw.CharField(max_length=254, null=True)
    )
    migrator.add_fields("ztracking_payment_intent", items=pw.TextField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop them again."""
    migrator.remove_fields("ztracking_payment_intent", "items")
    migrator.remove_fields("payment_intent", "items", "receipt_email")
