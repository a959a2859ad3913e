"""Architecture benchmark: heads, the small model (with/without distillation) and a stack, on BRIGHTER English.

Same protocol as benchmarks/quality.py: a fixed subset of train/eng.csv trains, a disjoint *tune* subset of
train drives early stopping and per-class thresholds, and the official dev/eng.csv is scored once.
- linear / cnn-bilstm-attn / label-attention: the packaged MiniLM fine-tuned by `emocli.training.finetune.finetune`
  (weighted-bce loss, shuffle sampler, pinned by --loss/--sampler), `--head` choosing the head;
- small: `--arch small` (MiniLM's embedding matrix projected to 128 dims -> conv -> BiLSTM -> attention);
- small+distill: the same, plus `--teacher <linear model of the same seed> --unlabeled <train/eng rows used
  neither for train nor tune, labels dropped>`;
- stack: the three MiniLM models of the same seed (linear, cnn-bilstm-attn, label-attention) frozen under a
  BiLSTM meta-learner (hybrid loss) trained on the *tune* split (members never saw it), thresholds by 3-fold
  cv within tune, scored on dev.
Throughput: CPU texts/s of the `tag` engine (emocli.inference.engine.score_batch: tokenize, length-sorted batches,
forward) on dev/eng texts, per architecture, at 1 torch thread (the CPU is shared) and fp32.

    nice -n 10 python3 -m benchmarks.architectures --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.quality import DATA, RESULTS, dev_files, machine, recipe_config, score, split_files, train_stack

TRANSFORMER_HEADS = ("linear", "cnn-bilstm-attn", "label-attention")


def unlabeled_file(train_rows: int, tune_rows: int, workdir: Path) -> str:
    """The train/eng rows split_files left out, text only: the 'corpus to be tagged' to distil on."""
    import polars as pl

    frame = pl.read_csv(DATA / "train" / "eng.csv").sample(fraction=1.0, shuffle=True, seed=0)
    path = workdir / "unlabeled" / "eng.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.slice(tune_rows + train_rows).select("id", "text").write_csv(path)
    return str(path)


def finetune_run(name: str, seed: int, args, train, tune, workdir: Path, **arch) -> tuple[Path, float]:
    from emocli.training.distill import DistillConfig
    from emocli.training.finetune import finetune

    overrides = {"loss": args.loss, "sampler": args.sampler, "arch": arch.get("arch", "transformer"),
                 "head": arch.get("head", "linear")}
    if arch.get("arch") == "small":
        overrides.update(epochs=args.small_epochs, lr=args.small_lr, patience=args.small_patience)
    else:
        overrides["patience"] = args.epochs
    distill = DistillConfig(teacher=arch.get("teacher"), unlabeled=tuple(arch.get("unlabeled", ())))
    started = time.perf_counter()
    finetune(recipe_config(overrides, args, train, tune, workdir / f"{name}-{seed}", seed, distill))
    return workdir / f"{name}-{seed}", time.perf_counter() - started


def stack_run(seed: int, members: list[Path], tune, workdir: Path) -> tuple[Path, float]:
    return train_stack(members, tune, workdir / f"stack-{seed}", seed)


def throughput(model_dir: Path, texts: list[str], repeats: int) -> float:
    """Texts/s of the tag engine's scoring core on CPU (best of `repeats` passes over the texts)."""
    import pyarrow as pa

    from emocli.inference.engine import EngineConfig, load_scorer, score_batch
    from emocli.model.io import load_model

    scorer = load_scorer(load_model(model_dir, device="cpu"), EngineConfig(device="cpu", threads=1))
    array = pa.array(texts)
    score_batch(array[:64], scorer)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        score_batch(array, scorer)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def throughput_sets(results: dict) -> list[dict]:
    """Throughput measurements, best first: {"note", "texts_per_s"}; each includes MiniLM ("linear")."""
    own = {"note": f"measured in this run after seed {results['args']['seeds'][0]} ({results['machine']})",
           "texts_per_s": results["throughput"]}
    return [*results.get("throughput_sets", []), own]


def interleaved_throughput(models: list[tuple[str, Path]], texts: list[str], rounds: int) -> dict[str, float]:
    """Best texts/s per model over `rounds` rounds that alternate the models (the shared CPU's load drifts)."""
    best = {name: 0.0 for name, _ in models}
    for _ in range(rounds):
        for name, path in models:
            best[name] = max(best[name], round(throughput(path, texts, repeats=1), 1))
    return best


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["architecture"], []).append(row)

    def stat(values):
        return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]

    return [{"architecture": name, "seeds": sorted(r["seed"] for r in runs),
             "macro_f1": stat([r["macro_f1"] for r in runs]), "micro_f1": stat([r["micro_f1"] for r in runs]),
             "wall_s": stat([r["wall_s"] for r in runs])} for name, runs in groups.items()]


def markdown(results: dict) -> str:
    sets = throughput_sets(results)
    lines = [f"# emocli architectures on BRIGHTER English ({results['finished_at']})", "",
             f"Machine: {results['machine']}", "", f"Setup: {results['setup']}", "",
             "| architecture | seeds | dev macro-F1 | dev micro-F1 | train wall s/run | tag CPU texts/s (1 thread) | vs MiniLM |",
             "|---|---|---|---|---|---|---|"]
    for row in sorted(results["summary"], key=lambda r: -r["macro_f1"][0]):
        name = row["architecture"].split("(")[0] if row["architecture"].startswith("stack(") else row["architecture"]
        # a speed is compared with MiniLM's ("linear") from the same measurement
        speeds = next((t["texts_per_s"] for t in sets if name in t["texts_per_s"]), {})
        speed, base = speeds.get(name), speeds.get("linear")
        ratio = f"{speed / base:.1f}x" if speed and base else "-"
        lines.append(f"| {row['architecture']} | {len(row['seeds'])} | **{row['macro_f1'][0]:.3f}** ± "
                     f"{row['macro_f1'][1]:.3f} | {row['micro_f1'][0]:.3f} ± {row['micro_f1'][1]:.3f} | "
                     f"{row['wall_s'][0]:.0f} | {speed if speed else '-'} | {ratio} |")
    lines += ["", "Throughput (each architecture's speed comes from the first measurement that has it):"]
    lines += [f"{i}. {t['note']}: " + ", ".join(f"{k} {v}" for k, v in t["texts_per_s"].items())
              for i, t in enumerate(sets, 1)]
    for merged in results.get("merged_runs", []):
        lines += ["", f"Merged run `{merged['from']}`: {merged['note']} ({merged['setup']})"]
    lines += ["", *results.get("notes", [])]
    return "\n".join(lines) + "\n"


def save(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["summary"] = summarise(results["rows"])
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    stem = results["args"]["stem"]
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{stem}.md").write_text(markdown(results), encoding="utf-8")


def merge(from_stem: str, into_stem: str, note: str, only: tuple[str, ...] | None = None) -> None:
    """Fold a later run's architectures (`only`, default all) into the main results file (e.g. the small model
    re-run with new defaults); the rows and throughputs they replace are kept under '<name> (superseded)'."""
    source = json.loads((RESULTS / f"{from_stem}.json").read_text())
    target = json.loads((RESULTS / f"{into_stem}.json").read_text())
    target["args"]["stem"] = into_stem
    source["rows"] = [row for row in source["rows"] if only is None or row["architecture"] in only]
    rerun = {row["architecture"] for row in source["rows"]}
    for row in target["rows"]:
        if row["architecture"] in rerun:
            row["architecture"] += " (superseded)"
    target["throughput"] = {(f"{k} (superseded)" if k in rerun else k): v for k, v in target["throughput"].items()}
    target["rows"] += source["rows"]
    target.setdefault("throughput_sets", []).append({"note": f"measured in run `{from_stem}` after seed "
                                                             f"{source['args']['seeds'][0]} ({source['machine']})",
                                                     "texts_per_s": source["throughput"]})
    target.setdefault("merged_runs", []).append({"from": from_stem, "machine": source["machine"],
                                                 "setup": source["setup"], "args": source["args"], "note": note})
    save(target)


def record(results: dict, name: str, seed: int, model_dir: Path, wall: float, dev: list[str]) -> None:
    row = {"architecture": name, "seed": seed, "wall_s": round(wall, 1), **score(model_dir, dev, None, "cpu")}
    meta = json.loads((model_dir / "emocli.json").read_text())
    if meta["architecture"] == "small":
        small = meta["training"]["architecture"]["small"]
        row["small_options"] = small
    results["rows"].append(row)
    save(results)
    print(f"seed {seed} {name}: dev macro-F1 {row['macro_f1']:.3f} ({wall:.0f}s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--small-epochs", type=int, default=15)
    parser.add_argument("--small-patience", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--small-lr", type=float, default=2e-3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train-rows", type=int, default=600)
    parser.add_argument("--tune-rows", type=int, default=250)
    parser.add_argument("--throughput-texts", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--loss", default="weighted-bce")
    parser.add_argument("--sampler", default="shuffle")
    parser.add_argument("--skip", nargs="*", default=[], help="architectures to leave out")
    parser.add_argument("--teacher", help="one fixed teacher dir for small+distill (default: the seed's linear model)")
    parser.add_argument("--stem", default="architectures-cpu-minilm", help="results file benchmarks/results/<stem>.json")
    parser.add_argument("--merge-into", help="after the run, fold this run's results into <merge-into>.json")
    parser.add_argument("--note", default="", help="why the merged run was made")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only measure the --also-throughput models, interleaved, into the existing <stem>.json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--also-throughput", nargs=2, action="append", default=[], metavar=("NAME", "DIR"),
                        help="also measure the throughput of a saved model, next to this run's (e.g. the teacher)")
    args = parser.parse_args()

    import polars as pl
    import torch

    from emocli.model.io import quiet_transformers

    torch.set_num_threads(args.threads)
    quiet_transformers()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {
        "machine": machine(), "args": vars(args), "rows": [], "throughput": {},
        "setup": (f"packaged all-MiniLM-L6-v2 base; train {args.train_rows} rows of train/eng, tune {args.tune_rows} "
                  f"other train rows (early stopping + thresholds), scored on dev/eng (115 rows); transformers: "
                  f"{args.epochs} epochs, lr {args.lr}; small: up to {args.small_epochs} epochs (patience "
                  f"{args.small_patience}), lr {args.small_lr}; batch {args.batch_size}, max_length "
                  f"{args.max_length}, {args.loss} loss, {args.sampler} sampler; {args.threads} torch thread(s)"),
        "not_run": [],
    }
    dev = dev_files(["eng"])
    texts = pl.read_csv(dev[0])["text"].to_list()
    texts = (texts * (args.throughput_texts // len(texts) + 1))[:args.throughput_texts]
    if args.throughput_only:
        results = json.loads((RESULTS / f"{args.stem}.json").read_text())
        models = [(name, Path(path)) for name, path in args.also_throughput]
        results.setdefault("throughput_sets", []).insert(0, {
            "note": f"best of {args.rounds} rounds alternating the models ({machine()})",
            "texts_per_s": interleaved_throughput(models, texts, args.rounds)})
        results["args"]["stem"] = args.stem
        save(results)
        return
    with tempfile.TemporaryDirectory(prefix="emocli-arch-") as tmp:
        workdir = Path(tmp)
        train, tune, _ = split_files(["eng"], args.train_rows, args.tune_rows, workdir)
        unlabeled = unlabeled_file(args.train_rows, args.tune_rows, workdir)
        for seed in args.seeds:
            models: dict[str, Path] = {}
            for head in TRANSFORMER_HEADS:
                if head in args.skip:
                    continue
                models[head], wall = finetune_run(head, seed, args, train, tune, workdir, head=head)
                record(results, head, seed, models[head], wall, dev)
            if "small" not in args.skip:
                models["small"], wall = finetune_run("small", seed, args, train, tune, workdir, arch="small")
                record(results, "small", seed, models["small"], wall, dev)
            teacher = args.teacher or (str(models["linear"]) if "linear" in models else None)
            if "small+distill" not in args.skip and teacher:
                models["small+distill"], wall = finetune_run("small-distill", seed, args, train, tune, workdir,
                                                             arch="small", teacher=teacher, unlabeled=[unlabeled])
                record(results, "small+distill", seed, models["small+distill"], wall, dev)
            members = [models[h] for h in TRANSFORMER_HEADS if h in models]
            if "stack" not in args.skip and len(members) >= 2:
                models["stack"], wall = stack_run(seed, members, tune, workdir)
                record(results, f"stack({'+'.join(h for h in TRANSFORMER_HEADS if h in models)})", seed,
                       models["stack"], wall, dev)
            if seed == args.seeds[0]:
                for name, path in [*models.items(), *((n, Path(d)) for n, d in args.also_throughput)]:
                    results["throughput"][name] = round(throughput(path, texts, repeats=2), 1)
                    save(results)
                    print(f"throughput {name}: {results['throughput'][name]:.0f} texts/s", flush=True)
    save(results)
    if args.merge_into:
        merge(args.stem, args.merge_into, args.note)


if __name__ == "__main__":
    main()
