"""Graph-level screens of the int8 ONNX export: where its forward pass spends its time, and whether another form of
the same graph runs faster on this CPU than the one `emocli export onnx --int8` writes.

    python -m benchmarks.onnx_graphs --model /tmp/refmodel --corpus /tmp/corpus20k.parquet --rows 2000 --threads 1 \
        --out benchmarks/results/onnx-graphs-cpu-epyc-avx512-minilm.json

The model is exported twice (fp32 and int8, emocli's own export), then these variants are built from the exports:
- fastgelu: the int8 export with each fused BiasGelu (erf) turned into FastGelu (the tanh approximation);
- matmulnbits8 / matmulnbits4: the fused fp32 export with every MatMul as MatMulNBits (block-wise 8- or 4-bit
  weights, int8 compute: onnxruntime's LLM kernels) and attention as QAttention, as in the int8 export.
Every variant and the peer (torch dynamic int8, `tag --quantize`) runs through emocli's engine (its own token
budget, the same length-sorted texts), in one process, taking turns, `--rounds` times; the median texts/s and the
ratio to the int8 export and to torch int8 are printed, with each variant's max |score diff| to the int8 export.
Then onnxruntime's profiler splits the int8 export's time by operator. Forward passes only: no tokenizer, no store.

`--data-parallel` screens another way to use the cores instead: the int8 export's batches run in turn on one session
with `--threads` intra-op threads (what the engine does) vs on one session with 1 intra-op thread called from
`--threads` Python threads at once (several batches in flight; onnxruntime releases the GIL), taking turns.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, cpu_model, library_versions
from benchmarks.throughput import read_texts, timed_forward


def export_both(model: Path, work: Path) -> tuple[Path, Path]:
    from emocli.export.config import OnnxExportConfig
    from emocli.export.onnx_export import export_onnx

    dirs = work / "onnx_fp32", work / "onnx_int8"
    for out, int8 in zip(dirs, (False, True)):
        export_onnx(OnnxExportConfig(model=str(model), out=out, int8=int8))
    return dirs


def variant_dir(int8_export: Path, graph, name: str) -> Path:
    """A copy of the int8 export (tokenizer, labels, thresholds) around another graph."""
    import onnx

    out = int8_export.with_name(name)
    shutil.copytree(int8_export, out, dirs_exist_ok=True)
    onnx.save(graph, str(out / "model.onnx"))
    return out


def fastgelu_graph(int8_export: Path):
    import onnx

    graph = onnx.load(str(int8_export / "model.onnx"))
    for node in graph.graph.node:
        if node.op_type == "BiasGelu":
            node.op_type = "FastGelu"  # same inputs (x, bias), contrib domain too
    return graph


def matmulnbits_graph(fp32_export: Path, bits: int, work: Path):
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32_export / "model.onnx")), bits=bits, block_size=32,
                                     is_symmetric=True, accuracy_level=4)
    quantizer.process()
    weights_only = work / f"nbits{bits}.onnx"
    quantizer.model.save_model_to_file(str(weights_only), use_external_data_format=False)
    out = work / f"nbits{bits}-qattention.onnx"
    quantize_dynamic(str(weights_only), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["Attention"], extra_options={"DefaultTensorType": TensorProto.FLOAT})
    return onnx.load(str(out))


def nbits_quantizer_installed() -> bool:
    try:
        from onnxruntime.quantization import matmul_nbits_quantizer  # noqa: F401 - needs the onnx-ir package
    except ImportError:
        print("matmulnbits variants skipped: onnxruntime's MatMulNBits quantizer needs `pip install onnx-ir`")
        return False
    return True


def time_variants(variants: dict[str, tuple[Path, bool]], texts: list[str], threads: int, rounds: int) -> dict:
    import numpy as np
    import pyarrow as pa

    from emocli.inference.engine import EngineConfig, load_scorer
    from emocli.model.io import load_model

    scorers = {name: load_scorer(load_model(path), EngineConfig(quantize=quantize, threads=threads))
               for name, (path, quantize) in variants.items()}
    plans = {}
    for name, scorer in scorers.items():
        plans[name] = scorer.plan_batches(scorer.tokenize(pa.array(texts)))
        scorer.forward(plans[name][0])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in scorers}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for name, scorer in scorers.items():
            seconds, batch_scores = timed_forward(scorer, plans[name])
            times[name].append(seconds)
            outputs[name] = by_row(plans[name], batch_scores, len(texts))
    median = {name: statistics.median(t) for name, t in times.items()}
    return {name: {"texts_per_s_median": round(len(texts) / median[name], 1),
                   "texts_per_s_all_rounds": [round(len(texts) / t, 1) for t in times[name]],
                   "speed_vs_onnx_int8": round(median["onnx_int8"] / median[name], 2),
                   "speed_vs_torch_int8": round(median["torch_int8"] / median[name], 2),
                   "max_abs_score_diff_vs_onnx_int8": float(np.abs(outputs[name] - outputs["onnx_int8"]).max())}
            for name in scorers}


def by_row(batches, batch_scores, rows: int):
    import numpy as np

    scores = np.zeros((rows, batch_scores[0].shape[1]), dtype=np.float32)
    for batch, batch_score in zip(batches, batch_scores):
        scores[batch.rows] = batch_score.float().numpy()
    return scores


def operator_profile(int8_export: Path, texts: list[str], threads: int) -> dict[str, float]:
    """Share of the int8 export's kernel time per operator type, from onnxruntime's profiler."""
    import onnxruntime as ort
    import pyarrow as pa

    from emocli.inference.engine import EngineConfig, load_scorer
    from emocli.model.io import load_model
    from emocli.model.onnx_model import DISABLED_FUSIONS, INPUT_NAMES

    scorer = load_scorer(load_model(int8_export), EngineConfig(quantize=True, threads=threads))
    batches = scorer.plan_batches(scorer.tokenize(pa.array(texts)))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(int8_export.parent / "profile")
    session = ort.InferenceSession(str(int8_export / "model.onnx"), options, providers=["CPUExecutionProvider"],
                                   disabled_optimizers=list(DISABLED_FUSIONS))
    for batch in batches:
        session.run(None, {INPUT_NAMES[0]: batch.input_ids.numpy(), INPUT_NAMES[1]: batch.attention_mask.numpy()})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return {op: round(100 * us / total, 1) for op, us in per_op.most_common() if us / total >= 0.001}


def data_parallel(int8_export: Path, texts: list[str], threads: int, rounds: int) -> dict:
    """texts/s of the engine's batches, one run at a time on `threads` intra-op threads vs `threads` runs at once
    on one intra-op thread each; the scores of both must be the same."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pyarrow as pa

    from emocli.inference.engine import EngineConfig, load_scorer
    from emocli.model.io import load_model
    from emocli.model.onnx_model import INPUT_NAMES, MODEL_FILE, OUTPUT_NAME, OnnxSession

    scorer = load_scorer(load_model(int8_export), EngineConfig(quantize=True, threads=threads))
    feeds = [{INPUT_NAMES[0]: b.input_ids.numpy(), INPUT_NAMES[1]: b.attention_mask.numpy()}
             for b in scorer.plan_batches(scorer.tokenize(pa.array(texts)))]
    serial_session = scorer.module.session  # the engine's own session: `threads` intra-op threads
    one_thread = OnnxSession(int8_export / MODEL_FILE, "int8")
    one_thread.configure(1)  # the same options, one intra-op thread
    shared_session = one_thread.session
    pool = ThreadPoolExecutor(threads)
    ways = {"one_run_at_a_time": lambda: [serial_session.run([OUTPUT_NAME], f)[0] for f in feeds],
            "runs_in_parallel": lambda: list(pool.map(lambda f: shared_session.run([OUTPUT_NAME], f)[0], feeds))}
    for way in ways.values():
        way()  # warm-up
    speeds: dict[str, list[float]] = {name: [] for name in ways}
    outputs = {}
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            outputs[name] = way()
            speeds[name].append(round(len(texts) / (time.perf_counter() - started), 1))
    pool.shutdown()
    same = max(float(np.abs(a - b).max()) for a, b in zip(*outputs.values()))
    return {"batches": len(feeds), "texts_per_s_all_rounds": speeds,
            "parallel_over_serial_median": round(statistics.median(speeds["runs_in_parallel"])
                                                 / statistics.median(speeds["one_run_at_a_time"]), 2),
            "max_abs_score_diff": same}


def run_report(args, texts: list[str], **results) -> dict:
    """The machine and settings of this run, with its results."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": args.threads, "texts": len(texts),
            "rounds": args.rounds, "load_1min_at_end": os.getloadavg()[0], "libraries": library_versions(), **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an emocli model directory (torch)")
    parser.add_argument("--corpus", type=Path, required=True, help="a Parquet file with a text column")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help=f"write the results as JSON [e.g. {RESULTS}/onnx-graphs-....json]")
    parser.add_argument("--data-parallel", action="store_true",
                        help="only the screen of one run at a time vs runs in parallel on one thread each")
    args = parser.parse_args()
    texts = read_texts(args.corpus, args.rows)
    if args.data_parallel:
        return screen_data_parallel(args, texts)
    with tempfile.TemporaryDirectory(prefix="emocli_onnx_graphs_") as tmp:
        work = Path(tmp)
        fp32_export, int8_export = export_both(args.model, work)
        variants = {"torch_int8": (args.model, True), "onnx_int8": (int8_export, True),
                    "fastgelu": (variant_dir(int8_export, fastgelu_graph(int8_export), "fastgelu"), True)}
        for bits in (8, 4) if nbits_quantizer_installed() else ():
            graph = matmulnbits_graph(fp32_export, bits, work)
            variants[f"matmulnbits{bits}"] = (variant_dir(int8_export, graph, f"matmulnbits{bits}"), True)
        results = time_variants(variants, texts, args.threads, args.rounds)
        profile = operator_profile(int8_export, texts, args.threads)
    report = run_report(args, texts, variants=results, onnx_int8_time_per_operator_percent=profile)
    for name, entry in results.items():
        print(f"{name:14s} {entry['texts_per_s_median']:7.1f} texts/s  x onnx int8 {entry['speed_vs_onnx_int8']:.2f}"
              f"  x torch int8 {entry['speed_vs_torch_int8']:.2f}"
              f"  max |diff| vs onnx int8 {entry['max_abs_score_diff_vs_onnx_int8']:.3g}")
    print("int8 export, time per operator (%):", json.dumps(profile))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def screen_data_parallel(args, texts: list[str]) -> None:
    from emocli.export.config import OnnxExportConfig
    from emocli.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="emocli_onnx_parallel_") as tmp:
        int8_export = Path(tmp) / "onnx_int8"
        export_onnx(OnnxExportConfig(model=str(args.model), out=int8_export, int8=True))
        result = data_parallel(int8_export, texts, args.threads, args.rounds)
    report = run_report(args, texts, data_parallel=result)
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
