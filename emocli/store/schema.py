"""The store's schema: an ordered list of migrations, and the table recording which ones a database has.

Opening a database for writing applies the migrations it lacks, oldest first, each in one transaction
together with its row in `emocli_migrations` (version, description, applied_at), so a crash leaves a
migration either applied and recorded or neither. A migration's statements never change once released:
a new column or table is a new migration. `emocli_meta.schema_version` keeps saying the newest applied
version, because that is what emocli before the migrations table reads to refuse a newer database.
Read-only openers never migrate; readers take the columns an older store has (see `RunRecord.from_row`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from emocli.errors import StoreError
from emocli.store.runs import RUNS_DDL, RUNS_TABLE

if TYPE_CHECKING:
    import duckdb

META_TABLE = "emocli_meta"
PROGRESS_TABLE = "emocli_progress"
MIGRATIONS_TABLE = "emocli_migrations"

META_DDL = f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)"

PROGRESS_DDL = f"""
CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
    run_id VARCHAR,
    file VARCHAR,
    path VARCHAR,
    rows_done BIGINT,
    done BOOLEAN,
    updated_at TIMESTAMP
)"""

MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version INTEGER PRIMARY KEY,
    description VARCHAR,
    applied_at TIMESTAMP
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Version 1 is the schema emocli wrote before this table existed; its statements only create what is
# missing, so applying it to such a database records it and changes nothing else.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "meta, runs and progress checkpoint tables", (META_DDL, RUNS_DDL, PROGRESS_DDL)),
    Migration(2, "runs.emocli_version: the emocli version that started the run",
              (f"ALTER TABLE {RUNS_TABLE} ADD COLUMN IF NOT EXISTS emocli_version VARCHAR",)),
    Migration(3, "runs.model_languages (ISO 639-3, NULL = unknown) and runs.language_source: model coverage",
              (f"ALTER TABLE {RUNS_TABLE} ADD COLUMN IF NOT EXISTS model_languages VARCHAR[]",
               f"ALTER TABLE {RUNS_TABLE} ADD COLUMN IF NOT EXISTS language_source VARCHAR")),
    Migration(4, "runs.engine, runs.workers, runs.address: where the run's latest invocation scored (tag --engine)",
              (f"ALTER TABLE {RUNS_TABLE} ADD COLUMN IF NOT EXISTS engine VARCHAR",
               f"ALTER TABLE {RUNS_TABLE} ADD COLUMN IF NOT EXISTS workers INTEGER",
               f"ALTER TABLE {RUNS_TABLE} ADD COLUMN IF NOT EXISTS address VARCHAR")),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def applied_versions(con: "duckdb.DuckDBPyConnection") -> dict[int, datetime | None]:
    """version -> applied_at for every migration recorded in the database."""
    rows = con.execute(f"SELECT version, applied_at FROM {MIGRATIONS_TABLE} ORDER BY version").fetchall()
    return dict(rows)


def migrate(con: "duckdb.DuckDBPyConnection", path: Path) -> list[int]:
    """Bring a database opened for writing to SCHEMA_VERSION; the versions applied now, oldest first."""
    con.execute(MIGRATIONS_DDL)
    applied = applied_versions(con)
    newest = max([*applied, _meta_version(con)], default=0)
    if newest > SCHEMA_VERSION:
        raise StoreError(f"{path}: written by a newer emocli (store schema {newest} > {SCHEMA_VERSION})",
                         hint="upgrade emocli")
    done = []
    for migration in MIGRATIONS:
        if migration.version not in applied:
            _apply(con, migration)
            done.append(migration.version)
    return done


def _apply(con: "duckdb.DuckDBPyConnection", migration: Migration) -> None:
    con.begin()
    try:
        for statement in migration.statements:
            con.execute(statement)
        con.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (?, ?, ?)",
                    [migration.version, migration.description, datetime.now()])
        con.execute(f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('schema_version', ?)", [str(migration.version)])
    except BaseException:
        con.rollback()
        raise
    con.commit()


def _meta_version(con: "duckdb.DuckDBPyConnection") -> int:
    """The version emocli_meta records (0 when there is none): how emocli before migrations marked a store."""
    exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'",
                         [META_TABLE]).fetchone()[0]
    if not exists:
        return 0
    row = con.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0
