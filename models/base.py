"""The database binding: one DatabaseProxy, bound at process start from settings."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from typing import Any, TypeVar

from peewee import (
    BigIntegerField,
    Database,
    DatabaseProxy,
    DateTimeField,
    Model,
    ModelSelect,
    SqliteDatabase,
    TextField,
)
from playhouse.pool import PooledDatabase, PooledMySQLDatabase

from settings import Settings

database = DatabaseProxy()

_M = TypeVar("_M", bound=Model)
# A pooled connection idle longer than this is pinged before use (the server may have closed it meanwhile).
PING_AFTER_IDLE_S = 1.0
SERVER_STATUS_IN_TRANS = 0x0001  # the MySQL protocol's status flag: a transaction is open on this connection


def utcnow() -> dt.datetime:
    """Naive UTC with microseconds: every stored time is UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as the payloads carry times."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UTCDateTimeField(DateTimeField):
    """DATETIME(6): history ordering needs sub-second precision on MySQL/TiDB."""

    field_type = "DATETIME(6)"


class MoneyField(BigIntegerField):
    """An amount in the currency's minor unit (integer cents), as Stripe."""


class LongTextField(TextField):
    """Up to 16 MB on MariaDB, MySQL and TiDB (MEDIUMTEXT: TEXT stops at 64 KB), TEXT on SQLite: for values whose
    size the service accepts beyond 64 KB (a Stripe event of up to 1 MB)."""

    field_type = "MEDIUMTEXT"


class JSONField(TextField):
    """JSON in a TEXT column, portable across SQLite, MariaDB and TiDB."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        if value is None:
            return None
        return json.loads(value)


def camel_case(column: str) -> str:
    """A column's name as the payloads spell it: `payment_intent_id` → `paymentIntentId`."""
    first, *rest = column.split("_")
    return first + "".join(word.capitalize() for word in rest)


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False

    def columns_as_payload(self, *columns: str) -> dict[str, Any]:
        """These columns under their payload names (camelCase), in this order; times as `iso` gives them."""
        values = ((column, getattr(self, column)) for column in columns)
        return {camel_case(c): iso(v) if isinstance(v, dt.datetime) else v for c, v in values}


class PaymentsMySQLDatabase(PooledMySQLDatabase):
    """peewee's MySQL pool without two round trips per use: it pings every connection it hands out and rolls back
    every connection handed back (pymysql has no `in_transaction`), even when nothing is open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._returned_at: dict[int, float] = {}

    def _is_closed(self, conn: Any) -> bool:
        returned = self._returned_at.pop(self.conn_key(conn), None)  # handed out now, or dropped if closed
        if getattr(conn, "_sock", True) is None:
            return True  # closed on our side (pymysql closes the socket on any failure mid-read)
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE_S:
            # In use a moment ago: alive. If the server went away since, the query fails and the task retries.
            return False
        return bool(super()._is_closed(conn))

    def _can_reuse(self, conn: Any) -> bool:
        status = getattr(conn, "server_status", None)
        if status is None or status & SERVER_STATUS_IN_TRANS:
            reusable = bool(super()._can_reuse(conn))  # a transaction left open: rolled back
        else:
            reusable = True  # every reply says whether a transaction is open: none is
        if reusable:
            self._returned_at[self.conn_key(conn)] = time.monotonic()
        return reusable

    def _close_raw(self, conn: Any) -> Any:
        self._returned_at.pop(self.conn_key(conn), None)
        return super()._close_raw(conn)


def make_database(settings: Settings) -> Database:
    """SQLite for the zero-setup run; pooled MySQL protocol (TiDB, MariaDB) otherwise."""
    if settings.uses_sqlite:
        os.makedirs(os.path.dirname(os.path.abspath(settings.sqlite_path)), exist_ok=True)
        return SqliteDatabase(
            settings.sqlite_path,
            pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": "normal"},
            timeout=30,
        )
    return PaymentsMySQLDatabase(
        settings.tidb_database,
        max_connections=settings.db_pool_size,
        stale_timeout=300,  # recycle before TiDB's / MariaDB's idle cut-off
        # Wait this long for a free pooled connection: less than a claim's execution lease (15 s), so a task
        # starved of connections retries before a redelivery could think it dead.
        timeout=10,
        **mysql_connect_params(settings),
    )


def mysql_connect_params(settings: Settings) -> dict[str, Any]:
    """pymysql arguments, with TLS that verifies both certificate and host name when enabled."""
    params: dict[str, Any] = {
        "host": settings.tidb_host,
        "port": settings.tidb_port,
        "user": settings.tidb_user,
        "password": settings.tidb_password,
        "charset": "utf8mb4",
        "connect_timeout": 10,
        "read_timeout": 60,
        "write_timeout": 60,
    }
    if not settings.tidb_enable_ssl:
        # PyMySQL otherwise builds a default TLS context per connection ("preferred" mode): ~18 ms CPU and ~0.85 MB.
        params["ssl_disabled"] = True
    else:
        params["ssl_verify_cert"] = True
        params["ssl_verify_identity"] = True
        # Without a CA path the system trust store verifies (TiDB Cloud's CA is public).
        params["ssl_ca"] = settings.tidb_ca_path or None
    return params


def bind_database(settings: Settings) -> Database:
    """Bind the proxy once per process (web, worker, relay, CLI, tests)."""
    db = make_database(settings)
    database.initialize(db)
    return db


def discard_connection() -> None:
    """Close this greenlet's connection for good, never back to the pool: a kill (a time limit's gevent.Timeout)
    may have landed mid-read and left part of a reply on it for the next user to read as its own."""
    db = database.obj
    if db is None or db.is_closed():
        return
    with contextlib.suppress(Exception):
        if isinstance(db, PooledDatabase):
            db.manual_close()
        else:
            db.close()


@contextlib.contextmanager
def unit_of_work() -> Iterator[None]:
    """A connection for one unit of work (task, request, batch), returned to the pool after it."""
    db = database.obj
    opened = db.connect(reuse_if_open=True)
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, Exception):
            discard_connection()  # killed, not failed: the connection's state is unknown
        raise
    finally:
        if opened and not db.in_transaction():
            db.close()


def write_transaction() -> Any:
    """A transaction that takes SQLite's write lock up front (it has no row locks)."""
    db = database.obj
    if isinstance(db, SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


def for_update(query: ModelSelect[_M]) -> ModelSelect[_M]:
    """`SELECT … FOR UPDATE` where the database has row locks; SQLite serialises writers instead."""
    if isinstance(database.obj, SqliteDatabase):
        return query
    return query.for_update()


def database_ready() -> bool:
    """`SELECT 1` on a fresh unit of work: what /readyz asks of the database."""
    with unit_of_work():
        database.obj.execute_sql("SELECT 1").fetchone()
    return True
