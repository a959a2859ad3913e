"""`emocli tag` texts/s with and without language detection, in the same run (interleaved, repeated).

    nice -n 10 python -m benchmarks.langid_tag [--rows 3000] [--repeats 3]

The corpus is `make_corpus` (all 28 BRIGHTER languages) without its language column; the model is the packaged
all-MiniLM-L6-v2 with a seeded 5-label head (the throughput benchmark's CPU model), max length 128. Each repeat
tags the same rows twice into fresh stores, once with `detect_language=False` and once with True (the order
alternates between repeats); texts/s is over the tagging loop (TagSummary.rows_per_s). Also measured: the
detector alone on the same texts (texts/s), to show what share of the loop it could cost at most. Writes
benchmarks/results/langid-tag-cpu-minilm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.common import RESULTS, cpu_model, library_versions
from benchmarks.make_corpus import write_corpus
from benchmarks.throughput import build_default_model


def tag_once(corpus: Path, model: Path, db: Path, detect: bool) -> float:
    from emocli.inference.engine import EngineConfig
    from emocli.inference.tagger import TagConfig, tag

    summary = tag(TagConfig(inputs=(str(corpus),), model=str(model), db=db, detect_language=detect,
                            engine=EngineConfig(device="cpu", max_length=128)))
    assert summary.status == "done", summary
    return summary.rows_per_s


def detector_alone(corpus: Path) -> float:
    from emocli.inference.langid import LanguageDetector

    texts = pq.read_table(corpus, columns=["text"]).column("text").combine_chunks()
    detector = LanguageDetector()
    started = time.perf_counter()
    detector.detect_arrow(texts)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from importlib.metadata import version

    import torch

    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        full = write_corpus(args.rows, work / "full.parquet")
        corpus = work / "corpus.parquet"
        pq.write_table(pq.read_table(full).drop(["language"]), corpus)
        model = build_default_model(work / "model")
        tag_once(corpus, model, work / "warm.duckdb", True)  # warm-up: caches, the tokenizer, torch's first passes
        speeds: dict[str, list[float]] = {"without": [], "with": []}
        for repeat in range(args.repeats):
            order = ("without", "with") if repeat % 2 == 0 else ("with", "without")
            for name in order:
                speeds[name].append(round(tag_once(corpus, model, work / f"{name}-{repeat}.duckdb",
                                                   name == "with"), 1))
        alone = detector_alone(corpus)
    median = {name: statistics.median(values) for name, values in speeds.items()}
    record = {
        "what": "emocli tag texts/s with vs without --detect-language, same run, interleaved",
        "rows": args.rows, "repeats": args.repeats, "model": "all-MiniLM-L6-v2 + seeded 5-label head, fp32, max 128",
        "texts_per_s": speeds, "median_texts_per_s": median,
        "ratio_with_over_without": round(median["with"] / median["without"], 3),
        # each repeat's pair ran back to back: the median of the paired ratios is less exposed to load swings
        "paired_ratios": [round(w / o, 3) for w, o in zip(speeds["with"], speeds["without"])],
        "median_paired_ratio": round(statistics.median(w / o for w, o in zip(speeds["with"], speeds["without"])), 3),
        "slowdown_pct": round(100 * (1 - median["with"] / median["without"]), 1),
        "detector_alone_texts_per_s": round(alone, 1),
        "detector_share_of_loop_at_most_pct": round(100 * median["without"] / alone, 2),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "pycld2": version("pycld2"), "libraries": library_versions(),
                    "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()},
    }
    if max(load_at_start[0], os.getloadavg()[0]) > 2:
        record["note"] = "the box was shared by other jobs (load > 2): absolute texts/s are low, the ratio holds"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "langid-tag-cpu-minilm.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
