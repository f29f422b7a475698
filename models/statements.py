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

from peewee import AutoField, Database, Expression, Model, ModelSelect, Node, Value, fn

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


@dataclass(frozen=True)
class _Update:
    sql: str
    slots: tuple[tuple[int | None, Any], ...]  # per parameter: the value at this index (set, then where), or a constant
    fields: tuple[Any, ...]  # the peewee field of each set value, to convert it as peewee would


@dataclass(frozen=True)
class IfUnset:
    """An update's value that keeps what the column holds already, if anything (SET c = COALESCE(c, value))."""

    value: Any


_selects: dict[tuple[type, str], _Select] = {}
_inserts: dict[tuple[type, type, tuple[str, ...], int], _Insert] = {}
_updates: dict[tuple[type, str, type, tuple[str, ...]], _Update] = {}


_MARKED = "\x00vyp-statement-parameter-"


def _marker(index: int) -> str:
    # A text no caller sends: where it lands among the built query's parameters is where value `index` goes.
    return f"{_MARKED}{index}\x00"


def _slots(key: str, markers: list[str], params: list[Any]) -> tuple[tuple[int | None, Any], ...]:
    """Per parameter of a statement built with `markers`: the index of the caller's value, or the constant."""
    slots = tuple((markers.index(p), None) if p in markers else (None, p) for p in params)
    if sorted(i for i, _ in slots if i is not None) != list(range(len(markers))):
        raise ValueError(f"statement {key}: each value must appear exactly once among its parameters")
    return slots


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
        slots = _slots(key, markers, params)
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


def update(
    key: str, model: type[Model], values: dict[str, Any], where: Callable[..., list[Expression]], *where_values: Any
) -> int:
    """UPDATE `model` SET `values` WHERE `where(*where_values)`; returns the rows changed. The shape (the conditions
    `where` builds, by `key`, and the columns set) is compiled once. Set values are converted by their fields as
    peewee's update would (JSON, datetimes); the condition's values are sent as they are, so give them as stored.
    `IfUnset(value)` keeps a value the column holds already; any other expression is refused."""
    db = _db()
    if any(isinstance(v, Node) for v in values.values()):
        raise ValueError(f"statement {key}: a value the database computes is part of the SQL; use IfUnset or peewee")
    names = tuple(f"{n}?" if isinstance(v, IfUnset) else n for n, v in values.items())
    shape = (type(db), key, model, names)
    compiled = _updates.get(shape)
    if compiled is None:
        markers = [_marker(i) for i in range(len(names) + len(where_values))]
        # converter=False: the markers reach the parameters untouched (a JSON field would quote them otherwise).
        sets: dict[Any, Node] = {}
        for i, (name, value) in enumerate(values.items()):
            field, slot = model._meta.fields[name], Value(markers[i], converter=False, unpack=False)
            sets[field] = fn.COALESCE(field, slot) if isinstance(value, IfUnset) else slot
        conditions = where(*(Value(m, converter=False) for m in markers[len(names) :]))
        sql, params = model.update(sets).where(*conditions).sql()
        slots = _slots(key, markers, params)
        compiled = _updates.setdefault(shape, _Update(sql, slots, tuple(model._meta.fields[n] for n in values)))
    plain = [v.value if isinstance(v, IfUnset) else v for v in values.values()]
    given = [field.db_value(v) for field, v in zip(compiled.fields, plain, strict=True)] + list(where_values)
    params = [given[i] if i is not None else constant for i, constant in compiled.slots]
    return int(db.rows_affected(db.execute_sql(compiled.sql, params)))


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
