"""The store queries of `explain --from-store`: the top texts per group for a label, the model that scored them.
"""

from __future__ import annotations

from pathlib import Path

from emocli.errors import StoreError
from emocli.explain.corpus import CorpusConfig, StoreText
from emocli.store.connect import open_read_only
from emocli.store.core import quote


def _table_columns(con, table: str) -> dict[str, str]:
    rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
    return {name: kind for name, kind in rows}


def _require_column(columns: dict[str, str], name: str, db: Path, table: str, hint: str | None = None) -> None:
    if name not in columns:
        raise StoreError(f"{db}: table {table!r} has no column {name!r}", hint=hint)


def open_store(db: Path):
    return open_read_only(db, missing_hint="tag texts first: emocli tag FILE --keep-text")


def top_texts(db: Path, corpus: CorpusConfig) -> list[StoreText]:
    """The k highest-scoring texts for the label in each group of `by` (or overall), read from the store."""
    table, label, by, run = corpus.table, corpus.label, corpus.by, corpus.run
    with open_store(db) as con:
        columns = _table_columns(con, table)
        if not columns:
            raise StoreError(f"{db}: no table {table!r}", hint="pass --table, or tag texts first with `emocli tag`")
        _require_column(columns, label, db, table, hint="no run in this store scored that label")
        _require_column(columns, "text", db, table, hint="re-tag with `emocli tag --keep-text` to keep the texts")
        if by is not None:
            _require_column(columns, by, db, table)
        if run is not None:
            _require_column(columns, "run_id", db, table)
            if not con.execute(f"SELECT 1 FROM {quote(table)} WHERE run_id = ? LIMIT 1", [run]).fetchone():
                raise StoreError(f"{db}: no rows of run {run!r} in table {table!r}")
        key = quote(corpus.id_col) if corpus.id_col in columns else "NULL"
        group = quote(by) if by is not None else "NULL"
        score = quote(label)
        run_filter = "AND run_id = ?" if run is not None else ""
        sql = (f"SELECT {group} AS grp, CAST({key} AS VARCHAR) AS key, text, {score} AS score "
               f"FROM {quote(table)} WHERE {score} IS NOT NULL AND text IS NOT NULL {run_filter} "
               f"QUALIFY row_number() OVER (PARTITION BY {group} ORDER BY {score} DESC, key) <= ? "
               f"ORDER BY grp NULLS LAST, score DESC")
        rows = con.execute(sql, ([run] if run is not None else []) + [corpus.k]).fetchall()
    return [StoreText(grp, key, text, float(score)) for grp, key, text, score in rows]


def store_model_ref(db: Path, corpus: CorpusConfig) -> str | None:
    """The model of the latest run that wrote the label into the table (or of --run), from the `runs` table."""
    with open_store(db) as con:
        runs = _table_columns(con, "runs")
        if not {"run_id", "model", "labels", "table_name"} <= set(runs):
            return None
        sql = ("SELECT model FROM runs WHERE table_name = ? AND list_contains(labels, ?) "
               + ("AND run_id = ? " if corpus.run is not None else "")
               + ("ORDER BY started_at DESC NULLS LAST " if "started_at" in runs else "") + "LIMIT 1")
        params = [corpus.table, corpus.label] + ([corpus.run] if corpus.run is not None else [])
        row = con.execute(sql, params).fetchone()
    return row[0] if row and row[0] else None
