"""`tag --engine ray`: a real local Ray (and a two-node cluster on this machine), the same rows as the local engine,
exactly once under a killed driver and a killed actor, one-line errors that write nothing."""

from __future__ import annotations

import gzip
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

ray = pytest.importorskip("ray")

from emocli.inference.engine import EngineConfig  # noqa: E402
from emocli.inference.ray_engine import RayConfig  # noqa: E402
from emocli.inference.tagger import TagConfig, tag  # noqa: E402

LABELS = ("anger", "fear", "joy", "sadness", "surprise")
N_PARQUET, N_CSV = 900, 300
OBJECT_STORE = 256 << 20


@pytest.fixture
def corpus(tmp_path, brighter):
    """A Parquet file with ids in three row groups, a gzipped CSV without ids (ids derived), empty texts."""
    texts = pcsv.read_csv(brighter / "train" / "eng.csv").column("text").to_pylist()
    texts += pcsv.read_csv(brighter / "train" / "deu.csv").column("text").to_pylist()
    texts[5] = ""
    parquet = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"id": [f"p{i}" for i in range(N_PARQUET)], "text": texts[:N_PARQUET],
                             "language": ["eng"] * N_PARQUET}), parquet, row_group_size=300)
    csv = tmp_path / "more.csv.gz"
    with gzip.open(csv, "wb") as fh:
        pcsv.write_csv(pa.table({"text": texts[N_PARQUET:N_PARQUET + N_CSV], "language": ["deu"] * N_CSV}), fh)
    return [parquet, csv]


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=3, object_store_memory=OBJECT_STORE, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def rows_of(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT id, {', '.join(LABELS)}, labels, n_tokens, truncated, language, run_id "
                           "FROM scores ORDER BY id").fetchall()
    finally:
        con.close()


def one(db, sql):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def assert_same_rows(ours, reference):
    assert [r[0] for r in ours] == [r[0] for r in reference]  # same ids: none lost, none twice
    np.testing.assert_allclose(np.array([r[1:6] for r in ours], dtype=np.float64),
                               np.array([r[1:6] for r in reference], dtype=np.float64), atol=1e-5, rtol=0)
    assert [r[6:] for r in ours] == [r[6:] for r in reference]  # labels, n_tokens, truncated, language, run id


def config(corpus, model, db, **kwargs):
    return TagConfig(inputs=tuple(map(str, corpus)), model=str(model), db=db,
                     engine=EngineConfig(window_rows=100, threads=1), **kwargs)


def test_ray_writes_the_rows_the_local_engine_writes(local_ray, tmp_path, corpus, tiny_model_dir, one_torch_thread):
    local = tag(config(corpus, tiny_model_dir, tmp_path / "local.duckdb"))
    summary = tag(config(corpus, tiny_model_dir, tmp_path / "ray.duckdb", runner="ray",
                         ray=RayConfig(workers=2)))
    assert (summary.status, summary.rows, summary.skipped) == ("done", N_PARQUET + N_CSV, 1)
    assert summary.run_id == local.run_id  # the engine is not part of what the rows are
    reference, ours = rows_of(tmp_path / "local.duckdb"), rows_of(tmp_path / "ray.duckdb")
    assert len(ours) == N_PARQUET + N_CSV and ours[0][0] == "more.csv.gz:1"
    assert_same_rows(ours, reference)
    runs = "SELECT engine, workers, address, rows_written, rows_skipped, status FROM runs"
    assert one(tmp_path / "ray.duckdb", runs) == [("ray", 2, None, N_PARQUET + N_CSV, 1, "done")]
    assert one(tmp_path / "local.duckdb", "SELECT engine, workers FROM runs") == [("local", 1)]
    assert one(tmp_path / "ray.duckdb", "SELECT file, rows_done, done FROM emocli_progress ORDER BY file") == [
        ("more.csv.gz", N_CSV, True), ("posts.parquet", N_PARQUET, True)]

    # --limit stops mid-file; the same command without it continues the run with the rows left
    db = tmp_path / "limited.duckdb"
    first = tag(config(corpus, tiny_model_dir, db, runner="ray", limit=250, ray=RayConfig(workers=1)))
    assert (first.status, first.rows) == ("interrupted", 250)
    rest = tag(config(corpus, tiny_model_dir, db, runner="ray", ray=RayConfig(workers=1)))
    assert (rest.status, rest.resumed_from, rest.rows) == ("done", 250, N_PARQUET + N_CSV - 250)
    assert_same_rows(rows_of(db), reference)


def tag_command(corpus, model, db, *extra):
    return [sys.executable, "-m", "emocli.cli", "tag", *map(str, corpus), "--model", str(model), "--db", str(db),
            "--window-rows", "25", "--threads", "1", "--quiet", "--engine", "ray", "--workers", "1", *extra]


@pytest.mark.slow
def test_a_killed_driver_resumes_with_every_row_once(local_ray, tmp_path, corpus, tiny_model_dir):
    reference_db = tmp_path / "reference.duckdb"
    tag(config(corpus, tiny_model_dir, reference_db))
    reference = rows_of(reference_db)
    db, wal = tmp_path / "crash.duckdb", tmp_path / "crash.duckdb.wal"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(tag_command(corpus, tiny_model_dir, db), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size >= 60_000:  # a few windows committed, most of the run left
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {proc.stderr.read()!r}"
    con = duckdb.connect(str(db))  # replays the WAL the killed writer left
    committed = con.execute("SELECT count(*), count(DISTINCT id) FROM scores").fetchone()
    done = con.execute("SELECT sum(rows_done) FROM emocli_progress").fetchone()[0]
    con.close()
    assert 0 < committed[0] < N_PARQUET + N_CSV and committed[0] == committed[1] == done

    finished = subprocess.run(tag_command(corpus, tiny_model_dir, db), capture_output=True, text=True, timeout=300,
                              env=env)
    assert finished.returncode == 0, finished.stderr
    assert_same_rows(rows_of(db), reference)
    assert one(db, "SELECT rows_written, status, engine FROM runs") == [(N_PARQUET + N_CSV, "done", "ray")]


def test_bad_input_is_one_line_and_writes_nothing(local_ray, cli, tmp_path, corpus, tiny_model_dir, monkeypatch):
    db = tmp_path / "none.duckdb"
    base = ["tag", *corpus, "--model", tiny_model_dir, "--db", db, "--engine", "ray"]
    cases = [
        (["tag", tmp_path / "missing.parquet", "--db", db, "--engine", "ray"], "missing.parquet: file not found"),
        ([*base, "--text-col", "body"], "no text column 'body'"),
        (["tag", *corpus, "--model", "no-such-model", "--db", db, "--engine", "ray"], "no-such-model"),
        ([*base, "--gpus-per-worker", "1"], "the Ray cluster has 0 GPU(s)"),  # refused, not left waiting
    ]
    for args, message in cases:
        result = cli(args)
        assert result.exit_code != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not db.exists()

    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), numbers)
    result = cli(["tag", numbers, "--model", tiny_model_dir, "--db", tmp_path / "n.duckdb", "--engine", "ray",
                  "--quiet"])
    assert result.exit_code == 2 and "holds int64, not text" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    ray.shutdown()  # an --address is only tried when this process has no Ray yet
    try:
        with socket_closed_port() as port:
            result = cli([*base, "--address", f"127.0.0.1:{port}"])
        assert result.exit_code == 2 and "no Ray cluster reachable" in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2 and not db.exists()
        monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
        result = cli(base)
        assert result.exit_code == 2 and 'pip install "emocli[ray]"' in result.stderr and not db.exists()
    finally:
        monkeypatch.undo()
        ray.init(num_cpus=3, object_store_memory=OBJECT_STORE, include_dashboard=False, log_to_driver=False)


class socket_closed_port:
    """A local port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        pass


class KillAnActorOnce:
    """A real Progress: on the first rows that land it kills one scoring actor's process (SIGKILL)."""

    def __init__(self):
        self.killed: list[int] = []
        self.rows = 0

    def start(self, task, total=None, unit="rows"):
        pass

    def advance(self, n=1, **status):
        self.rows += n
        if not self.killed and self.rows > 0:
            self.killed.append(kill_one_actor())

    def log(self, message):
        pass

    def finish(self):
        pass


def kill_one_actor() -> int:
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(proc.info["cmdline"] or ())  # Ray names it ray::MapWorker(MapBatches(BatchScorer))
        if "MapWorker" in title and "BatchScorer" in title:
            os.kill(proc.info["pid"], signal.SIGKILL)
            return proc.info["pid"]
    raise AssertionError("no scoring actor process found")


@pytest.mark.slow
def test_an_actor_killed_mid_run_is_restarted_and_every_row_lands_once(tmp_path, corpus, tiny_model_dir,
                                                                        one_torch_thread):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=2, object_store_memory=OBJECT_STORE)
    try:
        reference_db = tmp_path / "reference.duckdb"
        tag(config(corpus, tiny_model_dir, reference_db))
        progress = KillAnActorOnce()
        db = tmp_path / "killed.duckdb"
        summary = tag(config(corpus, tiny_model_dir, db, runner="ray",
                             ray=RayConfig(address=cluster.address, workers=2)), progress)
        assert progress.killed, "an actor was killed"
        assert (summary.status, summary.rows) == ("done", N_PARQUET + N_CSV)
        assert_same_rows(rows_of(db), rows_of(reference_db))
        assert one(db, "SELECT engine, workers, address FROM runs") == [("ray", 2, cluster.address)]
    finally:
        ray.shutdown()
        cluster.shutdown()
