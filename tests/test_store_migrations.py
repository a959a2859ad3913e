"""Schema migrations: a store written at an older schema is brought up to date on open, its data kept."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pytest

import emocli
from emocli.errors import StoreError
from emocli.store.core import ChunkCounts, Store
from emocli.store.runs import RunRecord, read_runs
from emocli.store.schema import MIGRATIONS, SCHEMA_VERSION, applied_versions

# The store exactly as emocli wrote it at schema 1, before the migrations table (kept literal on purpose:
# it is a snapshot of released files, not of today's DDL).
SCHEMA_1 = [
    "CREATE TABLE emocli_meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "INSERT INTO emocli_meta VALUES ('schema_version', '1')",
    """CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, table_name VARCHAR, model VARCHAR, repo VARCHAR,
       "commit" VARCHAR, labels VARCHAR[], thresholds DOUBLE[], task VARCHAR, inputs VARCHAR[], text_col VARCHAR,
       started_at TIMESTAMP, finished_at TIMESTAMP, rows_written BIGINT, rows_skipped BIGINT,
       rows_truncated BIGINT, status VARCHAR)""",
    """CREATE TABLE emocli_progress (run_id VARCHAR, file VARCHAR, path VARCHAR, rows_done BIGINT, done BOOLEAN,
       updated_at TIMESTAMP)""",
    """CREATE TABLE scores (id VARCHAR, joy FLOAT, fear FLOAT, labels VARCHAR[], n_tokens INTEGER, truncated BOOLEAN,
       run_id VARCHAR)""",
    "INSERT INTO scores VALUES ('a:1', 0.75, 0.25, ['joy'], 5, false, 'run-old'), "
    "('a:2', 0.125, 0.5, ['fear'], 7, false, 'run-old')",
    "INSERT INTO runs VALUES ('run-old', 'scores', 'tiny', NULL, 'dir:abc', ['joy', 'fear'], [0.5, 0.4], "
    "'multi_label', ['a.csv'], 'text', TIMESTAMP '2026-01-02 03:04:05', NULL, 2, 0, 0, 'interrupted')",
    "INSERT INTO emocli_progress VALUES ('run-old', 'a.csv', '/data/a.csv', 2, false, "
    "TIMESTAMP '2026-01-02 03:05:00')",
]
OLD_RUN = RunRecord("run-old", "scores", "tiny", None, "dir:abc", ("joy", "fear"), (0.5, 0.4), "multi_label",
                    ("a.csv",), "text")


def schema_1_store(path):
    con = duckdb.connect(str(path))
    for statement in SCHEMA_1:
        con.execute(statement)
    con.close()
    return path


def snapshot(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def chunk(ids, run_id):
    n = len(ids)
    return pa.table({"id": pa.array(ids), "joy": pa.array([0.5] * n, pa.float32()),
                     "fear": pa.array([0.5] * n, pa.float32()), "labels": pa.array([["joy"]] * n),
                     "n_tokens": pa.array([4] * n, pa.int32()), "truncated": pa.array([False] * n),
                     "run_id": pa.array([run_id] * n)})


def test_the_migrations_are_numbered_in_order_from_one():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1].version == 4


def test_a_schema_1_store_is_migrated_and_keeps_its_data(tmp_path):
    db = schema_1_store(tmp_path / "old.duckdb")
    scores_before = snapshot(db, "SELECT * FROM scores ORDER BY id")
    runs_before = snapshot(db, "SELECT * FROM runs")
    progress_before = snapshot(db, "SELECT * FROM emocli_progress")
    before = dt.datetime.now()
    with Store(db) as store:
        assert store.migrations_applied == [1, 2, 3, 4]
        applied = applied_versions(store.con)
    assert list(applied) == [1, 2, 3, 4] and all(before <= at <= dt.datetime.now() for at in applied.values())
    assert snapshot(db, "SELECT value FROM emocli_meta WHERE key = 'schema_version'") == [("4",)]
    assert snapshot(db, "SELECT * FROM scores ORDER BY id") == scores_before
    assert snapshot(db, "SELECT * EXCLUDE (emocli_version, model_languages, language_source, engine, workers, address) "
                        "FROM runs") == runs_before
    assert snapshot(db, "SELECT emocli_version FROM runs") == [(None,)]  # unknown for the old run
    assert snapshot(db, "SELECT model_languages, language_source FROM runs") == [(None, None)]
    assert snapshot(db, "SELECT * FROM emocli_progress") == progress_before

    # the interrupted run resumes where it stopped, and a new run records the emocli that wrote it
    with Store(db) as store:
        assert store.migrations_applied == []
        state = store.begin_run(OLD_RUN, [("a.csv", "/data/a.csv")])
        assert state["a.csv"].rows_done == 2
        store.append_chunk("scores", "run-old", "a.csv", chunk(["a:3"], "run-old"), 3, ChunkCounts(1, 0, 0),
                           file_done=True)
        store.finish_run("run-old", "done")
        store.begin_run(RunRecord(**{**OLD_RUN.__dict__, "run_id": "run-new", "model_languages": ("eng", "spa"),
                                     "language_source": "detected"}), [("a.csv", "/data/a.csv")])
        runs = {run.run_id: run for run in read_runs(store.con, "scores")}
    assert (runs["run-old"].status, runs["run-old"].rows_written, runs["run-old"].emocli_version) == ("done", 3, None)
    assert runs["run-old"].started_at == dt.datetime(2026, 1, 2, 3, 4, 5)
    assert runs["run-new"].emocli_version == emocli.__version__
    assert (runs["run-old"].model_languages, runs["run-old"].language_source) == (None, None)
    assert (runs["run-new"].model_languages, runs["run-new"].language_source) == (("eng", "spa"), "detected")
    assert snapshot(db, "SELECT count(*) FROM scores") == [(3,)]


def test_a_new_store_records_every_migration_once(tmp_path):
    db = tmp_path / "new.duckdb"
    with Store(db) as store:
        assert store.migrations_applied == [1, 2, 3, 4]
        first = applied_versions(store.con)
    with Store(db) as store:
        assert store.migrations_applied == [] and applied_versions(store.con) == first
    assert snapshot(db, "SELECT version, description FROM emocli_migrations ORDER BY version") == [
        (m.version, m.description) for m in MIGRATIONS]


@pytest.mark.parametrize("newer", [
    "INSERT INTO emocli_migrations VALUES (9, 'from the future', now())",
    "UPDATE emocli_meta SET value = '9' WHERE key = 'schema_version'",
])
def test_a_store_from_a_newer_emocli_is_refused_and_left_alone(tmp_path, newer):
    db = tmp_path / "future.duckdb"
    Store(db).close()
    con = duckdb.connect(str(db))
    con.execute(newer)
    con.close()
    with pytest.raises(StoreError, match=r"newer emocli \(store schema 9 > 4\)"):
        Store(db)
    con = duckdb.connect(str(db))  # the refused store released its write lock
    assert con.execute("SELECT max(version) FROM emocli_migrations").fetchone()[0] in (4, 9)
    con.close()
