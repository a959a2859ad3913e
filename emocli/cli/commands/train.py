"""`emocli finetune` and `emocli evaluate`: thin flags over emocli.training.finetune (torch is imported only when they run)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Optional

import typer

from emocli.cli.options import (DeviceOpt, IdColOpt, JsonOpt, ModelOpt, QuietOpt, TextColOpt, choices, default_of,
                                json_option)
from emocli.errors import InputError
from emocli.model.heads import ARCHS, HEADS, SMALL_LEARNING_RATE, ArchitectureConfig
from emocli.training.config import (CLASS_WEIGHTS, LOSSES, MIXED_PRECISION, RECIPES, SAMPLERS, THRESHOLD_MODES,
                                    THRESHOLD_SOURCES, DataSpec, DistillConfig, EnsembleConfig, EvalConfig, LossConfig,
                                    RegularizationConfig, ThresholdConfig, TrainConfig)
from emocli.cli.progress import progress_for
from emocli.cli.console import err_console, out_console, print_json


Loss = choices("Loss", LOSSES)
ClassWeights = choices("ClassWeights", CLASS_WEIGHTS)
Sampler = choices("Sampler", SAMPLERS)
Thresholds = choices("Thresholds", THRESHOLD_MODES)
ThresholdSource = choices("ThresholdSource", THRESHOLD_SOURCES)
Precision = choices("Precision", MIXED_PRECISION)
Arch = choices("Arch", ARCHS)
Head = choices("Head", HEADS)
Recipe = choices("Recipe", tuple(RECIPES))


class EvalThresholds(str, Enum):
    saved = "saved"
    fixed = "fixed"


def _train(name: str):
    return default_of(TrainConfig, name)


def _loss(name: str):
    return default_of(LossConfig, name)


def _split_labels(labels: Optional[list[str]]) -> tuple[str, ...] | None:
    if not labels:
        return None
    return tuple(part.strip() for item in labels for part in item.split(",") if part.strip())


def _build(factory, **kwargs):
    """Config dataclasses validate themselves; their ValueError is a user error here."""
    try:
        return factory(**kwargs)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _train_inputs(train: Optional[list[str]]) -> tuple[str, ...]:
    from emocli.training.finetune import guess_train_files

    if train:
        return tuple(train)
    guessed = guess_train_files()
    if not guessed:
        raise InputError("no training data found (looked for ./train.csv, ./train.parquet, ./data/train*): "
                         "pass --train FILE (CSV/Parquet with a text column and 0/1 label columns)")
    err_console.print(f"[dim]training on {', '.join(guessed)} (found in the current directory)[/]")
    return guessed


def _ensemble_config(o) -> EnsembleConfig:
    """--recipe NAME sets --folds/--distill; flags given explicitly win over it."""
    recipe = RECIPES[o.recipe or "default"]
    folds = o.folds if o.folds is not None else recipe.get("folds", default_of(EnsembleConfig, "folds"))
    distill = o.distill if o.distill is not None else recipe.get("distill", False)
    return EnsembleConfig(folds=folds, distill=distill, unlabeled=tuple(o.unlabeled or ()) if distill else ())


def train_config(flags: dict) -> TrainConfig:
    """The TrainConfig that `finetune`'s flags describe (values as Typer passes them, or as click parsed them)."""
    o = SimpleNamespace(**{name: getattr(value, "value", value) for name, value in flags.items()})
    ensemble = _ensemble_config(o)
    return _build(
        TrainConfig, train=_train_inputs(o.train), dev=tuple(o.dev or ()), out=o.out, base=o.base,
        data=_build(DataSpec, text_col=o.text_col, id_col=o.id_col, labels=_split_labels(o.labels),
                    drop_empty_labels=o.drop_empty_labels),
        loss=_build(LossConfig, name=o.loss, class_weights=o.class_weights, focal_gamma=o.focal_gamma,
                    asl_gamma_pos=o.asl_gamma_pos, asl_gamma_neg=o.asl_gamma_neg, asl_margin=o.asl_margin,
                    lambda_corr=o.lambda_corr, lambda_con=o.lambda_con),
        thresholds=_build(ThresholdConfig, mode=o.thresholds, fixed=o.threshold, source=o.threshold_source,
                          cv_folds=o.cv_folds),
        architecture=ArchitectureConfig(arch=o.arch, head=o.head),
        distill=DistillConfig(teacher=o.teacher, unlabeled=() if ensemble.distill else tuple(o.unlabeled or ()),
                              weight=o.distill_weight),
        regularization=_build(RegularizationConfig, ema_decay=o.ema_decay, llrd=o.llrd, rdrop=o.rdrop),
        ensemble=ensemble, score_fraction=o.score_fraction, dev_held_out=o.dev_held_out,
        sampler=o.sampler, epochs=o.epochs, batch_size=o.batch_size,
        learning_rate=o.lr if o.lr is not None else (SMALL_LEARNING_RATE if o.arch == "small"
                                                     else _train("learning_rate")),
        head_learning_rate=o.head_lr, weight_decay=o.weight_decay, warmup_ratio=o.warmup_ratio,
        max_length=o.max_length, gradient_accumulation=o.grad_accum, patience=o.patience, seed=o.seed,
        mixed_precision=o.mixed_precision, max_steps=o.max_steps, register=o.register, progress=not o.quiet,
    )


def finetune_command(
    train: Optional[list[str]] = typer.Option(None, "--train", help="Labelled CSV/Parquet file(s) or globs; repeatable."),
    dev: Optional[list[str]] = typer.Option(None, "--dev", help="Dev file(s): early stopping and thresholds; repeatable."),
    out: Path = typer.Option(_train("out"), "--out", "-o", help="Output model directory."),
    base: Optional[str] = typer.Option(None, "--base", help="Base encoder (registry name, Hub id or dir); default: the registry's default_base."),
    text_col: TextColOpt = default_of(DataSpec, "text_col"),
    id_col: IdColOpt = default_of(DataSpec, "id_col"),
    labels: Optional[list[str]] = typer.Option(None, "--labels", help="Label columns (comma-separated or repeated); default: detected."),
    drop_empty_labels: bool = typer.Option(default_of(DataSpec, "drop_empty_labels"), "--drop-empty-labels", help="Drop label columns with no positive example instead of failing."),
    loss: Loss = typer.Option(Loss(_loss("name")), "--loss", help="Training loss (the default, with per-class thresholds, is the best of benchmarks/results/quality-search-h100-minilm.md)."),
    class_weights: ClassWeights = typer.Option(ClassWeights(_loss("class_weights")), "--class-weights", help="Class weights for weighted-bce, focal, hybrid."),
    focal_gamma: float = typer.Option(_loss("focal_gamma"), "--focal-gamma"),
    asl_gamma_pos: float = typer.Option(_loss("asl_gamma_pos"), "--asl-gamma-pos"),
    asl_gamma_neg: float = typer.Option(_loss("asl_gamma_neg"), "--asl-gamma-neg"),
    asl_margin: float = typer.Option(_loss("asl_margin"), "--asl-margin"),
    lambda_corr: float = typer.Option(_loss("lambda_corr"), "--lambda-corr", help="hybrid: weight of the label-correlation term."),
    lambda_con: float = typer.Option(_loss("lambda_con"), "--lambda-con", help="hybrid: weight of the supervised contrastive term."),
    sampler: Sampler = typer.Option(Sampler(_train("sampler")), "--sampler", help="label-balanced oversamples texts with rare labels; shuffle: plain epochs."),
    thresholds: Thresholds = typer.Option(Thresholds(default_of(ThresholdConfig, "mode")), "--thresholds", help="Per-class thresholds tuned on dev (or cv over train), or one fixed threshold (--threshold)."),
    threshold: float = typer.Option(default_of(ThresholdConfig, "fixed"), "--threshold", help="The fixed threshold (with --thresholds fixed)."),
    threshold_source: ThresholdSource = typer.Option(ThresholdSource(default_of(ThresholdConfig, "source")), "--threshold-source", help="Tune on dev, or on out-of-fold train predictions (cv); auto: dev when it has >= 5 positives per label."),
    cv_folds: int = typer.Option(default_of(ThresholdConfig, "cv_folds"), "--cv-folds", help="Folds for --threshold-source cv."),
    epochs: int = typer.Option(_train("epochs"), "--epochs"),
    batch_size: int = typer.Option(_train("batch_size"), "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Peak learning rate (AdamW, linear warm-up, cosine decay); default {_train('learning_rate')}, {SMALL_LEARNING_RATE} with --arch small."),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Learning rate of the new head (all but the pretrained encoder); default: --lr."),
    ema_decay: Optional[float] = typer.Option(None, "--ema-decay", help="Keep an exponential moving average of the weights (decay per optimizer step, e.g. 0.99); it is what early stopping, the thresholds and the saved model use."),
    llrd: Optional[float] = typer.Option(None, "--llrd", help="Layer-wise learning-rate decay (e.g. 0.8): the top encoder layer trains at --lr, each layer below at this factor times the one above, the embeddings lowest; the head keeps --head-lr."),
    rdrop: float = typer.Option(default_of(RegularizationConfig, "rdrop"), "--rdrop", help="R-Drop alpha (e.g. 1.0): two dropout passes per batch, loss + alpha x their symmetric KL; about 1.4x the training time on 2 CPU cores. 0: off."),
    weight_decay: float = typer.Option(_train("weight_decay"), "--weight-decay"),
    warmup_ratio: float = typer.Option(_train("warmup_ratio"), "--warmup-ratio"),
    max_length: int = typer.Option(_train("max_length"), "--max-length", help="Tokens per text (training and, saved, inference)."),
    grad_accum: int = typer.Option(_train("gradient_accumulation"), "--grad-accum", help="Gradient accumulation steps."),
    patience: int = typer.Option(_train("patience"), "--patience", help="Epochs without dev macro-F1 gain before stopping."),
    seed: int = typer.Option(_train("seed"), "--seed"),
    mixed_precision: Precision = typer.Option(Precision(_train("mixed_precision")), "--mixed-precision", help="auto: fp32 on CPU, bf16 (or fp16) on GPU."),
    max_steps: Optional[int] = typer.Option(_train("max_steps"), "--max-steps", help="Stop after this many optimizer steps."),
    arch: Arch = typer.Option(Arch(default_of(ArchitectureConfig, "arch")), "--arch", help="transformer: fine-tune the base encoder; small: conv/BiLSTM/attention on the base's embeddings, far faster on CPU."),
    head: Head = typer.Option(Head(default_of(ArchitectureConfig, "head")), "--head", help="Head on the encoder's token states (custom heads load with emocli, not plain transformers)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Distil this fine-tuned model's scores on --unlabeled texts into the new model."),
    unlabeled: Optional[list[str]] = typer.Option(None, "--unlabeled", help="Unlabeled CSV/Parquet file(s) for --teacher or --distill; repeatable."),
    folds: Optional[int] = typer.Option(None, "--folds", help="Cross-fit K members (each on K-1 folds of train + dev, early-stopped on its own fold), thresholds on their out-of-fold scores; saved as one ensemble (mean probability). Costs K trainings."),
    distill: Optional[bool] = typer.Option(None, "--distill/--no-distill", help="With --folds: then train one student of the base's size on the ensemble's scores over the training (+ --unlabeled) texts, so `tag` runs one model; the ensemble is kept in OUT/ensemble."),
    recipe: Optional[Recipe] = typer.Option(None, "--recipe", help="A named recipe: folds5-distill = --folds 5 --distill; default = one model."),
    score_fraction: float = typer.Option(_train("score_fraction"), "--score-fraction", help="Share of the labelled rows (per language) held out of training, early stopping and thresholds to score the printed quality on; 0: none (then every figure is optimistic)."),
    dev_held_out: bool = typer.Option(_train("dev_held_out"), "--dev-held-out", help="Use --dev only to score the printed quality (nothing trains, stops or tunes on it)."),
    distill_weight: float = typer.Option(default_of(DistillConfig, "weight"), "--distill-weight", help="Weight of the distillation loss next to the labelled loss."),
    register: Optional[str] = typer.Option(None, "--register", help="Add the model to your registry under NAME and make it your default for `tag`."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", metavar="ORG/NAME", help="Then push the model with its card, as `emocli push OUT ORG/NAME` does (token and repo id checked before training)."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune a multi-label emotion model (imbalance-aware losses, samplers, per-class thresholds)."""
    from emocli.training.finetune import finetune

    config = train_config(dict(locals()))  # the flags as given, before anything else is bound
    if push_to_hub:
        from emocli.hub.push import check_push_target

        check_push_target(push_to_hub)
    result = finetune(config, progress_for(quiet))
    summary = {
        "out": str(result.out_dir), "labels": list(result.labels), "thresholds": list(result.thresholds),
        "threshold_source": result.threshold_source, "best_epoch": result.best_epoch,
        "train_rows": result.train_rows, "skipped_texts": result.skipped_texts, "wall_s": round(result.wall_s, 1),
        "headline": result.headline, "dev_metrics": result.dev_metrics, "registered": register,
        "notes": result.notes,
        **({"ensemble": {k: v for k, v in result.extra["ensemble"].items() if k != "out_of_fold_metrics"},
            "out_of_fold_macro_f1": result.extra["ensemble"]["out_of_fold_metrics"]["macro_f1"]}
           if "ensemble" in result.extra else {}),
    }
    if as_json:
        if push_to_hub:
            summary["push"] = _push_finetuned(result.out_dir, push_to_hub, quiet=quiet).to_json()
        print_json(summary)
        return
    _print_finetune(summary)
    if push_to_hub:
        from emocli.cli.commands.push import report_push

        report_push(_push_finetuned(result.out_dir, push_to_hub, quiet=quiet), as_json=False, quiet=quiet)


def _push_finetuned(out_dir: Path, repo: str, *, quiet: bool):
    """finetune --push-to-hub: `emocli push OUT ORG/NAME` with the defaults."""
    from emocli.hub.push import PushConfig, push_model

    return push_model(PushConfig(model=str(out_dir), repo_id=repo), progress_for(quiet))


def _f1_cells(metrics: dict | None, label: str) -> list[str]:
    m = (metrics or {}).get("per_class", {}).get(label)
    return [f"{m['f1']:.3f}", str(m["support"])] if m else ["-", "-"]


def _print_finetune(summary: dict) -> None:
    from rich.table import Table

    held_out = summary["headline"] if summary["headline"] and summary["headline"].get("scored_on") else None
    tuned = summary["dev_metrics"]
    table = Table(title=f"model saved to {summary['out']}", title_justify="left")
    table.add_column("label")
    table.add_column("threshold", justify="right")
    for name, metrics in (("held-out", held_out), ("dev-tuned", tuned)):
        if metrics:
            table.add_column(f"{name} F1", justify="right")
            table.add_column("support", justify="right")
    for label, value in zip(summary["labels"], summary["thresholds"]):
        table.add_row(label, f"{value:.2f}", *(cell for metrics in (held_out, tuned) if metrics
                                               for cell in _f1_cells(metrics, label)))
    out_console.print(table)
    if held_out:
        out_console.print(f"held-out macro-F1 {held_out['macro_f1']:.3f}, micro-F1 {held_out['micro_f1']:.3f} on "
                          f"{held_out['scored_on']}: they trained, stopped and tuned nothing")
    elif summary["headline"]:
        err_console.print(f"[yellow]warning:[/] {summary['headline']['warning']}")
    if tuned:
        out_console.print(f"dev-tuned macro-F1 {tuned['macro_f1']:.3f}, micro-F1 {tuned['micro_f1']:.3f} "
                          f"(optimistic: these dev rows chose the epoch and the thresholds)")
    if "out_of_fold_macro_f1" in summary:
        out_console.print(f"out-of-fold macro-F1 {summary['out_of_fold_macro_f1']:.3f} over "
                          f"{summary['ensemble']['folds']} folds (optimistic: each fold stopped its member and "
                          f"all tuned the thresholds)")
    out_console.print(f"best epoch {summary['best_epoch']}, thresholds from {summary['threshold_source']}, "
                      f"{summary['train_rows']} rows trained ({summary['skipped_texts']} empty texts skipped), "
                      f"{summary['wall_s']:.0f}s")
    if summary["registered"]:
        out_console.print(f"registered as {summary['registered']!r} (now your default model for `emocli tag`)")
    for note in summary["notes"]:
        err_console.print(f"note: {note}", style="dim", markup=False, soft_wrap=True)


def evaluate_command(
    data: list[str] = typer.Option(..., "--data", help="Labelled CSV/Parquet file(s) or globs; repeatable."),
    model: ModelOpt = None,
    text_col: TextColOpt = default_of(DataSpec, "text_col"),
    id_col: IdColOpt = default_of(DataSpec, "id_col"),
    thresholds: EvalThresholds = typer.Option(EvalThresholds.saved, "--thresholds", help="The model's saved thresholds, or one fixed threshold."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One threshold for every label (implies --thresholds fixed)."),
    batch_size: int = typer.Option(default_of(EvalConfig, "batch_size"), "--batch-size"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Default: the model's own."),
    device: DeviceOpt = default_of(EvalConfig, "device"),
    as_json: Annotated[bool, json_option("Print the metrics as JSON on stdout.")] = False,
) -> None:
    """Score a model on labelled data: micro/macro F1, per-class P/R/F1, ROC-AUC, Jaccard, Hamming, per language."""
    from emocli.inference.evaluate import evaluate

    if threshold is None and thresholds is EvalThresholds.fixed:
        threshold = default_of(ThresholdConfig, "fixed")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise InputError(f"--threshold {threshold} must lie strictly between 0 and 1")
    report = evaluate(EvalConfig(model=model, data=tuple(data), spec=DataSpec(text_col=text_col, id_col=id_col),
                                 threshold=threshold, batch_size=batch_size, device=device, max_length=max_length))
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_report(report: dict) -> None:
    from rich.table import Table

    overall = Table(title=f"{report['model']} on {report['rows']} rows", title_justify="left")
    for name in ("micro F1", "macro F1", "ROC-AUC macro", "Jaccard", "Hamming loss", "subset acc."):
        overall.add_column(name, justify="right")
    overall.add_row(*(_fmt(report[key]) for key in ("micro_f1", "macro_f1", "roc_auc_macro", "jaccard_samples",
                                                   "hamming_loss", "subset_accuracy")))
    out_console.print(overall)
    per_class = Table(title="per class", title_justify="left")
    for name in ("label", "threshold", "precision", "recall", "F1", "ROC-AUC", "support", "known rows"):
        per_class.add_column(name, justify="left" if name == "label" else "right")
    for label, m in report["per_class"].items():
        per_class.add_row(label, f"{report['thresholds'][label]:.2f}", _fmt(m["precision"]), _fmt(m["recall"]),
                          _fmt(m["f1"]), _fmt(m["roc_auc"]), str(m["support"]), str(m["known"]))
    out_console.print(per_class)
    if report.get("by_language"):
        languages = Table(title="per language", title_justify="left")
        labels = list(report["per_class"])
        for name in ("language", "rows", "micro F1", "macro F1", *labels):
            languages.add_column(name, justify="left" if name == "language" else "right")
        for language, m in report["by_language"].items():
            languages.add_row(language, str(m["rows"]), _fmt(m["micro_f1"]), _fmt(m["macro_f1"]),
                              *(_fmt(m["per_class"][label]["f1"]) if label in m["per_class"] else "-"
                                for label in labels))
        out_console.print(languages)
    if report.get("skipped_texts"):
        err_console.print(f"[dim]{report['skipped_texts']} rows with empty text skipped[/]")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_command)
    app.command("evaluate")(evaluate_command)
