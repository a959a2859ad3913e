"""The store's own tables besides `runs`: the schema version and the progress checkpoints."""

from __future__ import annotations

SCHEMA_VERSION = 1
META_TABLE = "emocli_meta"
PROGRESS_TABLE = "emocli_progress"

PROGRESS_DDL = f"""
CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
    run_id VARCHAR,
    file VARCHAR,
    path VARCHAR,
    rows_done BIGINT,
    done BOOLEAN,
    updated_at TIMESTAMP
)"""
