"""Cursor pagination, as every list answers it: `{data, hasMore, nextCursor}` with `startingAfter` / `endingBefore`.

Ids sort by creation (ULIDs). `startingAfter` pages on in the list's order from a record, `endingBefore` back
towards its start; `nextCursor` is what to pass, under the same name, for the page after this one (None: none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from peewee import Field, Model, ModelSelect

from errors import OperationError

_M = TypeVar("_M", bound=Model)


def _cursor(row: Model, id_field: Field[str]) -> str:
    """The row's value of the field the list is ordered by: what a cursor names."""
    value: str = getattr(row, id_field.name)
    return value


def paginate(
    query: ModelSelect[_M],
    id_field: Field[str],
    *,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
    newest_first: bool,
) -> tuple[list[_M], bool, str | None]:
    """(rows in the list's order, whether more lie beyond them in the direction read, the cursor to go on with)."""
    if ending_before:
        # The records just before the cursor in the list's order: read away from it, then put back in order.
        towards = id_field > ending_before if newest_first else id_field < ending_before
        order = id_field.asc() if newest_first else id_field.desc()
        rows = list(query.where(towards).order_by(order).limit(limit + 1))
        has_more = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        return rows, has_more, (_cursor(rows[0], id_field) if has_more and rows else None)
    if starting_after:
        query = query.where(id_field < starting_after if newest_first else id_field > starting_after)
    rows = list(query.order_by(id_field.desc() if newest_first else id_field.asc()).limit(limit + 1))
    has_more = len(rows) > limit
    rows = rows[:limit]
    return rows, has_more, (_cursor(rows[-1], id_field) if has_more and rows else None)


def checked_page(
    query: ModelSelect[_M],
    owned: ModelSelect[_M],
    id_field: Field[str],
    inp: Any,
    *,
    what: str,
    newest_first: bool,
    payloads: Callable[[list[_M]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """`{data, hasMore, nextCursor}`: the page `inp` asks for (its limit and cursor) of `query`, whose cursor must be
    one of the `owned` records (`what` names them in the refusal); `payloads` turns the page's rows into its data
    (by default each row's own `to_payload()`)."""
    cursor = inp.starting_after or inp.ending_before
    if cursor and not owned.where(id_field == cursor).exists():
        field = "startingAfter" if inp.starting_after else "endingBefore"
        raise OperationError(
            "validation_error",
            f"{field} is not {what}.",
            {"fields": [{"field": field, "message": "unknown cursor", "type": "value_error"}]},
        )
    rows, has_more, next_cursor = paginate(
        query,
        id_field,
        limit=inp.limit,
        starting_after=inp.starting_after,
        ending_before=inp.ending_before,
        newest_first=newest_first,
    )
    data = payloads(rows) if payloads else [cast(Any, row).to_payload() for row in rows]
    return {"data": data, "hasMore": has_more, "nextCursor": next_cursor}
