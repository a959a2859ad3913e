"""`emocli tag` end to end on a GPU at several engine settings (token budget per batch, rows per window).

    python3 -m benchmarks.gpu.sweep --base DIR --corpus FILE [--rows 200000] --out FILE.json

Each setting is one real `emocli tag CORPUS --limit ROWS` process into a fresh DuckDB file; texts/s is the
command's own tagging-loop rate (its --json summary), as in benchmarks/throughput.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.throughput import build_bert_base_model, build_default_model, machine, worker_emocli

SETTINGS = [("default", []), ("batch-tokens 131072", ["--batch-tokens", "131072"]),
            ("batch-tokens 131072, window 65536", ["--batch-tokens", "131072", "--window-rows", "65536"]),
            ("batch-tokens 32768", ["--batch-tokens", "32768"])]


def tag(model: Path, corpus: Path, rows: int, extra: list[str], db: Path) -> dict:
    try:
        result = worker_emocli(str(model), str(corpus), rows, 128, str(db), [*extra, "--overwrite"])
    except SystemExit as exc:  # one failed setting is recorded; the others still run
        lines = str(exc.code or "").strip().splitlines()
        return {"error": lines[-1] if lines else "failed"}
    return {"texts_per_s": result["texts_per_s"], "seconds": result["seconds"], "rows": result["texts"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=200000)
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-base"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emocli_sweep_"))
    builders = {"minilm": build_default_model, "bert-base": build_bert_base_model}
    report = {"machine": machine(), "rows": args.rows, "max_length": 128, "results": {}}
    for name in args.models:
        model = builders[name](work / name, args.base)
        for label, extra in SETTINGS:
            result = tag(model, args.corpus, args.rows, extra, work / "sweep.duckdb")
            report["results"].setdefault(name, {})[label] = result
            print(f"{name:10s} {label:36s} {result.get('texts_per_s', result.get('error'))}", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")  # after each: a cut-off run keeps its results
    return 0


if __name__ == "__main__":
    sys.exit(main())
