"""What each `--engine ray` actor asks for and scores with: a pure function, checked without Ray or a GPU."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from emocli.errors import InputError
from emocli.inference.engine import DEFAULT_BATCH_TOKENS, DEFAULT_WINDOW_ROWS, EngineConfig
from emocli.inference.ray_engine import actor_batch_rows, actor_plan


def test_a_gpu_actor_takes_its_gpu_and_the_local_gpu_batching():
    plan = actor_plan(EngineConfig(), cpus_per_worker=2.0, gpus_per_worker=1.0)
    assert (plan.num_cpus, plan.num_gpus) == (2.0, 1.0)
    assert (plan.engine.device, plan.engine.dtype) == ("cuda", "bf16")
    assert plan.engine.batch_tokens == DEFAULT_BATCH_TOKENS["cuda"] == 131072
    assert plan.engine.window_rows == DEFAULT_WINDOW_ROWS["cuda"] == 65536
    assert plan.engine.threads == 2

    half = actor_plan(EngineConfig(device="cuda", dtype="fp16", batch_tokens=8192, window_rows=1000), 1.0, 0.5)
    assert (half.num_gpus, half.engine.dtype, half.engine.batch_tokens, half.engine.window_rows) == (
        0.5, "fp16", 8192, 1000)


def test_a_cpu_actor_uses_one_thread_per_cpu_it_holds_and_asks_for_no_gpu():
    plan = actor_plan(EngineConfig(), cpus_per_worker=3.0, gpus_per_worker=0.0)
    assert (plan.num_cpus, plan.num_gpus) == (3.0, None)
    assert (plan.engine.device, plan.engine.dtype, plan.engine.threads) == ("cpu", "fp32", 3)
    assert plan.engine.window_rows == DEFAULT_WINDOW_ROWS["cpu"] == 4096
    assert plan.engine.batch_tokens is None  # the backend's own budget (ONNX 1,024, torch 4,096)
    assert actor_plan(EngineConfig(threads=1, quantize=True), 0.5, 0.0).engine.threads == 1


@pytest.mark.parametrize("engine, gpus, message", [
    (EngineConfig(device="cuda"), 0.0, "--device cuda with --engine ray needs --gpus-per-worker"),
    (EngineConfig(device="cuda:1"), 1.0, "--device cuda:1: with --engine ray each actor uses the GPU Ray assigns"),
    (EngineConfig(device="cpu"), 1.0, "--device cpu with --gpus-per-worker"),
    (EngineConfig(quantize=True), 1.0, "--quantize is for CPU inference"),
])
def test_device_and_gpus_that_disagree_are_refused(engine, gpus, message):
    with pytest.raises(InputError, match=message):
        actor_plan(engine, 1.0, gpus)


def test_cli_device_cuda_without_gpus_per_worker_is_one_line_and_writes_nothing(cli, tmp_path, tiny_model_dir):
    corpus = tmp_path / "posts.parquet"
    pq.write_table(pa.table({"text": ["so happy", "so sad"]}), corpus)
    db = tmp_path / "none.duckdb"
    result = cli(["tag", corpus, "--model", tiny_model_dir, "--db", db, "--engine", "ray", "--device", "cuda"])
    assert result.exit_code == 2, result.stderr
    assert "needs --gpus-per-worker" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not db.exists()


def test_a_small_input_is_shared_by_every_actor_and_a_large_one_goes_by_windows():
    assert actor_batch_rows(4000, window_rows=4096, workers=2) == 2000
    assert actor_batch_rows(1200, window_rows=65536, workers=8) == 150
    assert actor_batch_rows(5, window_rows=4096, workers=8) == 1
    assert actor_batch_rows(8192, window_rows=4096, workers=2) == 4096
    assert actor_batch_rows(200_000, window_rows=4096, workers=2) == 4096
    assert actor_batch_rows(None, window_rows=4096, workers=2) == 4096  # a CSV: rows unknown before reading
