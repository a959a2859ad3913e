"""`emocli tag` end to end: real files in, real DuckDB out, scores equal a plain transformers forward."""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from test_infer import TOLERANCE, reference_scores

from emocli.model.io import ModelInfo, save_model
from emocli.hub.registry import ModelSpec, register_model

LABELS = ("anger", "fear", "joy", "sadness", "surprise")
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def texts(brighter):
    rows = pcsv.read_csv(brighter / "dev" / "deu.csv").column("text").to_pylist()[:30]
    return rows + pcsv.read_csv(brighter / "dev" / "eng.csv").column("text").to_pylist()[:30]


@pytest.fixture
def corpus(tmp_path, texts):
    """Three files: Parquet with integer ids, CSV without ids, gzip CSV with string ids."""
    a = tmp_path / "a.parquet"
    pq.write_table(pa.table({
        "id": pa.array(range(100, 125), pa.int64()), "text": texts[:25], "language": ["deu"] * 25,
        "created_at": pa.array([1_700_000_000_000_000 + i for i in range(25)], pa.timestamp("us")),
    }), a, row_group_size=10)
    b = tmp_path / "b.csv"
    pcsv.write_csv(pa.table({"text": texts[25:45], "language": ["mix"] * 20}), b)
    c = tmp_path / "c.csv.gz"
    raw = tmp_path / "c_raw.csv"
    pcsv.write_csv(pa.table({"id": [f"c{i}" for i in range(15)], "text": texts[45:60], "language": ["eng"] * 15}), raw)
    c.write_bytes(gzip.compress(raw.read_bytes()))
    return [a, b, c]


def read_table(db, table="scores", order="run_id, id"):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(f"SELECT * FROM {table} ORDER BY {order}").to_arrow_table(), con.execute(
            f"DESCRIBE {table}").fetchall()
    finally:
        con.close()


def query(db, sql):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_scores_equal_a_direct_forward_for_csv_and_parquet_with_and_without_ids(cli, tmp_path, corpus, texts,
                                                                                 tiny_model_dir):
    db = tmp_path / "out.duckdb"
    result = cli(["tag", *corpus, "--model", tiny_model_dir, "--db", db, "--window-rows", "8", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows"] == 60 and summary["status"] == "done" and summary["skipped"] == 0
    table, schema = read_table(db)
    types = {name: kind for name, kind, *_ in schema}
    assert [name for name, *_ in schema] == ["id", "language", "created_at", *LABELS, "labels", "n_tokens",
                                             "truncated", "run_id"]  # the text is not kept by default
    assert types["created_at"] == "TIMESTAMP" and types["anger"] == "FLOAT" and types["labels"] == "VARCHAR[]"
    assert types["id"] == "VARCHAR"  # integer, string and derived ids in one table: all stored as text
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 60
    text_of = dict(zip([str(i) for i in range(100, 125)], texts[:25]))
    text_of |= {f"b.csv:{i + 1}": t for i, t in enumerate(texts[25:45])}
    text_of |= {f"c{i}": t for i, t in enumerate(texts[45:60])}
    assert set(map(str, ids)) == set(text_of)
    ours = np.stack([table.column(label).to_numpy() for label in LABELS], axis=1)
    expected = reference_scores(tiny_model_dir, [text_of[str(i)] for i in ids], 64)
    np.testing.assert_allclose(ours, expected, atol=TOLERANCE, rtol=0)
    run = query(db, "SELECT model, labels, thresholds, task, inputs, text_col, rows_written, status, finished_at "
                    "IS NOT NULL FROM runs")
    assert run == [(str(tiny_model_dir), list(LABELS), [0.5, 0.45, 0.5, 0.55, 0.5], "multi_label",
                    [str(p) for p in corpus], "text", 60, "done", True)]


def test_plain_tag_uses_the_default_model_and_keeps_every_column_but_the_text(cli, tmp_path, monkeypatch,
                                                                              tiny_model_dir):
    spec = importlib.util.spec_from_file_location("make_corpus", REPO_ROOT / "benchmarks" / "make_corpus.py")
    make_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_corpus)
    monkeypatch.chdir(tmp_path)
    make_corpus.write_corpus(300, Path("tweets.parquet"), chunk_rows=128)
    register_model(ModelSpec(name="tiny-emotions", path=str(tiny_model_dir), task="multi_label"))
    result = cli(["tag", "tweets.parquet"])
    assert result.exit_code == 0, result.stderr
    assert "tagged 300 rows (skipped 0" in result.stderr
    _, schema = read_table(tmp_path / "emotions.duckdb")
    columns = {name: kind for name, kind, *_ in schema}
    assert list(columns)[:5] == ["id", "language", "created_at", "user_id", "anger"] and columns["id"] == "BIGINT"
    assert "text" not in columns and columns["created_at"] == "TIMESTAMP" and columns["user_id"] == "BIGINT"
    assert query("emotions.duckdb", "SELECT count(*), count(DISTINCT language) > 20, min(model) FROM scores "
                                    "JOIN runs USING (run_id)") == [(300, True, "tiny-emotions")]
    again = cli(["tag", "tweets.parquet"])  # the same command again: the run is complete, nothing is written
    assert again.exit_code == 0 and "nothing to do" in again.stderr
    assert query("emotions.duckdb", "SELECT count(*) FROM scores") == [(300,)]


def test_default_model_offline_and_not_cached_is_one_line(cli, tmp_path, corpus):
    result = cli(["tag", corpus[0], "--db", tmp_path / "x.duckdb"])
    assert result.exit_code == 3
    assert "twitter-roberta-emotion" in result.stderr and "emocli models pull" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2


def test_second_model_and_second_corpus_share_the_db_and_overwrite_starts_afresh(cli, tmp_path, corpus,
                                                                                 tiny_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(5)
    other = save_model(tmp_path / "other", AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=3, ignore_mismatched_sizes=True), AutoTokenizer.from_pretrained(tiny_model_dir),
        ModelInfo(("joy", "love", "trust"), (0.5, 0.5, 0.5), "multi_label", 32))
    db = tmp_path / "e.duckdb"
    assert cli(["tag", corpus[0], "--model", tiny_model_dir, "--db", db, "-q"]).exit_code == 0
    assert cli(["tag", corpus[0], "--model", other, "--db", db, "-q"]).exit_code == 0
    assert cli(["tag", corpus[1], "--model", tiny_model_dir, "--db", db, "-q", "--keep-text"]).exit_code == 0
    runs = query(db, "SELECT run_id, labels, rows_written FROM runs ORDER BY started_at")
    assert [r[1] for r in runs] == [list(LABELS), ["joy", "love", "trust"], list(LABELS)]
    assert [r[2] for r in runs] == [25, 25, 20]
    assert query(db, f"SELECT count(love), count(anger), count(text) FROM scores WHERE run_id = '{runs[0][0]}'") == [
        (0, 25, 0)]
    assert query(db, f"SELECT count(love), count(anger) FROM scores WHERE run_id = '{runs[1][0]}'") == [(25, 0)]
    assert query(db, f"SELECT count(text) FROM scores WHERE run_id = '{runs[2][0]}'") == [(20,)]
    result = cli(["tag", corpus[2], "--model", tiny_model_dir, "--db", db, "-q", "--overwrite"])
    assert result.exit_code == 0
    assert query(db, "SELECT count(*), count(DISTINCT run_id) FROM scores") == [(15, 1)]
    assert query(db, "SELECT count(*) FROM runs") == [(1,)]


def test_empty_texts_are_skipped_long_ones_truncated_and_columns_renamed(cli, tmp_path, tiny_model_dir):
    path = tmp_path / "posts.csv"
    long_text = "what a terrible, frightening, sad and surprising day " * 10
    pcsv.write_csv(pa.table({"text": ["fine", None, "", long_text], "joy": [1, 0, 0, 1]}), path)
    db = tmp_path / "e.duckdb"
    result = cli(["tag", path, "--model", tiny_model_dir, "--db", db, "--max-length", "20", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["skipped"], summary["truncated"]) == (4, 2, 1)
    rows = query(db, "SELECT id, input_joy, joy IS NULL, labels IS NULL, n_tokens, truncated FROM scores ORDER BY id")
    assert rows == [("posts.csv:1", 1, False, False, 3, False), ("posts.csv:2", 0, True, True, 0, False),
                    ("posts.csv:3", 0, True, True, 0, False), ("posts.csv:4", 1, False, False, 20, True)]
    assert query(db, "SELECT rows_written, rows_skipped, rows_truncated FROM runs") == [(4, 2, 1)]
    assert "input column 'joy' is stored as 'input_joy'" in result.stderr


def test_bad_inputs_give_one_line_and_keep_what_was_committed(cli, tmp_path, corpus, tiny_model_dir):
    db = tmp_path / "e.duckdb"
    missing = cli(["tag", tmp_path / "nope.csv", "--model", tiny_model_dir, "--db", db])
    assert missing.exit_code == 2 and "nope.csv: file not found" in missing.stderr
    no_text = tmp_path / "notext.csv"
    no_text.write_text("id,body\n1,hello\n")
    result = cli(["tag", no_text, "--model", tiny_model_dir, "--db", db])
    assert result.exit_code == 2 and "notext.csv: no text column 'text' (columns: id, body)" in result.stderr
    bad = tmp_path / "z_bad.csv"
    bad.write_text("text,language\nfine,eng\n\"also, fine\",eng\nbroken,eng,extra\n")
    result = cli(["tag", corpus[0], bad, "--model", tiny_model_dir, "--db", db, "-q"])
    assert result.exit_code == 2
    assert "z_bad.csv: line 4: expected 2 columns, got 3" in result.stderr
    assert "Traceback" not in result.stderr
    # the good file before it was committed and stays; the run says it failed
    assert query(db, "SELECT count(*) FROM scores") == [(25,)]
    assert query(db, "SELECT status, rows_written FROM runs") == [("failed", 25)]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        locked = cli(["tag", corpus[1], "--model", tiny_model_dir, "--db", db])
        assert locked.exit_code == 5 and "locked by another process" in locked.stderr
    finally:
        holder.kill()
        holder.wait()
    assert query(db, "SELECT count(*) FROM scores") == [(25,)]


def test_limit_then_continue_with_keep_and_id_col(cli, tmp_path, corpus, tiny_model_dir):
    db = tmp_path / "e.duckdb"
    args = ["tag", corpus[0], "--model", tiny_model_dir, "--db", db, "--keep", "language", "--id-col", "id",
            "--window-rows", "4", "--json"]
    first = json.loads(cli([*args, "--limit", "10"]).stdout)
    assert (first["rows"], first["status"]) == (10, "interrupted")
    second = json.loads(cli(args).stdout)  # the same run continues after its 10 rows
    assert (second["rows"], second["resumed_from"], second["status"], second["run_id"]) == (
        15, 10, "done", first["run_id"])
    _, schema = read_table(db)
    assert [name for name, *_ in schema][:3] == ["id", "language", "anger"]  # --keep narrowed the columns
    assert query(db, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM scores") == [(25, 25, 100, 124)]
