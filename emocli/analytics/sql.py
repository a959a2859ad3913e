"""Safe SQL building blocks: checked column names, bound parameters, a built query.

Nothing the user types reaches SQL as raw text: column names are checked against the table (then quoted
with `quote_ident`), literals travel as named bound parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from emocli.errors import InputError

MAX_LISTED = 30


def listing(names: Sequence[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "") if names else "(none)"


def check_column(name: str, columns: Sequence[str], what: str = "column", where: str = "") -> str:
    """The column itself if the table has it, else one line naming what exists."""
    if name in columns:
        return name
    place = f" in {where}" if where else ""
    raise InputError(f"unknown {what} {name!r}{place}; columns: {listing(columns)}")


class Params:
    """Named bound parameters ($p0, $p1, ...) collected while SQL text is built in any order."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


@dataclass(frozen=True)
class Query:
    sql: str
    params: dict[str, Any]


def where_clause(*conditions: str | None) -> str:
    """`WHERE a AND b` over the conditions given (None and empty ones skipped); empty when none is left."""
    kept = [condition for condition in conditions if condition]
    return "WHERE " + " AND ".join(kept) if kept else ""


def in_list(column_sql: str, values: Sequence[Any], params: Params) -> str:
    """`column IN ($p..)` with bound values; FALSE for no values (SQL has no empty IN list)."""
    if not values:
        return "FALSE"
    return f"{column_sql} IN ({', '.join(params.add(value) for value in values)})"
