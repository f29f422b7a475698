"""Identifiers compared byte for byte on every database: `alice`, `Alice`, `alice ` and `alicé` are four customers.

MariaDB's and MySQL 5.7's default collations ignore case, accents and trailing spaces, and even `utf8mb4_bin` pads
with spaces (TiDB's default too). A VARBINARY column compares bytes, nothing padded, on MariaDB, MySQL 8 and TiDB
alike (one DDL for the three; `utf8mb4_0900_bin` is unknown to MariaDB, `utf8mb4_nopad_bin` to MySQL and TiDB). Its
length is in bytes: four per character (utf8mb4), so every value that fitted still fits. SQLite already compares
bytes (its BINARY collation, trailing spaces included) in TEXT-affinity VARCHAR columns, which it keeps (VARBINARY
would give them NUMERIC affinity: "042" would become 42): nothing to do there.

MariaDB and MySQL change the columns in place (ALTER TABLE … MODIFY). TiDB cannot change a column's character set,
nor a primary key column's type: each table is rebuilt (created anew with the right columns, rows copied, swapped in
by one RENAME) — and the outbox, rebuilt with it, gets AUTO_ID_CACHE=1, so its ids follow commit order across TiDB
servers. Rows written by another process during a rebuild's copy would be lost: on a TiDB holding data it runs only
from `payments migrate --rebuild-tables`, with every other process stopped.
"""

from __future__ import annotations

import re

import peewee as pw
from peewee_migrate import Migrator

BYTES_PER_CHARACTER = 4  # utf8mb4

# Every column holding an identifier: (column, characters it was made for, nullable).
IDENTIFIERS: dict[str, list[tuple[str, int, bool]]] = {
    "customer": [("id", 40, False), ("platform_customer_id", 255, False), ("stripe_customer_id", 255, True)],
    "payment_intent": [
        ("id", 40, False),
        ("customer_id", 255, False),
        ("stripe_customer_id", 255, True),
        ("stripe_payment_intent_id", 255, True),
        ("payment_method_id", 40, True),
        ("order_id", 255, True),
        ("subscription_id", 255, True),
    ],
    "ztracking_payment_intent": [
        ("payment_intent_id", 40, False),
        ("customer_id", 255, False),
        ("stripe_customer_id", 255, True),
        ("stripe_payment_intent_id", 255, True),
        ("payment_method_id", 40, True),
        ("order_id", 255, True),
        ("subscription_id", 255, True),
    ],
    "refund": [("id", 40, False), ("payment_intent_id", 40, False), ("stripe_refund_id", 255, True)],
    "payment_method": [
        ("id", 40, False),
        ("customer_id", 255, False),
        ("stripe_payment_method_id", 255, False),
        ("card_fingerprint", 64, True),
    ],
    "webhook_event": [("id", 255, False), ("object_id", 255, True)],
    "idempotency_record": [
        ("key_hash", 64, False),
        ("owner", 255, False),
        ("execution_token", 32, True),
        ("resource_id", 40, False),
        ("trace_id", 128, False),
    ],
    "payment_attempt": [
        ("id", 40, False),
        ("payment_intent_id", 40, False),
        ("payment_method_id", 40, True),
        ("retry_of", 40, True),
    ],
    "payment_event": [("event_id", 64, False), ("payment_intent_id", 40, False)],
    "outbox_publisher": [("owner", 64, False)],
    "outbox_lease": [("owner", 64, True)],
}
# The outbox: its auto-increment id is the order a shard is published in (and the events' `sequence` header).
OUTBOX = "payment_event"
NEW_SUFFIX = "__binary_ids"
OLD_SUFFIX = "__before_binary_ids"


def dialect(database: pw.Database) -> str:
    """ "sqlite", "tidb", "mariadb" or "mysql": TiDB and MariaDB say who they are in VERSION()."""
    if isinstance(database, pw.SqliteDatabase):
        return "sqlite"
    version = str(database.execute_sql("SELECT VERSION()").fetchone()[0]).lower()
    if "tidb" in version:
        return "tidb"
    return "mariadb" if "mariadb" in version else "mysql"


def binary_type(characters: int) -> str:
    return f"VARBINARY({characters * BYTES_PER_CHARACTER})"


def alter_statement(table: str, columns: list[tuple[str, int, bool]]) -> str:
    """MariaDB and MySQL: every identifier column of `table` to VARBINARY in one ALTER (indexes are kept)."""
    changes = ", ".join(
        f"MODIFY `{column}` {binary_type(characters)} {'NULL' if nullable else 'NOT NULL'}"
        for column, characters, nullable in columns
    )
    return f"ALTER TABLE `{table}` {changes}"


def tidb_create_statement(table: str, show_create: str, columns: list[tuple[str, int, bool]]) -> str:
    """TiDB: `table`'s CREATE TABLE (as SHOW CREATE TABLE gave it) for its rebuilt copy, identifiers VARBINARY; the
    outbox's with AUTO_ID_CACHE=1 (ids handed out in order across TiDB servers, not per server range)."""
    create, found = re.subn(
        rf"^CREATE TABLE `{re.escape(table)}` \(", f"CREATE TABLE `{table}{NEW_SUFFIX}` (", show_create, count=1
    )
    if found != 1:
        raise RuntimeError(f"SHOW CREATE TABLE {table}: not the statement expected")
    for column, characters, _nullable in columns:
        pattern = rf"^(\s*`{re.escape(column)}`\s+)(?:varchar|char|varbinary)\(\d+\)(?:\s+CHARACTER SET \w+)?(?:\s+COLLATE \w+)?"
        create, found = re.subn(pattern, rf"\g<1>{binary_type(characters).lower()}", create, count=1, flags=re.M | re.I)
        if found != 1:
            raise RuntimeError(f"SHOW CREATE TABLE {table}: column {column} is not a character column")
    if table == OUTBOX:
        create = re.sub(r"\s*/\*T!\[auto_id_cache\] AUTO_ID_CACHE=\d+ \*/", "", create)
        create = re.sub(r"\s*AUTO_ID_CACHE=\d+", "", create)
        create = create.rstrip() + " AUTO_ID_CACHE=1"
    return create


def tidb_rebuild_statements(
    table: str, show_create: str, columns: list[tuple[str, int, bool]], names: list[str]
) -> list[str]:
    """TiDB: create the right table beside `table`, copy every row (ids kept), swap the two in one RENAME, drop the
    old one."""
    listed = ", ".join(f"`{name}`" for name in names)
    return [
        f"DROP TABLE IF EXISTS `{table}{NEW_SUFFIX}`",  # a rebuild interrupted before its RENAME left it half-filled
        tidb_create_statement(table, show_create, columns),
        f"INSERT INTO `{table}{NEW_SUFFIX}` ({listed}) SELECT {listed} FROM `{table}`",
        f"RENAME TABLE `{table}` TO `{table}{OLD_SUFFIX}`, `{table}{NEW_SUFFIX}` TO `{table}`",
        f"DROP TABLE `{table}{OLD_SUFFIX}`",
    ]


def _tidb_statements(database: pw.Database) -> list[str]:
    from models.schema import rebuild_tables_allowed

    holding = [t for t in IDENTIFIERS if database.execute_sql(f"SELECT 1 FROM `{t}` LIMIT 1").fetchone()]
    if holding and not rebuild_tables_allowed():
        raise RuntimeError(
            "migration 009 rebuilds tables on TiDB, and these hold rows: "
            f"{', '.join(holding)}. Stop every process of the service, then run `payments migrate --rebuild-tables`."
        )
    statements: list[str] = []
    for table, columns in IDENTIFIERS.items():
        show_create = database.execute_sql(f"SHOW CREATE TABLE `{table}`").fetchone()[1]
        names = [c.name for c in database.get_columns(table)]
        statements += tidb_rebuild_statements(table, show_create, columns, names)
    return statements


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Identifier columns to VARBINARY on MariaDB, MySQL and TiDB (tables rebuilt there); nothing on SQLite."""
    if fake:
        return
    kind = dialect(database)
    if kind == "sqlite":
        return
    if kind == "tidb":
        statements = _tidb_statements(database)
    else:
        statements = [alter_statement(table, columns) for table, columns in IDENTIFIERS.items()]
    for statement in statements:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Back to the database's default collation (MariaDB and MySQL; TiDB's rebuild is not undone)."""
    if fake or dialect(database) not in ("mariadb", "mysql"):
        return
    for table, columns in IDENTIFIERS.items():
        changes = ", ".join(
            f"MODIFY `{column}` VARCHAR({characters}) {'NULL' if nullable else 'NOT NULL'}"
            for column, characters, nullable in columns
        )
        migrator.sql(f"ALTER TABLE `{table}` {changes}")
