"""Does torch.compile pay for `emocli tag`'s forward passes on the CPU?

Same model (packaged MiniLM + a seeded 5-label head), same length-sorted token-budget batches as `tag`, measured
in one process: eager (what `tag` runs) against `torch.compile(dynamic=True)` (one graph for every batch shape,
since `tag`'s batches vary in length and row count), best of --repeat passes over the batches, plus the compile
time and the largest score difference.

    python3 -m benchmarks.compile_cpu --rows 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.throughput import RESULTS, build_default_model, machine, sorted_batches, timed_forward


def best_pass(scorer, batches, repeat: int) -> tuple[float, list]:
    """The fastest of `repeat` forward passes over the batches, and the last pass's outputs."""
    passes = [timed_forward(scorer, batches) for _ in range(repeat)]
    return min(seconds for seconds, _ in passes), passes[-1][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "compile-cpu-minilm.json")
    args = parser.parse_args()

    import torch

    from benchmarks.make_corpus import write_corpus

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="emocli_compile_"))
    corpus = write_corpus(max(args.rows, 5000), work / "corpus.parquet")
    texts, scorer, _, batches = sorted_batches(build_default_model(work / "model"), corpus, args.rows,
                                               args.max_length, device="cpu")

    eager_s, eager_out = best_pass(scorer, batches, args.repeat)
    scorer.module = torch.compile(scorer.module, dynamic=True)
    started = time.perf_counter()
    scorer.forward(batches[0])
    first_call_s = time.perf_counter() - started
    compiled_s, compiled_out = best_pass(scorer, batches, args.repeat)
    diff = max(float((a - b).abs().max()) for a, b in zip(eager_out, compiled_out))

    info = {"machine": machine(), "threads": args.threads, "rows": len(texts), "batches": len(batches),
            "max_length": args.max_length, "repeat": args.repeat,
            "eager_texts_per_s": round(len(texts) / eager_s, 1),
            "compiled_texts_per_s": round(len(texts) / compiled_s, 1),
            "ratio_compiled_to_eager": round(eager_s / compiled_s, 3),
            "compile_first_call_s": round(first_call_s, 1), "max_score_difference": diff}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    print(f"torch.compile: {info['ratio_compiled_to_eager']:.2f}x eager "
          f"({info['compiled_texts_per_s']} vs {info['eager_texts_per_s']} texts/s), "
          f"first call {info['compile_first_call_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
