"""`emocli finetune` and `emocli evaluate`: thin flags over emocli.training.finetune (torch is imported only when they run)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from emocli.errors import InputError
from emocli.model.heads import ARCHS, HEADS, SMALL_LEARNING_RATE
from emocli.cli.commands.common import err_console, out_console, print_json


class Loss(str, Enum):
    bce = "bce"
    weighted_bce = "weighted-bce"
    focal = "focal"
    asymmetric = "asymmetric"
    hybrid = "hybrid"


class ClassWeights(str, Enum):
    inverse = "inverse"
    sqrt_inverse = "sqrt-inverse"
    effective_number = "effective-number"


class Sampler(str, Enum):
    shuffle = "shuffle"
    label_balanced = "label-balanced"


class Thresholds(str, Enum):
    per_class = "per-class"
    fixed = "fixed"


class ThresholdSource(str, Enum):
    auto = "auto"
    dev = "dev"
    cv = "cv"


Arch = Enum("Arch", {name: name for name in ARCHS}, type=str)
Head = Enum("Head", {name: name for name in HEADS}, type=str)


class EvalThresholds(str, Enum):
    saved = "saved"
    fixed = "fixed"


class Precision(str, Enum):
    auto = "auto"
    no = "no"
    bf16 = "bf16"
    fp16 = "fp16"


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


def finetune_command(
    train: Optional[list[str]] = typer.Option(None, "--train", help="Labelled CSV/Parquet file(s) or globs; repeatable."),
    dev: Optional[list[str]] = typer.Option(None, "--dev", help="Dev file(s): early stopping and thresholds; repeatable."),
    out: Path = typer.Option(Path("emocli-model"), "--out", "-o", help="Output model directory."),
    base: Optional[str] = typer.Option(None, "--base", help="Base encoder (registry name, Hub id or dir); default: the registry's default_base."),
    text_col: str = typer.Option("text", "--text-col", help="Text column."),
    id_col: str = typer.Option("id", "--id-col", help="Id column (never a label)."),
    labels: Optional[list[str]] = typer.Option(None, "--labels", help="Label columns (comma-separated or repeated); default: detected."),
    drop_empty_labels: bool = typer.Option(False, "--drop-empty-labels", help="Drop label columns with no positive example instead of failing."),
    loss: Loss = typer.Option(Loss.asymmetric, "--loss", help="Training loss (default asymmetric: with per-class thresholds, the best of benchmarks/results/quality-search.md)."),
    class_weights: ClassWeights = typer.Option(ClassWeights.sqrt_inverse, "--class-weights", help="Class weights for weighted-bce, focal, hybrid."),
    focal_gamma: float = typer.Option(2.0, "--focal-gamma"),
    asl_gamma_pos: float = typer.Option(0.0, "--asl-gamma-pos"),
    asl_gamma_neg: float = typer.Option(4.0, "--asl-gamma-neg"),
    asl_margin: float = typer.Option(0.05, "--asl-margin"),
    lambda_corr: float = typer.Option(0.1, "--lambda-corr", help="hybrid: weight of the label-correlation term."),
    lambda_con: float = typer.Option(0.1, "--lambda-con", help="hybrid: weight of the supervised contrastive term."),
    sampler: Sampler = typer.Option(Sampler.shuffle, "--sampler", help="label-balanced oversamples texts with rare labels; shuffle: plain epochs."),
    thresholds: Thresholds = typer.Option(Thresholds.per_class, "--thresholds", help="Per-class thresholds tuned on dev (or cv over train), or one fixed threshold (--threshold, default 0.5)."),
    threshold: float = typer.Option(0.5, "--threshold", help="The fixed threshold (with --thresholds fixed)."),
    threshold_source: ThresholdSource = typer.Option(ThresholdSource.auto, "--threshold-source", help="Tune on dev, or on out-of-fold train predictions (cv); auto: dev when it has >= 5 positives per label."),
    cv_folds: int = typer.Option(3, "--cv-folds", help="Folds for --threshold-source cv."),
    epochs: int = typer.Option(5, "--epochs"),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Peak learning rate (AdamW, linear warm-up, cosine decay); default 1e-4, {SMALL_LEARNING_RATE} with --arch small."),
    head_lr: Optional[float] = typer.Option(None, "--head-lr", help="Learning rate of the new head (all but the pretrained encoder); default: --lr."),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    warmup_ratio: float = typer.Option(0.1, "--warmup-ratio"),
    max_length: int = typer.Option(64, "--max-length", help="Tokens per text (training and, saved, inference)."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Gradient accumulation steps."),
    patience: int = typer.Option(2, "--patience", help="Epochs without dev macro-F1 gain before stopping."),
    seed: int = typer.Option(42, "--seed"),
    mixed_precision: Precision = typer.Option(Precision.auto, "--mixed-precision", help="auto: fp32 on CPU, bf16 (or fp16) on GPU."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    arch: Arch = typer.Option(Arch("transformer"), "--arch", help="transformer: fine-tune the base encoder; small: conv/BiLSTM/attention on the base's embeddings, far faster on CPU."),
    head: Head = typer.Option(Head("linear"), "--head", help="Head on the encoder's token states (custom heads load with emocli, not plain transformers)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Distil this fine-tuned model's scores on --unlabeled texts into the new model."),
    unlabeled: Optional[list[str]] = typer.Option(None, "--unlabeled", help="Unlabeled CSV/Parquet file(s) for --teacher; repeatable."),
    distill_weight: float = typer.Option(1.0, "--distill-weight", help="Weight of the distillation loss next to the labelled loss."),
    register: Optional[str] = typer.Option(None, "--register", help="Add the model to your registry under NAME and make it your default for `tag`."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Fine-tune a multi-label emotion model (imbalance-aware losses, samplers, per-class thresholds)."""
    from emocli.training.distill import DistillConfig
    from emocli.model.heads import ArchitectureConfig
    from emocli.training.labelled import DataSpec
    from emocli.training.losses import LossConfig
    from emocli.training.thresholds import ThresholdConfig
    from emocli.training.finetune import TrainConfig, finetune

    config = _build(
        TrainConfig, train=_train_inputs(train), dev=tuple(dev or ()), out=out, base=base,
        data=_build(DataSpec, text_col=text_col, id_col=id_col, labels=_split_labels(labels),
                    drop_empty_labels=drop_empty_labels),
        loss=_build(LossConfig, name=loss.value, class_weights=class_weights.value, focal_gamma=focal_gamma,
                    asl_gamma_pos=asl_gamma_pos, asl_gamma_neg=asl_gamma_neg, asl_margin=asl_margin,
                    lambda_corr=lambda_corr, lambda_con=lambda_con),
        thresholds=_build(ThresholdConfig, mode=thresholds.value, fixed=threshold, source=threshold_source.value,
                          cv_folds=cv_folds),
        architecture=ArchitectureConfig(arch=arch.value, head=head.value),
        distill=DistillConfig(teacher=teacher, unlabeled=tuple(unlabeled or ()), weight=distill_weight),
        sampler=sampler.value, epochs=epochs, batch_size=batch_size,
        learning_rate=lr if lr is not None else (SMALL_LEARNING_RATE if arch.value == "small" else 1e-4),
        head_learning_rate=head_lr, weight_decay=weight_decay,
        warmup_ratio=warmup_ratio, max_length=max_length, gradient_accumulation=grad_accum, patience=patience,
        seed=seed, mixed_precision=mixed_precision.value, max_steps=max_steps, register=register,
        progress=not quiet,
    )
    result = finetune(config)
    summary = {
        "out": str(result.out_dir), "labels": list(result.labels), "thresholds": list(result.thresholds),
        "threshold_source": result.threshold_source, "best_epoch": result.best_epoch,
        "train_rows": result.train_rows, "skipped_texts": result.skipped_texts, "wall_s": round(result.wall_s, 1),
        "dev_metrics": result.dev_metrics, "registered": register,
    }
    if as_json:
        print_json(summary)
        return
    _print_finetune(summary)


def _print_finetune(summary: dict) -> None:
    from rich.table import Table

    metrics = summary["dev_metrics"]
    table = Table(title=f"model saved to {summary['out']}", title_justify="left")
    table.add_column("label")
    table.add_column("threshold", justify="right")
    if metrics:
        table.add_column("dev F1", justify="right")
        table.add_column("support", justify="right")
    for label, value in zip(summary["labels"], summary["thresholds"]):
        row = [label, f"{value:.2f}"]
        if metrics:
            m = metrics["per_class"].get(label)
            row += [f"{m['f1']:.3f}", str(m["support"])] if m else ["-", "-"]
        table.add_row(*row)
    out_console.print(table)
    line = (f"best epoch {summary['best_epoch']}, thresholds from {summary['threshold_source']}, "
            f"{summary['train_rows']} train rows ({summary['skipped_texts']} empty texts skipped), "
            f"{summary['wall_s']:.0f}s")
    if metrics:
        line = f"dev macro-F1 {metrics['macro_f1']:.3f}, micro-F1 {metrics['micro_f1']:.3f}; " + line
    out_console.print(line)
    if summary["registered"]:
        out_console.print(f"registered as {summary['registered']!r} (now your default model for `emocli tag`)")


def evaluate_command(
    data: list[str] = typer.Option(..., "--data", help="Labelled CSV/Parquet file(s) or globs; repeatable."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model (registry name, Hub id or dir); default: your default model."),
    text_col: str = typer.Option("text", "--text-col"),
    id_col: str = typer.Option("id", "--id-col"),
    thresholds: EvalThresholds = typer.Option(EvalThresholds.saved, "--thresholds", help="The model's saved thresholds, or one fixed threshold."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One threshold for every label (implies --thresholds fixed)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Default: the model's own."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:1 ... (auto: GPU if any)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
) -> None:
    """Score a model on labelled data: micro/macro F1, per-class P/R/F1, ROC-AUC, Jaccard, Hamming, per language."""
    from emocli.training.labelled import DataSpec
    from emocli.inference.evaluate import EvalConfig, evaluate

    if threshold is None and thresholds is EvalThresholds.fixed:
        threshold = 0.5
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
