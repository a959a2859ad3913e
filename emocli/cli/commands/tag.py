"""`emocli tag`: stream CSV/Parquet corpora through the model into DuckDB (resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from emocli.cli.options import DeviceOpt, ModelOpt, TextColOpt, choices, db_option, default_of, id_col_option, json_option, quiet_option, table_option
from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.cli.console import err_console, print_json
from emocli.cli.progress import progress_for
from emocli.inference.ray_engine import ENGINES, RayConfig

EngineChoice = choices("EngineChoice", ENGINES)

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = ("auto", "fp32", "bf16", "fp16")


def _split_keep(keep: Optional[List[str]]) -> tuple[str, ...] | None:
    if not keep:
        return None
    return tuple(c.strip() for item in keep for c in item.split(",") if c.strip())


def tag_command(
    inputs: List[str] = typer.Argument(..., metavar="INPUT...",
                                       help="CSV/TSV (also .gz, .zst) or Parquet files, globs or directories."),
    model: ModelOpt = None,
    db: Annotated[Path, db_option("DuckDB file to write.")] = Path(DEFAULT_DB),
    table: Annotated[str, table_option("Table for the scores.")] = DEFAULT_TABLE,
    text_col: TextColOpt = "text",
    id_col: Annotated[Optional[str], id_col_option("Column holding row ids "
                                                   "(default: `id` if present, else <file>:<row>).")] = None,
    keep: Optional[List[str]] = typer.Option(None, "--keep",
                                             help="Input columns to keep (repeat or comma-separate) (default: all but the text)."),
    keep_text: bool = typer.Option(False, "--keep-text", help="Also store the text (as column `text`)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1,
                                             help="Tokens per text; longer texts are truncated and flagged (default: the model's)."),
    batch_tokens: Optional[int] = typer.Option(None, "--batch-tokens", min=1,
                                               help="Padded tokens per forward pass (default: 2048 on CPU, 131072 on GPU)."),
    device: DeviceOpt = "auto",
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16/fp16 on GPU, fp32 on CPU), fp32, bf16 or fp16."),
    backend: str = typer.Option("auto", "--backend", help="torch, onnx (ONNX Runtime: the CPU, or a GPU with onnxruntime-gpu; "
                                "a torch model is exported once and cached) or auto (the model's own: onnx for an "
                                "`emocli export onnx` dir)."),
    quantize: bool = typer.Option(False, "--quantize",
                                  help="CPU int8: torch dynamic int8 Linear layers, or with --backend onnx the int8 "
                                       "ONNX model (faster; see benchmarks/results/onnx-cpu-minilm.json for how far "
                                       "scores move)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads for the model (default: all cores)."),
    window_rows: Optional[int] = typer.Option(None, "--window-rows", min=1,
                                              help="Rows sorted by length and committed together "
                                                   "(default: 4096 on CPU, 65536 on GPU)."),
    detect_language: Optional[bool] = typer.Option(
        None, "--detect-language/--no-detect-language",
        help="Store each row's detected language (ISO 639-3, `und` when unsure) and `language_score` "
             "(default: when the input has no language/lang column)."),
    language_col: Optional[str] = typer.Option(None, "--language-col",
                                               help="Input column naming each row's language (default: language "
                                                    "or lang if present); kept as is."),
    resume: bool = typer.Option(True, "--resume/--overwrite",
                                help="Continue the same run after a crash, or drop the table and start afresh."),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="Tag at most this many rows (of the run)."),
    engine: EngineChoice = typer.Option(ENGINES[0], "--engine",
                               help="local (this process) or ray (Ray Data actors; pip install \"emocli[ray]\")."),
    address: Optional[str] = typer.Option(None, "--address",
                                          help="ray: join this cluster (auto or HOST:PORT) (default: a local Ray)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="ray: scoring actors (default: as many as the CPUs/GPUs allow)."),
    gpus_per_worker: float = typer.Option(default_of(RayConfig, "gpus_per_worker"), "--gpus-per-worker", min=0,
                                          help="ray: GPUs each actor takes."),
    cpus_per_worker: float = typer.Option(default_of(RayConfig, "cpus_per_worker"), "--cpus-per-worker", min=0.01,
                                          help="ray: CPUs each actor takes."),
    quiet: Annotated[bool, quiet_option("No progress bar or summary line.")] = False,
    as_json: Annotated[bool, json_option("Print the run summary as JSON on stdout.")] = False,
) -> None:
    """Score every row of INPUT with an emotion model into a DuckDB table (resumable: re-run after a crash)."""
    from emocli.errors import InputError
    from emocli.inference.engine import BACKENDS, EngineConfig
    from emocli.inference.tagger import TagConfig, tag

    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    config = TagConfig(
        inputs=tuple(inputs), model=model, db=db, table=table, text_col=text_col, id_col=id_col,
        keep=_split_keep(keep), keep_text=keep_text, limit=limit, overwrite=not resume,
        detect_language=detect_language, language_col=language_col,
        engine=EngineConfig(device=device, dtype=dtype, max_length=max_length, batch_tokens=batch_tokens,
                            window_rows=window_rows, quantize=quantize, threads=threads, backend=backend),
        runner=EngineChoice(engine).value, ray=RayConfig(address=address, workers=workers, gpus_per_worker=gpus_per_worker,
                                     cpus_per_worker=cpus_per_worker),
    )
    summary = tag(config, progress_for(quiet or as_json))
    if not quiet:
        for note in summary.notes:
            err_console.print(f"note: {note}", style="dim", markup=False, soft_wrap=True)
        err_console.print(_summary_line(summary), soft_wrap=True, markup=False)
    if as_json:
        print_json(summary.as_dict())


def _summary_line(summary) -> str:
    where = f"{summary.db}:{summary.table}"
    if summary.rows == 0 and summary.status == "done":
        return (f"nothing to do: run {summary.run_id} is complete in {where} ({summary.run_rows:,} rows); "
                "--overwrite starts afresh")
    resumed = f", resumed after {summary.resumed_from:,}" if summary.resumed_from else ""
    return (f"tagged {summary.rows:,} rows (skipped {summary.skipped:,}, truncated {summary.truncated:,}{resumed}) "
            f"in {summary.seconds:.1f} s, {summary.rows_per_s:,.0f} rows/s with {summary.model} on {summary.device} "
            f"-> {where} [run {summary.run_id}, {summary.status}]"
            + ("; rows are left: run it again (a larger --limit, or none) to continue" if summary.status != "done" else ""))


def register(app: typer.Typer) -> None:
    app.command("tag")(tag_command)
