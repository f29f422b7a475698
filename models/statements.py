"""The hot paths' statements, their SQL built once per database kind instead of on every call.

Peewee builds a query's SQL text anew each time it runs: walking the expression tree costs 0.1 to 0.2 ms of CPU per
statement (0.2 ms for a select of an intent's 22 columns), as much as the rest of a read's work in the worker
(bench/FINDINGS.md). A statement of a fixed shape — the same columns, the same conditions — has the same SQL
every time; only its parameters change. These helpers build each shape's SQL once with peewee itself, then send
that text with the new parameters, and read rows back through the same peewee row wrapper as the query would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from peewee import AutoField, Database, Model, ModelSelect

from models.base import database

_M = TypeVar("_M", bound=Model)


@dataclass(frozen=True)
class _Select:
    query: ModelSelect[Any]  # built once with markers: its row wrapper reads every later result
    sql: str
    slots: tuple[tuple[int | None, Any], ...]  # per parameter: the caller's value at this index, or a constant


@dataclass(frozen=True)
class _Insert:
    sql: str
    fields: tuple[Any, ...]  # the peewee fields, in the order of the statement's columns


_selects: dict[tuple[type, str], _Select] = {}
_inserts: dict[tuple[type, type, tuple[str, ...], int], _Insert] = {}


_MARKED = "\x00vyp-statement-parameter-"


def _marker(index: int) -> str:
    # A text no caller sends: where it lands among the built query's parameters is where value `index` goes.
    return f"{_MARKED}{index}\x00"


def _db() -> Database:
    return database.obj


def select(key: str, build: Callable[..., ModelSelect[_M]], *values: str) -> list[_M]:
    """The rows of `build(*values)`, a select whose shape depends only on `key`; values are text (ids) compared
    with `==` or `IN`, used as they are (no field conversion)."""
    db = _db()
    compiled = _selects.get((type(db), key))
    if compiled is None:
        markers = [_marker(i) for i in range(len(values))]
        query = build(*markers)
        sql, params = query.sql()
        slots = tuple((markers.index(p), None) if p in markers else (None, p) for p in params)
        if sorted(i for i, _ in slots if i is not None) != list(range(len(values))):
            raise ValueError(f"statement {key}: each value must appear exactly once among its parameters")
        if any(isinstance(c, str) and _MARKED in c for i, c in slots if i is None):
            # A value used transformed (`contains`, a prefix…) would be kept as the first call's constant.
            raise ValueError(f"statement {key}: a value may only be compared as it is")
        compiled = _selects.setdefault((type(db), key), _Select(query, sql, slots))
    params = [values[i] if i is not None else constant for i, constant in compiled.slots]
    cursor = db.execute_sql(compiled.sql, params)
    return list(compiled.query._get_cursor_wrapper(cursor))  # type: ignore[attr-defined]  # peewee's own reader


def first(key: str, build: Callable[..., ModelSelect[_M]], *values: str) -> _M | None:
    """The first row of `select(...)` (build the query with its own LIMIT 1), or None."""
    rows = select(key, build, *values)
    return rows[0] if rows else None


def insert(instances: list[_M]) -> None:
    """INSERT new rows of one model, as `save(force_insert=True)` would (defaults and conversions included), in one
    statement; each instance's auto-increment id is set as peewee's insert would set it."""
    if not instances:
        return
    model = type(instances[0])
    meta = model._meta
    names = tuple(f.name for f in meta.sorted_fields if f.name in instances[0].__data__)
    db = _db()
    shape = (type(db), model, names, len(instances))
    compiled = _inserts.get(shape)
    if compiled is None:
        rows = [{name: instances[0].__data__[name] for name in names}] * len(instances)
        sql, _ = model.insert_many(rows).sql()
        compiled = _inserts.setdefault(shape, _Insert(sql, tuple(meta.fields[name] for name in names)))
    params: list[Any] = []
    for instance in instances:
        if tuple(f.name for f in meta.sorted_fields if f.name in instance.__data__) != names:
            raise ValueError("insert: every row of one statement sets the same columns")
        params.extend(field.db_value(instance.__data__[field.name]) for field in compiled.fields)
    cursor = db.execute_sql(compiled.sql, params)
    primary = meta.primary_key
    if len(instances) == 1 and isinstance(primary, AutoField) and primary.name not in names:
        instances[0].__data__[primary.name] = db.last_insert_id(cursor)
    for instance in instances:
        instance._dirty.clear()  # type: ignore[attr-defined]  # as peewee's save() leaves it
