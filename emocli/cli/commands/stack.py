"""`emocli stack`: a BiLSTM meta-learner over frozen fine-tuned models (torch is imported only when it runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emocli.cli.options import DEVICE_HELP, IdColOpt, JsonOpt, QuietOpt, TextColOpt, choices, default_of, device_option
from emocli.errors import InputError
from emocli.training.config import LOSSES, THRESHOLD_SOURCES, DataSpec, LossConfig, ThresholdConfig
from emocli.cli.progress import progress_for
from emocli.cli.console import out_console, print_json

Loss = choices("Loss", LOSSES)
ThresholdSource = choices("ThresholdSource", THRESHOLD_SOURCES)
# The StackConfig defaults are restated below (its module imports torch); tests/test_cli_layer.py checks they agree.


def stack_command(
    member: Optional[list[str]] = typer.Option(None, "--member", "-m", help="A fine-tuned emocli model (registry name, Hub id or dir); repeat for 2+ members."),
    train: Optional[list[str]] = typer.Option(None, "--train", help="Labelled CSV/Parquet file(s) the meta-learner trains on; repeatable."),
    dev: Optional[list[str]] = typer.Option(None, "--dev", help="Dev file(s): early stopping and thresholds; repeatable."),
    out: Path = typer.Option(Path("emocli-stack"), "--out", "-o", help="Output model directory."),
    loss: Loss = typer.Option(Loss("hybrid"), "--loss", help="Meta-learner loss (hybrid, as in the research)."),
    bundle: bool = typer.Option(False, "--bundle", help="Copy the members into the stack directory (else: referenced by path + sha256)."),
    text_col: TextColOpt = default_of(DataSpec, "text_col"),
    id_col: IdColOpt = default_of(DataSpec, "id_col"),
    threshold_source: ThresholdSource = typer.Option(ThresholdSource(default_of(ThresholdConfig, "source")), "--threshold-source", help="Tune per-class thresholds on dev, or on out-of-fold train predictions (cv)."),
    epochs: int = typer.Option(40, "--epochs", help="Meta-learner epochs (early stopping on dev macro-F1)."),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr"),
    patience: int = typer.Option(6, "--patience"),
    seed: int = typer.Option(42, "--seed"),
    device: Annotated[str, device_option("Where the members run: " + DEVICE_HELP)] = "auto",
    register: Optional[str] = typer.Option(None, "--register", help="Add the stack to your registry under NAME and make it your default for `tag`."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Stack fine-tuned models under a BiLSTM meta-learner; the stack is one model dir for `tag` and `evaluate`."""
    from emocli.training.stack import StackConfig, build_stack

    if not member:
        raise InputError("no members: pass --member M1 --member M2 (fine-tuned emocli models)")
    if not train:
        raise InputError("no training data: pass --train FILE (labelled CSV/Parquet) for the meta-learner")
    config = StackConfig(
        members=tuple(member), train=tuple(train), dev=tuple(dev or ()), out=out,
        data=DataSpec(text_col=text_col, id_col=id_col), loss=LossConfig(name=loss.value),
        thresholds=ThresholdConfig(source=threshold_source.value), bundle=bundle, epochs=epochs,
        batch_size=batch_size, learning_rate=lr, patience=patience, seed=seed, device=device, register=register,
        progress=not quiet,
    )
    result = build_stack(config, progress_for(quiet))
    summary = {
        "out": str(result.out_dir), "members": list(member), "bundled": bundle, "labels": list(result.labels),
        "thresholds": list(result.thresholds), "threshold_source": result.threshold_source,
        "best_epoch": result.best_epoch, "train_rows": result.train_rows, "wall_s": round(result.wall_s, 1),
        "dev_metrics": result.dev_metrics, "registered": register,
    }
    if as_json:
        print_json(summary)
        return
    metrics = result.dev_metrics
    scores = f"dev macro-F1 {metrics['macro_f1']:.3f}, micro-F1 {metrics['micro_f1']:.3f}; " if metrics else ""
    out_console.print(f"stack of {len(member)} members saved to {result.out_dir}" + (" (members bundled)" if bundle else ""))
    out_console.print(scores + f"best epoch {result.best_epoch}, thresholds from {result.threshold_source}: "
                      + ", ".join(f"{label} {t:.2f}" for label, t in zip(result.labels, result.thresholds))
                      + f", {result.wall_s:.0f}s")
    if register:
        out_console.print(f"registered as {register!r} (now your default model for `emocli tag`)")


def register(app: typer.Typer) -> None:
    app.command("stack")(stack_command)
