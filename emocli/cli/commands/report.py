"""report: one self-contained HTML page of the analytics (no torch, no model)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from emocli.analytics.report import COOCCUR_MEASURES, ReportRequest
from emocli.cli.commands.analytics import RUN_HELP, WHERE_HELP
from emocli.cli.console import err_console
from emocli.cli.options import DbOpt, QuietOpt, TableOpt, choices, default_of
from emocli.config import DEFAULT_DB, DEFAULT_TABLE

CooccurMeasure = choices("CooccurMeasure", COOCCUR_MEASURES)


def report(
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    db: DbOpt = Path(DEFAULT_DB),
    table: TableOpt = DEFAULT_TABLE,
    by: Optional[str] = typer.Option(None, "--by", help="Group column (or BUCKET:COLUMN). Default: language when "
                                                        "the table has it, else all rows."),
    over: Optional[str] = typer.Option(None, "--over", help="Trend over this BUCKET:COLUMN (hour|day|week|month|"
                                                            "quarter|year) or COLUMN. Default: the first date "
                                                            "column, bucket chosen from its range."),
    where: Optional[str] = typer.Option(None, "--where", help=WHERE_HELP),
    label: Optional[List[str]] = typer.Option(None, "--label", "-l", help="Only this emotion (repeatable). "
                                                                          "Default: every label of the model."),
    run: Optional[List[str]] = typer.Option(None, "--run", help=RUN_HELP),
    min_texts: int = typer.Option(default_of(ReportRequest, "min_texts"), "--min-texts",
                                  help="Groups with fewer scored texts are marked too small to trust."),
    top: int = typer.Option(default_of(ReportRequest, "top_k"), "--top", "-k",
                            help="Example texts per emotion (needs `tag --keep-text`); 0 for none."),
    bins: int = typer.Option(default_of(ReportRequest, "bins"), "--bins", help="Score histogram bins."),
    cooccur: CooccurMeasure = typer.Option(default_of(ReportRequest, "cooccur"), "--cooccur",
                                           help="Co-occurrence heatmap measure."),
    title: Optional[str] = typer.Option(None, "--title", help="Page title. Default: the database and table."),
    quiet: QuietOpt = False,
) -> None:
    """One HTML page of the emotions in the store, to open offline, mail or attach: the corpus, prevalence
    per group with the dominant emotion, the trend over time, co-occurrence, score distributions with the
    thresholds, example texts. Every number is the one summarize/cooccur/examples print."""
    from emocli.analytics.report import build_report
    from emocli.analytics.report_page import report_html
    from emocli.cli.progress import progress_for

    request = ReportRequest(by=by, over=over, where=where, labels=tuple(label or ()), runs=tuple(run or ()),
                            min_texts=min_texts, top_k=top, bins=bins, cooccur=getattr(cooccur, "value", cooccur),
                            title=title)
    data = build_report(db, table, request, progress=progress_for(quiet))
    page = report_html(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    if not quiet:
        err_console.print(f"report written to {out} ({len(page.encode()) / 1e6:.2f} MB)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
