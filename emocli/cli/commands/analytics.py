"""summarize, cooccur, examples, query: DuckDB analytics over the tagged scores (no torch, no model)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.cli.console import err_console, out_console
from emocli.cli.options import DbOpt, TableOpt

RUN_HELP = "Only this run (repeatable). Default: every run of the table, kept apart per model."
BY_HELP = "Group by a column, or a time bucket of a timestamp column: day|week|month|year:COLUMN. Repeat to nest."
WHERE_HELP = ("Filter rows, e.g. \"language = 'eng' AND anger > 0.5\": comparisons, IN, BETWEEN, IS NULL, LIKE on "
              "columns, joined by AND/OR/NOT.")
FORMAT_HELP = "table (coloured, default on stdout), csv, json, markdown or parquet (needs --out). Default from --out."


IN_DOMAIN_HELP = ("Keep only rows in the model's training languages (runs.model_languages; rows of undetermined "
                  "language are dropped too).")


def _in_domain_option():
    return typer.Option(False, "--in-domain-only", help=IN_DOMAIN_HELP)


def _run_option():
    return typer.Option(None, "--run", help=RUN_HELP)


def _by_option(help_text: str = BY_HELP):
    return typer.Option(None, "--by", help=help_text)


def _where_option():
    return typer.Option(None, "--where", help=WHERE_HELP)


def _format_option():
    return typer.Option(None, "--format", "-f", help=FORMAT_HELP)


def _out_option():
    return typer.Option(None, "--out", "-o", help="Write to this file instead of stdout.")


def _plot_option(help_text: str):
    return typer.Option(None, "--plot", help=help_text)


def summarize(
    by: Optional[List[str]] = _by_option(),
    db: DbOpt = Path(DEFAULT_DB),
    table: TableOpt = DEFAULT_TABLE,
    run: Optional[List[str]] = _run_option(),
    where: Optional[str] = _where_option(),
    metric: str = typer.Option("prevalence", "--metric", "-m",
                               help="prevalence (share of texts predicted with the label), mean (mean score) "
                                    "or count (texts predicted with it)."),
    min_count: int = typer.Option(0, "--min-count", help="Drop groups with fewer scored texts."),
    sort: Optional[str] = typer.Option(None, "--sort", help="Order groups by this label (highest first)."),
    in_domain_only: bool = _in_domain_option(),
    fmt: Optional[str] = _format_option(),
    out: Optional[Path] = _out_option(),
    plot: Optional[Path] = _plot_option("Write a heatmap (groups x emotions), or a line chart per emotion "
                                        "when grouping by a time bucket, to this .png/.svg/.pdf."),
) -> None:
    """Which emotions, where, when: per group the number of texts, each label's prevalence (or mean
    score), the dominant emotion and the any/no emotion shares."""
    from emocli.analytics.queries import SummaryRequest, summarize as run_summary
    from emocli.cli.render import emit, resolve_format

    output_format = resolve_format(fmt, out)
    _check_plot(plot)
    frame = run_summary(db, table, SummaryRequest(by=tuple(by or ()), where=where, metric=metric.lower(),
                                                  min_count=min_count, sort=sort, runs=tuple(run or ()),
                                                  in_domain_only=in_domain_only))
    emit(frame, output_format, out, out_console, err_console)
    if plot is not None:
        from emocli.analytics.plots import summary_plot

        err_console.print(f"plot written to {summary_plot(frame, plot)}", markup=False)


def cooccur(
    by: Optional[List[str]] = _by_option("Compute one matrix per group (a column or BUCKET:COLUMN); repeatable."),
    db: DbOpt = Path(DEFAULT_DB),
    table: TableOpt = DEFAULT_TABLE,
    run: Optional[List[str]] = _run_option(),
    where: Optional[str] = _where_option(),
    min_count: int = typer.Option(0, "--min-count", help="Drop groups with fewer scored texts."),
    in_domain_only: bool = _in_domain_option(),
    fmt: Optional[str] = _format_option(),
    out: Optional[Path] = _out_option(),
    plot: Optional[Path] = _plot_option("Write a lift heatmap (label x label, counts written in) per group."),
) -> None:
    """Which emotions come together: for each pair of predicted labels, the number of texts with both and
    the lift P(a,b) / (P(a) P(b)) (above 1: more often together than by chance)."""
    from emocli.analytics.queries import CooccurRequest, cooccurrence
    from emocli.cli.render import cooccur_tables, emit, print_notes, print_table, resolve_format

    output_format = resolve_format(fmt, out)
    _check_plot(plot)
    frame = cooccurrence(db, table, CooccurRequest(by=tuple(by or ()), where=where, min_count=min_count,
                                                   runs=tuple(run or ()), in_domain_only=in_domain_only))
    if output_format == "table" and out is None:
        print_notes(frame, err_console)
        if not frame.rows:
            err_console.print("[yellow]no rows[/] (check --where, --run and --min-count)")
        for rich_table in cooccur_tables(frame):
            print_table(out_console, rich_table)
    else:
        emit(frame, output_format, out, out_console, err_console)
    if plot is not None:
        from emocli.analytics.plots import cooccur_plot

        err_console.print(f"plot written to {cooccur_plot(frame, plot)}", markup=False)


def examples(
    label: str = typer.Option(..., "--label", "-l", help="The emotion whose highest-scoring texts to show."),
    by: Optional[List[str]] = _by_option("Top texts per group (a column or BUCKET:COLUMN); repeatable."),
    k: int = typer.Option(5, "-k", "--top", help="Texts per group."),
    db: DbOpt = Path(DEFAULT_DB),
    table: TableOpt = DEFAULT_TABLE,
    run: Optional[List[str]] = _run_option(),
    where: Optional[str] = _where_option(),
    fmt: Optional[str] = _format_option(),
    out: Optional[Path] = _out_option(),
) -> None:
    """The texts that score highest for a label, per group (needs the text kept: `emocli tag --keep-text`)."""
    from emocli.analytics.queries import ExamplesRequest, examples as top_examples
    from emocli.cli.render import emit, resolve_format

    output_format = resolve_format(fmt, out)
    frame = top_examples(db, table, ExamplesRequest(label=label, by=tuple(by or ()), k=k, where=where,
                                                    runs=tuple(run or ())))
    emit(frame, output_format, out, out_console, err_console)


def query(
    sql: str = typer.Argument(..., help="SQL to run, e.g. \"SELECT language, count(*) FROM scores GROUP BY 1\"."),
    db: DbOpt = Path(DEFAULT_DB),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="table (default), csv, json or markdown."),
    out: Optional[Path] = _out_option(),
) -> None:
    """Run read-only SQL over the database (writes and file access are refused) and print the result."""
    from emocli.analytics.queries import run_query
    from emocli.cli.render import MAX_TABLE_ROWS, QUERY_FORMATS, emit, resolve_format

    output_format = resolve_format(fmt, out, QUERY_FORMATS)
    max_rows = MAX_TABLE_ROWS if output_format == "table" and out is None else None
    emit(run_query(db, sql, max_rows), output_format, out, out_console, err_console)


def _check_plot(plot: Optional[Path]) -> None:
    if plot is not None:
        from emocli.analytics.plots import check_plot_path

        check_plot_path(plot)


def register(app: typer.Typer) -> None:
    app.command("summarize")(summarize)
    app.command("cooccur")(cooccur)
    app.command("examples")(examples)
    app.command("query")(query)
