"""The data of `emocli report`: every figure of the page, computed by the same library calls as the CLI.

Prevalence per group and the dominant emotion come from `summarize`, the trend from `summarize` by a time
bucket, co-occurrence from `cooccurrence`, the example texts from `examples`; so each number in the page is
the number `emocli summarize/cooccur/examples` prints for the same flags. Only what no command shows is
computed here, in DuckDB as well: the score histograms, the date range and the truncated count.
The page itself (Vega-Lite charts, HTML) is `emocli.analytics.report_page`.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from emocli.analytics.groups import TIME_BUCKETS, GroupBy, parse_group_by
from emocli.analytics.coverage import MOSTLY_OUTSIDE, model_languages
from emocli.analytics.queries import (OUTSIDE_COLUMN, CooccurRequest, ExamplesRequest, Frame, SummaryRequest,
                                      cooccurrence, examples, summarize)
from emocli.analytics.source import OpenTable, RunGroup, open_table, run_filter, select_run_groups
from emocli.analytics.sql import Params, check_column, listing, where_clause
from emocli.analytics.where import parse_where
from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.errors import InputError
from emocli.progress import Progress, chosen
from emocli.store.core import quote as quote_ident

COOCCUR_MEASURES = ("lift", "jaccard")
DEFAULT_BY = "language"  # what `emocli tag` keeps from the README's corpus
MAX_BUCKETS = 60  # the auto bucket is the finest one giving at most this many points
MAX_GROUPS = 200  # more groups than this are not one readable heatmap: the largest are kept, with a note
TIME_TYPES = ("DATE", "TIMESTAMP")


@dataclass(frozen=True)
class ReportRequest:
    by: str | None = None  # None: `language` when the table has it, else all rows as one group
    over: str | None = None  # BUCKET:COLUMN or COLUMN; None: the first date/timestamp column
    where: str | None = None
    labels: tuple[str, ...] = ()  # () = every label of the model
    runs: tuple[str, ...] = ()
    min_texts: int = 30  # groups with fewer scored texts are marked as too small to trust
    top_k: int = 3
    bins: int = 20
    cooccur: str = "lift"
    title: str | None = None


@dataclass(frozen=True)
class Corpus:
    db: str
    table: str
    rows: int
    texts: int
    skipped: int
    truncated: int | None
    files: tuple[str, ...]
    runs: tuple[dict[str, Any], ...]
    model: str
    repo: str | None
    commit: str | None
    labels: tuple[str, ...]
    thresholds: dict[str, float]
    time_column: str | None
    date_range: tuple[str, str] | None
    where: str | None
    model_languages: tuple[str, ...] | None


@dataclass(frozen=True)
class GroupRow:
    key: Any  # the group's value as summarize returns it
    texts: int
    skipped: int
    prevalence: dict[str, float | None]
    dominant: str | None
    small: bool
    outside_model_languages: bool


@dataclass(frozen=True)
class ReportData:
    title: str
    corpus: Corpus
    by: str | None
    groups: tuple[GroupRow, ...]
    groups_omitted: int
    summary: Frame  # summarize by the group column, exactly as the CLI computes it
    trend: Frame | None
    trend_note: str | None
    cooccur_measure: str
    cooccur: Frame
    histograms: tuple[dict[str, Any], ...]  # label, bin_start, bin_end, count
    examples: dict[str, Frame]
    examples_note: str | None
    min_texts: int
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------------------
# choices made from the table


def default_by(columns: dict[str, str], by: str | None) -> str | None:
    if by is not None:
        return by
    return DEFAULT_BY if DEFAULT_BY in columns else None


def time_columns(columns: dict[str, str]) -> list[str]:
    return [name for name, dtype in columns.items() if dtype.upper().startswith(TIME_TYPES)]


def over_column(columns: dict[str, str], over: str | None) -> tuple[str | None, str | None]:
    """(column, bucket or None for auto) of --over; (None, None) when the table has no time column."""
    if over is None:
        found = time_columns(columns)
        return (found[0], None) if found else (None, None)
    bucket, _, column = over.rpartition(":") if over not in columns else ("", "", over)
    check_column(column, list(columns), where="--over")
    if bucket:
        GroupBy(column, bucket.strip().lower())  # checks the bucket name
    dtype = columns[column].upper()
    if not dtype.startswith(TIME_TYPES + ("VARCHAR",)):
        raise InputError(f"--over {over}: column {column!r} is {dtype}, not a date or timestamp")
    return column, bucket.strip().lower() or None


BUCKET_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30.44 * 86400,
                  "quarter": 91.31 * 86400, "year": 365.25 * 86400}


def bucket_for(first: dt.datetime, last: dt.datetime) -> str:
    """The finest time bucket that draws the date range in at most MAX_BUCKETS points."""
    span = max((last - first).total_seconds(), 0.0)
    for bucket in TIME_BUCKETS:
        if span / BUCKET_SECONDS[bucket] <= MAX_BUCKETS:
            return bucket
    return TIME_BUCKETS[-1]


# --------------------------------------------------------------------------------------------------
# the model's training languages


def mostly_outside(record: dict[str, Any]) -> bool:
    """A group whose rows are mostly in languages the model was not trained on, as `summarize` measured it
    (its `outside_model` share, present when the model's languages and the rows' languages are known)."""
    share = record.get(OUTSIDE_COLUMN)
    return share is not None and share > MOSTLY_OUTSIDE


# --------------------------------------------------------------------------------------------------
# what only the report computes (in DuckDB)


def _filters(store: OpenTable, group: RunGroup, where: str | None, params: Params, *extra: str) -> str:
    parsed = parse_where(where, list(store.columns), params)
    return where_clause(run_filter(group, params), parsed.sql if parsed else None, *extra)


def histogram_query(store: OpenTable, group: RunGroup, labels: Sequence[str], bins: int,
                    where: str | None) -> tuple[str, dict]:
    """Per label, the scored texts per score bin [i/bins, (i+1)/bins) (a score of 1 in the last bin)."""
    params = Params()
    parts = []
    for label in labels:
        column = quote_ident(label)
        bin_sql = f"least(greatest(CAST(floor({column} * {int(bins)}) AS INTEGER), 0), {int(bins) - 1})"
        parts.append(f"SELECT {params.add(label)} AS label, {bin_sql} AS bin, count(*) AS n "
                     f"FROM {quote_ident(store.table)} "
                     f"{_filters(store, group, where, params, f'{column} IS NOT NULL')} GROUP BY 2")
    return " UNION ALL ".join(parts), params.values


def histograms(store: OpenTable, group: RunGroup, labels: Sequence[str], bins: int,
               where: str | None) -> tuple[dict[str, Any], ...]:
    sql, params = histogram_query(store, group, labels, bins, where)
    counts = {(label, b): n for label, b, n in store.con.execute(sql, params).fetchall()}
    return tuple({"label": label, "bin_start": b / bins, "bin_end": (b + 1) / bins, "count": counts.get((label, b), 0)}
                 for label in labels for b in range(bins))


def corpus_extent(store: OpenTable, group: RunGroup, time_column: str | None,
                  where: str | None) -> tuple[Any, Any, int | None]:
    """(first, last) of the time column and the truncated rows, under the same filters as the figures."""
    params = Params()
    select = []
    if time_column:
        value = quote_ident(time_column)
        if not store.columns[time_column].upper().startswith(TIME_TYPES):
            value = f"TRY_CAST({value} AS TIMESTAMP)"
        select += [f"min({value})", f"max({value})"]
    else:
        select += ["NULL", "NULL"]
    has_truncated = store.columns.get("truncated", "").upper() == "BOOLEAN"
    select.append(f"count(*) FILTER ({quote_ident('truncated')})" if has_truncated else "NULL")
    sql = f"SELECT {', '.join(select)} FROM {quote_ident(store.table)} {_filters(store, group, where, params)}"
    return tuple(store.con.execute(sql, params.values).fetchone())


# --------------------------------------------------------------------------------------------------
# the report


def _one_run_group(groups: Sequence[RunGroup]) -> RunGroup:
    if len(groups) > 1:
        described = "; ".join(f"{group.name}: --run {' --run '.join(group.run_ids)}" for group in groups)
        raise InputError(f"the table holds runs of {len(groups)} models, and one report shows one model; "
                         f"choose its runs with --run ({described})")
    return groups[0]


def _chosen_labels(group: RunGroup, labels: Sequence[str]) -> tuple[str, ...]:
    unknown = [label for label in labels if label not in group.labels]
    if unknown:
        raise InputError(f"--label {unknown[0]}: not a label of model {group.name}; labels: {listing(group.labels)}")
    return tuple(dict.fromkeys(labels)) or group.labels


def _check_request(request: ReportRequest) -> None:
    if request.cooccur not in COOCCUR_MEASURES:
        raise InputError(f"--cooccur {request.cooccur}: use one of {', '.join(COOCCUR_MEASURES)}")
    if request.min_texts < 0:
        raise InputError("--min-texts must be 0 or more")
    if request.top_k < 0:
        raise InputError("--top must be 0 or more")
    if not 1 <= request.bins <= 200:
        raise InputError("--bins must be between 1 and 200")


def _as_datetime(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    return None


def _iso(value: Any) -> str:
    return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else str(value)


@dataclass(frozen=True)
class _Table:
    """What the report learns from the table before any figure: checked choices and its own aggregates."""

    run_group: RunGroup
    labels: tuple[str, ...]
    by: str | None
    time_column: str | None
    bucket: str | None
    extent: tuple[Any, Any, int | None]
    languages: tuple[str, ...] | None
    histograms: tuple[dict[str, Any], ...]


def _inspect(db: str | Path, table: str, request: ReportRequest) -> _Table:
    with open_table(db, table) as store:
        run_group = _one_run_group(select_run_groups(store, request.runs))
        labels = _chosen_labels(run_group, request.labels)
        by = default_by(store.columns, request.by)
        if by is not None:
            parse_group_by(by, store.columns)  # one clear line for a --by column the table lacks
        time_column, bucket = over_column(store.columns, request.over)
        return _Table(run_group=run_group, labels=labels, by=by, time_column=time_column, bucket=bucket,
                      extent=corpus_extent(store, run_group, time_column, request.where),
                      languages=model_languages(run_group),
                      histograms=histograms(store, run_group, labels, request.bins, request.where))


def build_report(db: str | Path = DEFAULT_DB, table: str = DEFAULT_TABLE,
                 request: ReportRequest = ReportRequest(), progress: Progress | bool | None = False) -> ReportData:
    """Every section's data for one model's runs of the table; the calls are the CLI's own."""
    _check_request(request)
    found = _inspect(db, table, request)  # bad input fails here, before any progress is shown
    runs = tuple(found.run_group.run_ids) if request.runs else ()
    summary = summarize(db, table, SummaryRequest(by=(found.by,) if found.by else (), where=request.where,
                                                  runs=runs))
    overall = {name: sum(summary.column(name)) for name in ("texts", "skipped")}  # the groups partition the rows
    if overall["texts"] + overall["skipped"] == 0:
        raise InputError(f"table {table!r} in {db} has no rows" + (" matching --where" if request.where else "")
                         + ": nothing to report")
    progress = chosen(progress)
    progress.start("report", total=3, unit="sections")
    try:
        return _build(db, table, request, found, runs, summary, overall, progress)
    finally:
        progress.finish()


def _build(db: str | Path, table: str, request: ReportRequest, found: _Table, runs: tuple[str, ...],
           summary: Frame, overall: dict[str, Any], progress: Progress) -> ReportData:
    by, labels, run_group = found.by, found.labels, found.run_group
    first, last, truncated = found.extent
    trend, trend_note = _trend(db, table, request, runs, found.time_column, found.bucket, first, last)
    progress.advance(1)
    cooc = cooccurrence(db, table, CooccurRequest(where=request.where, runs=runs))
    progress.advance(1)
    example_frames, examples_note = _examples(db, table, request, runs, labels)
    progress.advance(1)
    groups, omitted = _group_rows(summary, by, labels, request.min_texts)
    thresholds = dict(zip(run_group.labels, run_group.runs[0].thresholds))
    first_run = run_group.runs[0]
    corpus = Corpus(
        db=str(db), table=table, rows=overall["texts"] + overall["skipped"], texts=overall["texts"],
        skipped=overall["skipped"], truncated=truncated,
        files=tuple(dict.fromkeys(path for run in run_group.runs for path in run.inputs)),
        runs=tuple({"run_id": run.run_id, "status": run.status, "started_at": _iso(run.started_at),
                    "rows_written": run.rows_written} for run in run_group.runs),
        model=first_run.model, repo=first_run.repo, commit=first_run.commit, labels=labels,
        thresholds={label: thresholds[label] for label in labels}, time_column=found.time_column,
        date_range=(_iso(first), _iso(last)) if first is not None else None, where=request.where,
        model_languages=found.languages)
    notes = summary.warnings + summary.notes + ((f"{omitted} smaller groups are left out of the heatmap (it shows the "
                              f"{MAX_GROUPS} largest)",) if omitted else ())
    return ReportData(
        title=request.title or f"Emotions in {Path(db).name}:{table}", corpus=corpus, by=by, groups=groups,
        groups_omitted=omitted, summary=summary, trend=trend, trend_note=trend_note,
        cooccur_measure=request.cooccur, cooccur=cooc, histograms=found.histograms, examples=example_frames,
        examples_note=examples_note, min_texts=request.min_texts, notes=notes)


def _trend(db, table, request: ReportRequest, runs, time_column, bucket, first, last) -> tuple[Frame | None, str | None]:
    if time_column is None:
        return None, "the table has no date or timestamp column; give --over BUCKET:COLUMN for a trend"
    start, end = _as_datetime(first), _as_datetime(last)
    if start is None or end is None:
        return None, f"column {time_column!r} holds no dates in the selected rows"
    bucket = bucket or bucket_for(start, end)
    frame = summarize(db, table, SummaryRequest(by=(f"{bucket}:{time_column}",), where=request.where, runs=runs))
    return frame, None


def _examples(db, table, request: ReportRequest, runs, labels) -> tuple[dict[str, Frame], str | None]:
    if request.top_k == 0:
        return {}, "examples left out (--top 0)"
    frames = {}
    for label in labels:
        try:
            frames[label] = examples(db, table, ExamplesRequest(label=label, k=request.top_k, where=request.where,
                                                                runs=runs))
        except InputError as error:
            if "were not kept" not in error.message:
                raise
            return {}, error.message
    return frames, None


def _group_rows(summary: Frame, by: str | None, labels: Sequence[str], min_texts: int) -> tuple[tuple[GroupRow, ...], int]:
    rows = []
    for record in summary.records():
        key = record[by] if by else None
        rows.append(GroupRow(key=key, texts=record["texts"], skipped=record["skipped"],
                             prevalence={label: _finite(record[label]) for label in labels},
                             dominant=record["dominant"], small=record["texts"] < min_texts,
                             outside_model_languages=mostly_outside(record)))
    if len(rows) <= MAX_GROUPS:
        return tuple(rows), 0
    largest = sorted(range(len(rows)), key=lambda i: -rows[i].texts)[:MAX_GROUPS]
    return tuple(rows[i] for i in sorted(largest)), len(rows) - MAX_GROUPS


def _finite(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def jaccard(count: int, count_a: int, count_b: int) -> float | None:
    """|A and B| / |A or B| from the co-occurrence counts; None when neither label was predicted."""
    union = count_a + count_b - count
    return count / union if union else None
