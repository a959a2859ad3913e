"""`emocli tag` CPU texts/s per token budget (`--batch-tokens`), fp32, int8 (and bf16), interleaved and repeated.

The peer is the engine's CPU default before this benchmark (4,096 padded tokens per forward pass), measured in the
same run: each budget's ratio to it, per round and as the geometric mean. Same model (the packaged MiniLM with a
seeded 5-label head: speed does not depend on the weights' values), same make_corpus texts, end to end into DuckDB.

    python -m benchmarks.batch_tokens --rows 3000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.common import RESULTS
from benchmarks.throughput import build_default_model, machine, run_worker

PEER_BUDGET = 4096


PRECISION_FLAGS = {"fp32": [], "int8": ["--quantize"], "bf16": ["--dtype", "bf16"]}


def plan(model: Path, corpus: Path, rows: int, max_length: int, budgets: list[int], precisions: list[str],
         work: Path) -> list[tuple[str, dict]]:
    common = {"model": str(model), "corpus": str(corpus), "rows": rows, "max_length": max_length}
    return [(f"{precision}_bt{budget}", {**common, "db": str(work / f"{precision}_{budget}.duckdb"),
                                         "extra": ["--batch-tokens", str(budget), *PRECISION_FLAGS[precision]]})
            for precision in precisions for budget in budgets]


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def ratios_to_peer(results: dict[str, dict]) -> None:
    for name, entry in results.items():
        precision = name.split("_")[0]
        peer = results[f"{precision}_bt{PEER_BUDGET}"]["texts_per_s_all_rounds"]
        per_round = [a / b for a, b in zip(entry["texts_per_s_all_rounds"], peer)]
        entry[f"ratio_to_bt{PEER_BUDGET}_per_round"] = [round(r, 3) for r in per_round]
        entry[f"ratio_to_bt{PEER_BUDGET}_geomean"] = round(geomean(per_round), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1024, 2048, PEER_BUDGET])
    parser.add_argument("--precisions", nargs="+", choices=sorted(PRECISION_FLAGS), default=["fp32", "int8"],
                        help="bf16 is fast only on CPUs with a bf16 matrix unit (AMX)")
    parser.add_argument("--out", type=Path, default=RESULTS / "batch-tokens-cpu-minilm.json")
    args = parser.parse_args(argv)
    budgets = sorted(set(args.budgets) | {PEER_BUDGET})

    from benchmarks.make_corpus import write_corpus

    work = Path(tempfile.mkdtemp(prefix="emocli_budget_"))
    model = build_default_model(work / "model")
    corpus = write_corpus(max(args.rows, 1000), work / "corpus.parquet")
    info = {"machine": machine(), "rows": args.rows, "max_length": args.max_length, "rounds": args.repeat,
            "model": "all-MiniLM-L6-v2 (packaged) + seeded 5-label head",
            "corpus": f"make_corpus.py {max(args.rows, 1000)} (BRIGHTER, all languages)",
            "method": "emocli tag CORPUS --limit ROWS --batch-tokens B [--quantize | --dtype bf16], Parquet to DuckDB, each in a fresh "
                      "process; all variants interleaved within each round; texts/s of the tag loop (model loaded)",
            "peer": f"--batch-tokens {PEER_BUDGET} (the CPU default before this benchmark), same run"}
    results: dict[str, dict] = {}
    loads = []
    for round_ in range(args.repeat):
        for name, payload in plan(model, corpus, args.rows, args.max_length, budgets, args.precisions, work):
            Path(payload["db"]).unlink(missing_ok=True)
            loads.append(os.getloadavg()[0])
            result = run_worker(["--worker", "emocli", json.dumps(payload)])
            entry = results.setdefault(name, {"texts_per_s_all_rounds": []})
            entry["texts_per_s_all_rounds"].append(result["texts_per_s"])
            print(f"  {name}: {result['texts_per_s']:,.1f} texts/s (round {round_ + 1}, load {loads[-1]:.1f})",
                  file=sys.stderr, flush=True)
    for entry in results.values():
        entry["texts_per_s_best"] = max(entry["texts_per_s_all_rounds"])
    ratios_to_peer(results)
    info["results"] = results
    info["load_1min_per_measurement"] = {"min": min(loads), "max": max(loads), "mean": round(sum(loads) / len(loads), 2)}
    args.out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"{'variant':<14} {'best texts/s':>12} {'x bt' + str(PEER_BUDGET) + ' (geomean)':>22}")
    for name, entry in results.items():
        print(f"{name:<14} {entry['texts_per_s_best']:>12,.1f} {entry[f'ratio_to_bt{PEER_BUDGET}_geomean']:>21.3f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
