"""The DuckDB store: schema, atomic chunk + checkpoint commits, new columns for new models, locks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import duckdb
import pyarrow as pa
import pytest

import emocli
from emocli.errors import StoreError
from emocli.store.connect import open_read_only
from emocli.store.core import ChunkCounts, Store, check_table_name
from emocli.store.runs import RunRecord, read_runs
from emocli.store.schema import SCHEMA_VERSION

RUN = RunRecord("run-a", "scores", "tiny", None, "dir:abc", ("joy", "fear"), (0.5, 0.4), "multi_label",
                ("a.csv",), "text")


def chunk(ids, labels=("joy", "fear"), score=0.5):
    n = len(ids)
    columns = {"id": pa.array(ids, pa.string())}
    for label in labels:
        columns[label] = pa.array([score] * n, pa.float32())
    columns["labels"] = pa.array([[labels[0]]] * n, pa.list_(pa.string()))
    columns["n_tokens"] = pa.array([5] * n, pa.int32())
    columns["truncated"] = pa.array([False] * n)
    columns["run_id"] = pa.array(["run-a"] * n)
    return pa.table(columns)


def test_schema_tables_and_version(tmp_path):
    db = tmp_path / "e.duckdb"
    with Store(db) as store:
        state = store.begin_run(RUN, [("a.csv", "/data/a.csv")])
        assert state["a.csv"].rows_done == 0 and not state["a.csv"].done
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT value FROM emocli_meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    row = con.execute("SELECT run_id, model, labels, thresholds, status, rows_written FROM runs").fetchone()
    assert row == ("run-a", "tiny", ["joy", "fear"], [0.5, 0.4], "running", 0)
    con.close()


def test_the_run_the_writer_records_is_the_run_readers_load(tmp_path):
    db = tmp_path / "e.duckdb"
    with Store(db) as store:
        store.begin_run(RUN, [("a.csv", "/data/a.csv")])
        store.append_chunk("scores", "run-a", "a.csv", chunk(["a:1", "a:2"]), 2, ChunkCounts(2, 1, 1), file_done=True)
        store.finish_run("run-a", "done")
        [loaded] = read_runs(store.con, "scores")
    assert dataclasses.replace(loaded, status=None, started_at=None, finished_at=None, rows_written=None,
                               rows_skipped=None, rows_truncated=None, emocli_version=None) == RUN
    assert (loaded.status, loaded.rows_written, loaded.rows_skipped, loaded.rows_truncated) == ("done", 2, 1, 1)
    assert loaded.started_at <= loaded.finished_at and loaded.emocli_version == emocli.__version__
    assert loaded.model_key == ("tiny", None, "dir:abc", ("joy", "fear"), (0.5, 0.4))


def test_chunk_and_checkpoint_commit_together_or_not_at_all(tmp_path):
    db = tmp_path / "e.duckdb"
    with Store(db) as store:
        store.begin_run(RUN, [("a.csv", "/data/a.csv")])
        store.append_chunk("scores", "run-a", "a.csv", chunk(["a:1", "a:2"]), 2, ChunkCounts(2, 0, 0))
        bad = chunk(["a:3"]).set_column(1, "joy", pa.array(["not a number"]))  # cannot go into a FLOAT column
        with pytest.raises(duckdb.Error):
            store.append_chunk("scores", "run-a", "a.csv", bad, 3, ChunkCounts(1, 0, 0))
        assert store.progress("run-a")["a.csv"].rows_done == 2
        assert store.run_counts("run-a") == ChunkCounts(2, 0, 0)
        store.append_chunk("scores", "run-a", "a.csv", chunk(["a:3"]), 3, ChunkCounts(1, 0, 0), file_done=True)
        assert store.progress("run-a")["a.csv"].done
        assert store.con.execute("SELECT list(id ORDER BY id) FROM scores").fetchone()[0] == ["a:1", "a:2", "a:3"]


def test_a_second_model_adds_its_label_columns(tmp_path):
    db = tmp_path / "e.duckdb"
    with Store(db) as store:
        store.append_chunk("scores", "run-a", "a.csv", chunk(["a:1"]), 1, ChunkCounts(1, 0, 0))
        store.append_chunk("scores", "run-b", "a.csv", chunk(["a:1"], labels=("joy", "love"), score=0.9), 1,
                           ChunkCounts(1, 0, 0))
        columns = store.table_columns("scores")
        assert columns["love"] == "FLOAT" and list(columns)[-1] == "love"
        rows = store.con.execute("SELECT joy, fear, love FROM scores ORDER BY love NULLS FIRST").fetchall()
        assert rows == [(0.5, 0.5, None), (pytest.approx(0.9), None, pytest.approx(0.9))]


def test_drop_table_removes_its_runs_and_checkpoints_only(tmp_path):
    db = tmp_path / "e.duckdb"
    other = RunRecord(**{**RUN.__dict__, "run_id": "run-o", "table_name": "other"})
    with Store(db) as store:
        store.begin_run(RUN, [("a.csv", "a.csv")])
        store.begin_run(other, [("a.csv", "a.csv")])
        store.append_chunk("scores", "run-a", "a.csv", chunk(["a:1"]), 1, ChunkCounts(1, 0, 0))
        store.append_chunk("other", "run-o", "a.csv", chunk(["a:1"]), 1, ChunkCounts(1, 0, 0))
        store.drop_table("scores")
        assert not store.table_exists("scores") and store.table_exists("other")
        assert store.run_status("run-a") is None and store.progress("run-a") == {}
        assert store.run_status("run-o") == "running"


def test_table_names_are_checked():
    assert check_table_name("scores_2025") == "scores_2025"
    for bad in ("x; DROP TABLE runs", "1abc", "", "runs", "emocli_progress", "emocli_migrations"):
        with pytest.raises(StoreError):
            check_table_name(bad)


def test_a_database_locked_by_another_process_is_one_clear_error(tmp_path):
    db = tmp_path / "e.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="locked by another process"):
            Store(db)
        with pytest.raises(StoreError, match="locked by another process"):
            open_read_only(db)
    finally:
        holder.kill()
        holder.wait()


def test_a_file_that_is_not_a_database_is_one_clear_error_for_every_opener(tmp_path):
    db = tmp_path / "notes.duckdb"
    db.write_text("these are notes, not a database\n" * 100)
    for opener in (Store, open_read_only):
        with pytest.raises(StoreError, match="notes.duckdb: cannot open the database"):
            opener(db)
    with pytest.raises(StoreError, match="database not found: .*missing.duckdb") as missing:
        open_read_only(tmp_path / "missing.duckdb")
    assert "notes.duckdb" in missing.value.hint  # the databases that are there


def test_a_read_only_connection_neither_writes_nor_reaches_other_files(tmp_path):
    db = tmp_path / "e.duckdb"
    (tmp_path / "other.csv").write_text("a\n1\n")
    with Store(db) as store:
        store.begin_run(RUN, [("a.csv", "/data/a.csv")])
    con = open_read_only(db)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (1,)
        for sql in ("DELETE FROM runs", f"COPY runs TO '{tmp_path / 'out.csv'}'",
                    f"SELECT * FROM read_csv('{tmp_path / 'other.csv'}')"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
    finally:
        con.close()
    assert not (tmp_path / "out.csv").exists()
