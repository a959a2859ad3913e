"""`emocli export onnx`: a trained model -> a verified ONNX directory that `tag --model` runs (ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from emocli.cli.commands.common import reflow_help
from emocli.cli.console import err_console, out_console, print_json
from emocli.cli.options import JsonOpt, QuietOpt, default_of
from emocli.cli.progress import progress_for
from emocli.export.config import OnnxExportConfig


def onnx_command(
    model: str = typer.Argument(..., metavar="MODEL", help="The model to export (directory, registry name or Hub id)."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the export (created)."),
    int8: bool = typer.Option(False, "--int8", help="Dynamic int8 weights (onnxruntime.quantization): the fastest "
                              "CPU model. On an x86 CPU without VNNI the weights use 7 bits, as onnxruntime advises "
                              "there."),
    dev: Optional[List[str]] = typer.Option(None, "--dev", help="Labelled file(s) the model did not train on: the "
                                            "score check and macro-F1 run on them (default: built-in probe texts, "
                                            "no F1)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1, help="Tokens per text while verifying "
                                             "(default: the model's)."),
    opset: int = typer.Option(default_of(OnnxExportConfig, "opset"), "--opset", min=13, help="ONNX opset."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads while verifying (default: all cores)."),
    fuse: bool = typer.Option(default_of(OnnxExportConfig, "fuse"), "--fuse/--no-fuse",
                              help="BERT-family encoders: fuse attention, layer norms and GELU with onnxruntime's "
                              "transformer optimizer (faster; --no-fuse keeps the plain trace)."),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export MODEL to ONNX (dynamic batch and sequence axes), optionally int8, then verify it on texts it never saw
    against the torch fp32 model: max |score difference| within 1e-4 for fp32; for int8 within 0.03, or within
    torch int8's (`tag --quantize`) own difference where that is larger; with --dev, macro-F1 no more than 0.005
    below fp32. The directory carries the tokenizer, labels and thresholds: `emocli tag --model DIR`.
    Exits 1 when the verification fails (the directory is kept, its emocli.json says so)."""
    from emocli.export.onnx_export import export_onnx

    config = OnnxExportConfig(model=model, out=out, int8=int8, dev=tuple(dev or ()), max_length=max_length,
                              opset=opset, threads=threads, fuse=fuse)
    result = export_onnx(config, progress_for(quiet or as_json))
    if as_json:
        print_json(result.as_dict())
    elif not quiet:
        out_console.print(_report(result), markup=False, soft_wrap=True)
    for note in result.notes:
        if not quiet:
            err_console.print(f"note: {note}", style="dim", markup=False, soft_wrap=True)
    if not result.verification.passed:
        err_console.print(f"warning: {result.out_dir}: the export failed its verification "
                          f"({_verdict(result.verification)}); do not tag with it", style="yellow", markup=False,
                          soft_wrap=True)
        raise typer.Exit(1)


def _report(result) -> str:
    v = result.verification
    bits = " (7-bit weights: this CPU has no VNNI)" if result.int8_weight_bits == 7 else ""
    lines = [f"exported {result.source} ({result.architecture}) -> {result.out_dir}: ONNX {result.precision}{bits}, "
             f"opset {result.opset}, {result.size_mb:.1f} MB, {result.seconds:.1f} s",
             f"verified on {v.texts:,} texts ({v.scored_on}) against torch fp32: {_verdict(v)}"]
    return "\n".join(lines)


def _verdict(v) -> str:
    verdict = "ok" if v.scores_ok else "FAILED"
    if v.torch_int8_max_abs_diff is None:
        parts = [f"max |score diff| {v.max_abs_diff:.2g} (tolerance {v.tolerance:g}: {verdict})"]
    else:
        parts = [f"max |score diff| {v.max_abs_diff:.2g}, 99% <= {v.p99_abs_diff:.2g} (tolerance {v.tolerance:g}, "
                 f"torch int8 {v.torch_int8_max_abs_diff:.2g}: {verdict})"]
    if v.f1_delta is not None:
        parts.append(f"macro-F1 {v.macro_f1_onnx:.4f} vs {v.macro_f1_torch:.4f} (delta {v.f1_delta:+.4f}, "
                     f"at most {v.f1_tolerance:g} lost: {'ok' if v.f1_ok else 'FAILED'})")
    return "; ".join(parts)


EXPORT_HELP = """Export a trained model to another runtime.

    emocli export onnx my-model --int8 --dev data/dev/eng.csv --out my-model-onnx
"""


def register(app: typer.Typer) -> None:
    export_app = typer.Typer(name="export", no_args_is_help=True, rich_markup_mode="rich",
                             context_settings={"help_option_names": ["-h", "--help"]}, help=reflow_help(EXPORT_HELP))
    export_app.command("onnx", help=reflow_help(onnx_command))(onnx_command)
    app.add_typer(export_app, name="export")
