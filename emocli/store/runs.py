"""The `runs` table: one row per `emocli tag` run (model, commit, labels, thresholds, inputs, counts, status)."""

from __future__ import annotations

from dataclasses import dataclass

RUNS_TABLE = "runs"
RUN_STATUSES = ("running", "done", "failed", "interrupted")

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
    run_id: str
    table_name: str
    model: str
    repo: str | None
    commit: str | None
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    task: str
    inputs: tuple[str, ...]
    text_col: str
