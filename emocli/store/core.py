"""The DuckDB store: scores tables, the `runs` table, and progress checkpoints.

Every chunk of scored rows is appended through Arrow and committed in the same transaction as the
checkpoint that says how far into its file the run has got. A process killed at any moment therefore
leaves either the chunk and its checkpoint, or neither: re-running resumes after the last checkpoint,
and no row is lost or written twice.

Tables (the contract with the analytics commands):
- `<table>` (default `scores`): id, kept input columns, one FLOAT per label, labels VARCHAR[], n_tokens,
  truncated, run_id. A model with other labels adds its columns; other runs' rows hold NULL there.
- `runs`: one row per run (model, commit, labels, thresholds, inputs, counts, status).
- `emocli_meta`: the schema version. `emocli_progress`: rows done per (run, input file).
- `emocli_migrations`: the schema migrations applied, with when (store/schema.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from emocli import __version__
from emocli.errors import StoreError
from emocli.store.connect import open_for_write
from emocli.store.runs import RUNS_TABLE, RUN_STATUSES, RunRecord
from emocli.store.schema import META_TABLE, MIGRATIONS_TABLE, PROGRESS_TABLE, migrate

if TYPE_CHECKING:
    import pyarrow as pa

RESERVED_TABLES = {META_TABLE, PROGRESS_TABLE, RUNS_TABLE, MIGRATIONS_TABLE}
MEMORY_LIMIT = "64MB"  # DuckDB caches the blocks it writes up to this: at 256MB peak RSS grew with the table (benchmarks/store_rss.py)
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_NEW_RUN_COLUMNS = ("run_id, table_name, model, repo, \"commit\", labels, thresholds, task, inputs, text_col, "
                    "started_at, finished_at, rows_written, rows_skipped, rows_truncated, status, emocli_version, "
                    "model_languages, language_source")


def check_table_name(name: str) -> str:
    """A user-given table name: a plain SQL identifier that is not one of the store's own tables."""
    if not _IDENTIFIER.match(name or ""):
        raise StoreError(f"--table {name!r}: use letters, digits and _ (not starting with a digit)")
    if name.lower() in RESERVED_TABLES:
        raise StoreError(f"--table {name!r}: that name is reserved for emocli's own bookkeeping")
    return name


def quote(identifier: str) -> str:
    """Quote any column name (labels and input columns may hold spaces or quotes)."""
    return '"' + str(identifier).replace('"', '""') + '"'


@dataclass(frozen=True)
class FileProgress:
    rows_done: int
    done: bool


@dataclass(frozen=True)
class ChunkCounts:
    written: int
    skipped: int
    truncated: int


def _sql(con, sql: str, params: list | None = None) -> list[tuple]:
    """Run one statement to completion (DuckDB 2 refuses new work while a result is unfetched)."""
    return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()


def _one(con, sql: str, params: list | None = None) -> tuple | None:
    rows = _sql(con, sql, params)
    return rows[0] if rows else None


def _unregister(con, name: str) -> None:
    try:
        con.unregister(name)
    except Exception:  # noqa: BLE001 - an aborted transaction refuses it; the view dies with the connection
        pass


class Store:
    """One DuckDB file, opened for writing (DuckDB allows one writing process at a time)."""

    def __init__(self, path: Path | str, *, memory_limit: str = MEMORY_LIMIT):
        self.path = Path(path)
        self.con = open_for_write(self.path, memory_limit=memory_limit)
        try:
            self.migrations_applied = migrate(self.con, self.path)
        except BaseException:
            self.close()  # release the write lock: nothing can be written to a store we cannot migrate
            raise

    # -- life cycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        try:
            self.con.close()
        except Exception:  # noqa: BLE001 - closing a broken connection must not hide the original error
            pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------------------------
    def table_exists(self, table: str) -> bool:
        row = _one(self.con, "SELECT count(*) FROM information_schema.tables "
                             "WHERE table_schema = 'main' AND table_name = ?", [table])
        return bool(row[0])

    def table_columns(self, table: str) -> dict[str, str]:
        rows = _sql(self.con, "SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [table])
        return dict(rows)

    def run_status(self, run_id: str) -> str | None:
        row = _one(self.con, f"SELECT status FROM {RUNS_TABLE} WHERE run_id = ?", [run_id])
        return row[0] if row else None

    def progress(self, run_id: str) -> dict[str, FileProgress]:
        rows = _sql(self.con, f"SELECT file, rows_done, done FROM {PROGRESS_TABLE} WHERE run_id = ?", [run_id])
        return {file: FileProgress(int(done_rows), bool(done)) for file, done_rows, done in rows}

    def run_counts(self, run_id: str) -> ChunkCounts:
        row = _one(self.con, f"SELECT rows_written, rows_skipped, rows_truncated FROM {RUNS_TABLE} "
                             "WHERE run_id = ?", [run_id])
        return ChunkCounts(*(int(v or 0) for v in row)) if row else ChunkCounts(0, 0, 0)

    # -- writes ----------------------------------------------------------------------------------------------
    def drop_table(self, table: str) -> None:
        """--overwrite: the table, its runs and their checkpoints go, in one transaction."""
        self._in_transaction(lambda con: (
            _sql(con, f"DROP TABLE IF EXISTS {quote(table)}"),
            _sql(con, f"DELETE FROM {PROGRESS_TABLE} WHERE run_id IN "
                        f"(SELECT run_id FROM {RUNS_TABLE} WHERE table_name = ?)", [table]),
            _sql(con, f"DELETE FROM {RUNS_TABLE} WHERE table_name = ?", [table]),
        ))

    def begin_run(self, run: RunRecord, files: Iterable[tuple[str, str]]) -> dict[str, FileProgress]:
        """Create the run (status running) with a checkpoint per (file key, path), or reopen it to resume."""
        files = list(files)

        def create(con):
            if self.run_status(run.run_id) is None:
                _sql(
                    con, f"INSERT INTO {RUNS_TABLE} ({_NEW_RUN_COLUMNS}) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 0, 0, 'running', ?, ?, ?)",
                    [run.run_id, run.table_name, run.model, run.repo, run.commit, list(run.labels),
                     list(run.thresholds), run.task, list(run.inputs), run.text_col, datetime.now(), __version__,
                     list(run.model_languages) if run.model_languages is not None else None, run.language_source],
                )
            else:
                _sql(con, f"UPDATE {RUNS_TABLE} SET status = 'running', finished_at = NULL WHERE run_id = ?",
                            [run.run_id])
            known = self.progress(run.run_id)
            for key, path in files:
                if key not in known:
                    _sql(con, f"INSERT INTO {PROGRESS_TABLE} VALUES (?, ?, ?, 0, false, ?)",
                                [run.run_id, key, path, datetime.now()])

        self._in_transaction(create)
        return self.progress(run.run_id)

    def append_chunk(self, table: str, run_id: str, file_key: str, rows: "pa.Table | pa.RecordBatch",
                     rows_done: int, counts: ChunkCounts, *, file_done: bool = False) -> None:
        """Insert rows and move the file's checkpoint to rows_done, atomically."""
        def write(con):
            self._ensure_columns(table, rows.schema)
            _sql(con, f"INSERT INTO {quote(table)} BY NAME SELECT * FROM _emocli_chunk")
            _sql(con, f"UPDATE {PROGRESS_TABLE} SET rows_done = ?, done = ?, updated_at = ? "
                        "WHERE run_id = ? AND file = ?", [rows_done, file_done, datetime.now(), run_id, file_key])
            _sql(con, f"UPDATE {RUNS_TABLE} SET rows_written = rows_written + ?, rows_skipped = rows_skipped + ?, "
                        "rows_truncated = rows_truncated + ? WHERE run_id = ?",
                        [counts.written, counts.skipped, counts.truncated, run_id])

        self.con.register("_emocli_chunk", rows)
        try:
            self._in_transaction(write)
        finally:
            _unregister(self.con, "_emocli_chunk")

    def record_engine(self, run_id: str, engine: str, workers: int, address: str | None) -> None:
        """Where this invocation of the run scores (a resumed run records its latest engine)."""
        _sql(self.con, f"UPDATE {RUNS_TABLE} SET engine = ?, workers = ?, address = ? WHERE run_id = ?",
                         [engine, workers, address, run_id])

    def finish_file(self, run_id: str, file_key: str) -> None:
        _sql(self.con, f"UPDATE {PROGRESS_TABLE} SET done = true, updated_at = ? WHERE run_id = ? AND file = ?",
                         [datetime.now(), run_id, file_key])

    def finish_run(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(status)
        finished = datetime.now() if status == "done" else None
        _sql(self.con, f"UPDATE {RUNS_TABLE} SET status = ?, finished_at = ? WHERE run_id = ?",
                         [status, finished, run_id])

    def _ensure_columns(self, table: str, schema: "pa.Schema") -> None:
        """Create the table from the first chunk's schema, or add the columns a new run brings."""
        con = self.con
        if not self.table_exists(table):
            empty = schema.empty_table()
            con.register("_emocli_schema", empty)
            try:
                _sql(con, f"CREATE TABLE {quote(table)} AS SELECT * FROM _emocli_schema")
            finally:
                _unregister(con, "_emocli_schema")
            return
        existing = {name.lower(): kind for name, kind in self.table_columns(table).items()}
        con.register("_emocli_schema", schema.empty_table())
        try:
            incoming = _sql(con, "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM _emocli_schema)")
        finally:
            _unregister(con, "_emocli_schema")
        for name, kind in incoming:
            if name.lower() not in existing:
                _sql(con, f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {kind}")
            elif kind == "VARCHAR" and existing[name.lower()] in _INTEGER_TYPES:
                # a later corpus brings text ids where an earlier one had numbers: widen to text, losing nothing
                _sql(con, f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(name)} TYPE VARCHAR")

    def _in_transaction(self, work) -> None:
        con = self.con
        con.begin()
        try:
            work(con)
        except BaseException:
            try:
                con.rollback()
            except Exception:  # noqa: BLE001 - the connection may already be gone; nothing was committed
                pass
            raise
        con.commit()
