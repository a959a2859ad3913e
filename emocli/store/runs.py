"""The `runs` table: one row per `emocli tag` run (model, commit, labels, thresholds, inputs, counts, status)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

RUNS_TABLE = "runs"
RUN_STATUSES = ("running", "done", "failed", "interrupted")

# The table as migration 1 creates it; later migrations add columns (store/schema.py).
RUNS_DDL = f"""
CREATE TABLE IF NOT EXISTS {RUNS_TABLE} (
    run_id VARCHAR PRIMARY KEY,
    table_name VARCHAR,
    model VARCHAR,
    repo VARCHAR,
    "commit" VARCHAR,
    labels VARCHAR[],
    thresholds DOUBLE[],
    task VARCHAR,
    inputs VARCHAR[],
    text_col VARCHAR,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    rows_written BIGINT,
    rows_skipped BIGINT,
    rows_truncated BIGINT,
    status VARCHAR
)"""


@dataclass(frozen=True)
class RunRecord:
    """One row of `runs`: what the writer records when a run starts, and what readers load back.

    The state fields (status, times, counts) are kept up to date by the store as the run goes on; a new
    run is described without them."""

    run_id: str
    table_name: str | None
    model: str
    repo: str | None
    commit: str | None
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    task: str | None
    inputs: tuple[str, ...]
    text_col: str | None
    status: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rows_written: int | None = None
    rows_skipped: int | None = None
    rows_truncated: int | None = None
    emocli_version: str | None = None  # absent from stores before schema 2
    # absent from stores before schema 3: the model's training languages (ISO 639-3; None = unknown) and where
    # the rows' language comes from ('column:NAME', 'detected', or None: no language per row)
    model_languages: tuple[str, ...] | None = None
    language_source: str | None = None
    engine: str | None = None  # local | ray; absent from stores before schema 4
    workers: int | None = None  # scoring workers of the latest invocation (1 for local)
    address: str | None = None  # the Ray cluster joined (--address); None for a local Ray or the local engine

    @property
    def model_key(self) -> tuple:
        """Runs with equal keys scored with the same model and thresholds, so their rows can be pooled."""
        return (self.model, self.repo, self.commit, self.labels, self.thresholds)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "RunRecord":
        """A `runs` row by column name; columns an older store lacks take their defaults."""
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in row.items() if name in known}
        for name in _TUPLE_FIELDS:
            values[name] = tuple(values.get(name) or ())
        if values.get("model_languages") is not None:
            values["model_languages"] = tuple(values["model_languages"])
        values["model"] = values.get("model") or "?"
        for name in ("table_name", "repo", "commit", "task", "text_col"):
            values.setdefault(name, None)
        return cls(**values)


_TUPLE_FIELDS = ("labels", "thresholds", "inputs")


def read_runs(con: "duckdb.DuckDBPyConnection", table: str) -> list[RunRecord]:
    """The runs recorded for a scores table (and runs that name no table), oldest first."""
    cursor = con.execute(f"SELECT * FROM {RUNS_TABLE} WHERE table_name = $t OR table_name IS NULL "
                         "ORDER BY started_at NULLS LAST, run_id", {"t": table})
    names = [d[0] for d in cursor.description]
    return [RunRecord.from_row(dict(zip(names, row))) for row in cursor.fetchall()]
