"""Peak RSS of emocli's DuckDB store alone while `tag` appends N rows, per DuckDB memory_limit.

DuckDB keeps the blocks it writes in its buffer pool up to memory_limit, so a large limit makes the tagger's
memory grow with the table. This isolates the store (no model, no reader): tag's largest chunk (a GPU window)
and a tag-like schema (id, kept columns, 11 label scores, n_tokens, run_id), peak RSS sampled at 1M, 2M, 5M and
10M rows.

    python3 -m benchmarks.store_rss --rows 10000000 --limits 256MB 64MB 32MB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, cpu_model, library_versions

MARKS = (10**6, 2 * 10**6, 5 * 10**6, 10**7)


def append_rows(limit: str, total: int, db: Path) -> dict:
    import numpy as np
    import pyarrow as pa

    from emocli.inference.engine import DEFAULT_WINDOW_ROWS
    from emocli.store.core import ChunkCounts, Store
    from emocli.store.runs import RunRecord

    labels = [f"label{i}" for i in range(11)]
    rng = np.random.default_rng(0)
    marks, done, started = {}, 0, time.perf_counter()
    with Store(db, memory_limit=limit) as store:
        store.begin_run(RunRecord("r", "scores", "m", None, None, tuple(labels), (0.5,) * 11, "multi_label", ("x",),
                                  "text"), [("k", "x")])
        while done < total:
            n = min(DEFAULT_WINDOW_ROWS["cuda"], total - done)
            columns = {"id": pa.array([f"row{done + i}" for i in range(n)]), "language": pa.array(["eng"] * n),
                       "user_id": pa.array(rng.integers(0, 10**6, n))}
            columns |= {label: pa.array(rng.random(n, dtype=np.float32)) for label in labels}
            columns |= {"n_tokens": pa.array(rng.integers(1, 128, n).astype(np.int32)), "run_id": pa.array(["r"] * n)}
            done += n
            store.append_chunk("scores", "r", "k", pa.table(columns), done, ChunkCounts(n, 0, 0))
            for mark in MARKS:
                if done >= mark and str(mark) not in marks:
                    marks[str(mark)] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"memory_limit": limit, "rows": total, "peak_rss_mb_at_rows": marks,
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10**7)
    parser.add_argument("--limits", nargs="+", default=["256MB", "64MB", "32MB"])
    parser.add_argument("--out", type=Path, default=RESULTS / "store-rss-cpu.json")
    parser.add_argument("--worker", nargs=2, metavar=("LIMIT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows < MARKS[0]:
        parser.error(f"--rows must be at least {MARKS[0]:,}: growth is measured from the 1M-row mark")
    if args.worker:
        print(json.dumps(append_rows(args.worker[0], args.rows, Path(args.worker[1]))))
        return 0
    runs = []
    with tempfile.TemporaryDirectory(prefix="emocli_store_rss_") as tmp:
        for limit in args.limits:  # one process each: ru_maxrss is a process's peak
            out = subprocess.run([sys.executable, "-m", "benchmarks.store_rss", "--rows", str(args.rows), "--worker", limit,
                                  str(Path(tmp) / f"{limit}.duckdb")], check=True, capture_output=True, text=True)
            runs.append(json.loads(out.stdout))
            print(json.dumps(runs[-1]), flush=True)
    for run in runs:
        first = run["peak_rss_mb_at_rows"][str(MARKS[0])]
        run["last_vs_1m"] = round(list(run["peak_rss_mb_at_rows"].values())[-1] / first, 3)
    info = {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "libraries": library_versions()}, "runs": runs,
            "note": "store alone (no model, no reader); emocli.store.core.MEMORY_LIMIT is the limit tag uses"}
    args.out.write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
