"""GPU scores against the plain transformers forward on CPU in fp32, through a real `emocli tag` run.

    python3 -m benchmarks.gpu.check_scores --base DIR --corpus FILE [--rows 4000] --out FILE.json

Tags the first ROWS rows of CORPUS with `--device cuda` in bf16 and in fp32 (two DuckDB files) and compares
every row's scores with AutoModelForSequenceClassification + sigmoid on the CPU in fp32: max and mean
|difference|, and how often the predicted label sets (threshold 0.5) agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.throughput import LABELS, build_default_model, worker_emocli


def cpu_reference(model_dir: Path, texts: list[str], max_length: int):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 128):
            enc = tokenizer(texts[start:start + 128], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            out.append(torch.sigmoid(model(**enc).logits))
    return torch.cat(out).numpy()


def tag(model_dir: Path, corpus: Path, db: Path, rows: int, dtype: str, device: str, max_length: int) -> None:
    worker_emocli(str(model_dir), str(corpus), rows, max_length, str(db), ["--device", device, "--dtype", dtype])


def main() -> int:
    import duckdb
    import numpy as np
    import pyarrow.parquet as pq

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emocli_gpu_check_"))
    model_dir = build_default_model(work / "model", args.base)
    table = next(pq.ParquetFile(str(args.corpus)).iter_batches(batch_size=args.rows, columns=["id", "text"]))
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    reference = cpu_reference(model_dir, texts, args.max_length)
    by_id = {i: row for i, row in zip(ids, reference)}
    import torch

    report = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "device": args.device, "torch": torch.__version__, "rows": len(texts),
              "model": "all-MiniLM-L6-v2 + seeded 5-label head", "reference": "transformers fp32 forward on CPU"}
    for dtype in args.dtypes:
        db = work / f"{dtype}.duckdb"
        tag(model_dir, args.corpus, db, args.rows, dtype, args.device, args.max_length)
        cols = ", ".join(f'"{l}"' for l in LABELS)
        got = duckdb.connect(str(db), read_only=True).execute(f"SELECT id, {cols} FROM scores").fetchall()
        scores = np.array([row[1:] for row in got], dtype=np.float32)
        expected = np.stack([by_id[row[0]] for row in got])
        diff = np.abs(scores - expected)
        report[dtype] = {"rows_compared": len(got), "max_abs_diff": float(diff.max()),
                         "mean_abs_diff": float(diff.mean()),
                         "label_sets_agree": float(np.mean(np.all((scores >= 0.5) == (expected >= 0.5), axis=1)))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
