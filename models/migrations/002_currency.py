"""Currency reference table, filled by the seed."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Create the currency table."""

    @migrator.create_model
    class Currency(pw.Model):
        code = pw.CharField(max_length=3, primary_key=True)
        minor_unit_exponent = pw.IntegerField()
        minimum_charge = pw.IntegerField()

        class Meta:
            table_name = "currency"


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop the currency table."""
    migrator.remove_model("currency")
