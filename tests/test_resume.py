"""Crash and resume: SIGKILL a real `emocli tag` process mid-run, twice, re-run, and get the uninterrupted table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

LABELS = ("anger", "fear", "joy", "sadness", "surprise")
N_PARQUET, N_CSV = 900, 300
KILL_AT_WAL_BYTES = (60_000, 150_000)  # a full run leaves ~450 KB of WAL: kill a few commits in, then more


@pytest.fixture
def corpus(tmp_path, brighter):
    texts = pcsv.read_csv(brighter / "train" / "eng.csv").column("text").to_pylist()
    texts += pcsv.read_csv(brighter / "train" / "deu.csv").column("text").to_pylist()
    parquet = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(N_PARQUET)], "text": texts[:N_PARQUET],
                             "language": ["eng"] * N_PARQUET}), parquet, row_group_size=500)
    csv = tmp_path / "more.csv"  # no id column: ids are derived as more.csv:<row>
    pcsv.write_csv(pa.table({"text": texts[N_PARQUET:N_PARQUET + N_CSV], "language": ["deu"] * N_CSV}), csv)
    return [parquet, csv]


def tag_command(corpus, model, db):
    return [sys.executable, "-m", "emocli.cli", "tag", *map(str, corpus), "--model", str(model), "--db", str(db),
            "--window-rows", "25", "--threads", "1", "--quiet"]  # one thread: fastest for a tiny model on a busy box


def snapshot(db):
    """(rows by id, per-file checkpoints, runs) of a DB, after replaying any WAL left by a killed writer."""
    con = duckdb.connect(str(db))
    try:
        rows = con.execute(f"SELECT id, {', '.join(LABELS)}, labels, n_tokens, truncated, run_id FROM scores "
                           "ORDER BY id").fetchall() if con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'scores'").fetchone()[0] else []
        progress = con.execute("SELECT file, rows_done, done FROM emocli_progress ORDER BY file").fetchall()
        runs = con.execute("SELECT run_id, rows_written, status FROM runs").fetchall()
    finally:
        con.close()
    return rows, progress, runs


def kill_when_wal_reaches(command, wal, size, timeout=120):
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size >= size:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    return proc


def test_sigkill_mid_run_twice_then_resume_equals_an_uninterrupted_run(cli, tmp_path, corpus, tiny_model_dir):
    reference_db = tmp_path / "reference.duckdb"
    result = cli(["tag", *corpus, "--model", tiny_model_dir, "--db", reference_db, "--quiet"])
    assert result.exit_code == 0, result.stderr
    reference, _, _ = snapshot(reference_db)
    assert len(reference) == N_PARQUET + N_CSV

    db = tmp_path / "crash.duckdb"
    wal = tmp_path / "crash.duckdb.wal"
    committed = []
    for size in KILL_AT_WAL_BYTES:
        proc = kill_when_wal_reaches(tag_command(corpus, tiny_model_dir, db), wal, size)
        assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {proc.stderr.read()!r}"
        rows, progress, runs = snapshot(db)
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)), "a row was written twice"
        assert 0 < len(rows) < N_PARQUET + N_CSV, "killed mid-run: some rows committed, not all"
        assert sum(done for _, done, _ in progress) == len(rows)  # checkpoint and rows committed together
        assert runs[0][1] == len(rows) and runs[0][2] == "running"
        committed.append(len(rows))
    assert committed[1] > committed[0], "the second run resumed after the first run's checkpoint"

    finished = subprocess.run(tag_command(corpus, tiny_model_dir, db), capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    rows, progress, runs = snapshot(db)
    assert [r[0] for r in rows] == [r[0] for r in reference]  # same ids, none lost, none twice
    assert progress == [("more.csv", N_CSV, True), ("posts.parquet", N_PARQUET, True)]
    assert runs == [(reference_run_id(reference), N_PARQUET + N_CSV, "done")]
    ours = np.array([r[1:6] for r in rows], dtype=np.float64)
    expected = np.array([r[1:6] for r in reference], dtype=np.float64)
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)  # batches differ after a resume: ~1e-7
    assert [r[7:9] for r in rows] == [r[7:9] for r in reference]


def reference_run_id(reference_rows):
    """Same command, same inputs, same model: the resumed run has the reference run's id."""
    return reference_rows[0][-1]
