"""Cursor pagination, as every list answers it: `{data, hasMore, nextCursor}` with `startingAfter` / `endingBefore`.

Ids sort by creation (ULIDs). `startingAfter` pages on in the list's order from a record, `endingBefore` back
towards its start; `nextCursor` is what to pass, under the same name, for the page after this one (None: none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peewee import Field, ModelSelect

from domain.errors import OperationError


def paginate(
    query: ModelSelect,
    id_field: Field,
    *,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
    newest_first: bool,
) -> tuple[list[Any], bool, str | None]:
    """(rows in the list's order, whether more lie beyond them in the direction read, the cursor to go on with)."""
    if ending_before:
        # The records just before the cursor in the list's order: read away from it, then put back in order.
        towards = id_field > ending_before if newest_first else id_field < ending_before
        order = id_field.asc() if newest_first else id_field.desc()
        rows = list(query.where(towards).order_by(order).limit(limit + 1))
        has_more = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        return rows, has_more, (rows[0].id if has_more and rows else None)
    if starting_after:
        query = query.where(id_field < starting_after if newest_first else id_field > starting_after)
    rows = list(query.order_by(id_field.desc() if newest_first else id_field.asc()).limit(limit + 1))
    has_more = len(rows) > limit
    rows = rows[:limit]
    return rows, has_more, (rows[-1].id if has_more and rows else None)


def checked_page(
    query: ModelSelect,
    owned: ModelSelect,
    id_field: Field,
    inp: Any,
    *,
    what: str,
    newest_first: bool,
    payloads: Callable[[list[Any]], list[dict[str, Any]]],
) -> dict[str, Any]:
    """`{data, hasMore, nextCursor}`: the page `inp` asks for (its limit and cursor) of `query`, whose cursor must be
    one of the `owned` records (`what` names them in the refusal); `payloads` turns the page's rows into its data."""
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
    return {"data": payloads(rows), "hasMore": has_more, "nextCursor": next_cursor}
