"""Every DuckDB connection emocli opens: one writer (the store), read-only ones for the readers.

A reader can neither write nor touch other files (no COPY TO, ATTACH, read_csv): the analytics commands run
SQL built from user input, and `emocli query` runs the user's SQL as given. Whatever goes wrong while
opening (no such file, a lock held by another process, not a DuckDB file) is one StoreError line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from emocli.errors import StoreError

if TYPE_CHECKING:
    import duckdb

MISSING_HINT = "create it with `emocli tag FILE`"


def open_for_write(path: Path | str, *, memory_limit: str) -> "duckdb.DuckDBPyConnection":
    """Open (or create) the database for writing; DuckDB allows one writing process at a time."""
    import duckdb

    path = Path(path)
    if path.parent and not path.parent.exists():
        raise StoreError(f"{path}: the folder {path.parent} does not exist")
    try:
        return duckdb.connect(str(path), config={"memory_limit": memory_limit})
    except duckdb.Error as exc:
        raise _open_error(path, exc) from None


def open_read_only(path: Path | str, *, missing_hint: str = MISSING_HINT) -> "duckdb.DuckDBPyConnection":
    """Open an existing database read-only, with no access to other files."""
    import duckdb

    path = Path(path).expanduser()
    if not path.is_file():
        nearby = sorted(p.name for p in path.resolve().parent.glob("*.duckdb")) if path.parent.is_dir() else []
        hint = missing_hint + (f"; databases here: {', '.join(nearby)}" if nearby else "")
        raise StoreError(f"database not found: {path}", hint=hint)
    try:
        con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
        con.execute("SET enable_progress_bar = false")  # our output is the table, not DuckDB's bar
        return con
    except duckdb.Error as exc:
        raise _open_error(path, exc) from None


def _open_error(path: Path, exc: Exception) -> StoreError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "lock" in first.lower() or "conflicting" in first.lower():
        return StoreError(f"{path}: the database is locked by another process",
                          hint="wait for the other emocli/duckdb process (`emocli tag`?) to finish, "
                               "or use another --db")
    return StoreError(f"{path}: cannot open the database: {first}")
