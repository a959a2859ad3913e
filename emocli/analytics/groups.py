"""--by terms: a column, or a time bucket of a timestamp column (`month:created_at`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from emocli.analytics.sql import check_column
from emocli.errors import InputError
from emocli.store.core import quote as quote_ident  # identifiers from users are always double-quoted

TIME_BUCKETS = ("hour", "day", "week", "month", "quarter", "year")


@dataclass(frozen=True)
class GroupBy:
    """A --by term: a column, or a time bucket of a timestamp column (`month:created_at`)."""

    column: str
    bucket: str | None = None

    def __post_init__(self) -> None:
        if self.bucket is not None and self.bucket not in TIME_BUCKETS:  # it is spliced into SQL below
            raise InputError(f"unknown time bucket {self.bucket!r}; use one of {', '.join(TIME_BUCKETS)}")

    @property
    def alias(self) -> str:
        return f"{self.bucket}:{self.column}" if self.bucket else self.column

    def sql(self, columns: dict[str, str]) -> str:
        column = quote_ident(self.column)
        if not self.bucket:
            return column
        dtype = columns[self.column].upper()
        value = column if dtype.startswith(("DATE", "TIMESTAMP")) else f"TRY_CAST({column} AS TIMESTAMP)"
        cast = "TIMESTAMP" if self.bucket == "hour" else "DATE"
        return f"CAST(date_trunc('{self.bucket}', {value}) AS {cast})"


def parse_group_by(text: str, columns: dict[str, str]) -> GroupBy:
    """`language` -> column; `month:created_at` -> time bucket; checked against the table's columns."""
    if text in columns:
        return GroupBy(text)
    if ":" in text:
        bucket, _, column = text.partition(":")
        bucket = bucket.strip().lower()
        if bucket not in TIME_BUCKETS:
            raise InputError(f"--by {text}: unknown time bucket {bucket!r}; use one of {', '.join(TIME_BUCKETS)}")
        check_column(column, list(columns), where=f"--by {text}")
        dtype = columns[column].upper()
        if not (dtype.startswith(("DATE", "TIMESTAMP")) or dtype == "VARCHAR"):
            raise InputError(f"--by {text}: column {column!r} is {dtype}, not a date or timestamp")
        return GroupBy(column, bucket)
    return GroupBy(check_column(text, list(columns), where="--by"))


def parse_group_bys(texts: Sequence[str], columns: dict[str, str]) -> tuple[GroupBy, ...]:
    groups = tuple(parse_group_by(text, columns) for text in texts)
    aliases = [group.alias for group in groups]
    if len(set(aliases)) < len(aliases):
        raise InputError(f"--by names the same group twice: {', '.join(aliases)}")
    return groups
