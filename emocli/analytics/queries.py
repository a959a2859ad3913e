"""Analytics over the DuckDB store: summaries, co-occurrence, examples and read-only queries.

Every aggregate is computed by DuckDB SQL over only the columns it needs; Python only shapes the small
aggregated result. Nothing the user types reaches SQL as raw text: column names are checked against the
table and quoted, label names and literals travel as bound parameters, and `--where` is parsed into a
small grammar of comparisons on existing columns (see `emocli.analytics.where.parse_where`).

The pieces: `sql` (checked names, bound parameters), `where` (the --where language), `groups` (--by terms),
`source` (the read-only store, its table and runs); this module builds the SQL of each command and runs it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from emocli.analytics.coverage import Coverage, ModelCoverage, coverage_of
from emocli.analytics.groups import GroupBy, parse_group_bys
from emocli.analytics.source import (OpenTable, RunGroup, group_select, groups_with_label, open_table, run_filter,
                                     select_run_groups, unfinished_run_notes)
from emocli.analytics.sql import Params, Query, listing, where_clause
from emocli.analytics.where import parse_where
from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.errors import InputError, StoreError
from emocli.store.connect import open_read_only
from emocli.store.core import quote as quote_ident  # identifiers from users are always double-quoted

METRICS = ("prevalence", "mean", "count")
MODEL_COLUMN = "model"
STAT_COLUMNS = ("texts", "skipped")
SHARE_COLUMNS = ("any_emotion", "no_emotion")
OUTSIDE_COLUMN = "outside_model"  # share of a group's rows in languages outside the model's training languages


@dataclass(frozen=True)
class Frame:
    """A small query result: column names and rows, plus what the columns mean for rendering."""

    columns: tuple[str, ...]
    rows: list[tuple]
    group_columns: tuple[str, ...] = ()
    value_columns: tuple[str, ...] = ()
    value_kind: str = "share"  # share | score | count | lift
    title: str = ""
    notes: tuple[str, ...] = ()
    time_column: str | None = None  # the first time-bucket group, plotted as the x axis
    warnings: tuple[str, ...] = ()  # figures the tool cannot stand behind (e.g. languages the model never saw)

    def column(self, name: str) -> list:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]




def _group_order(groups: Sequence[GroupBy]) -> list[str]:
    return [f"{quote_ident(group.alias)} ASC NULLS LAST" for group in groups]


# --------------------------------------------------------------------------------------------------
# summarize


@dataclass(frozen=True)
class SummaryRequest:
    by: tuple[str, ...] = ()
    where: str | None = None
    metric: str = "prevalence"
    min_count: int = 0
    sort: str | None = None
    runs: tuple[str, ...] = ()
    in_domain_only: bool = False  # keep only rows in the model's training languages (analytics/coverage.py)


def _has_label(label_param: str) -> str:
    return f"list_contains({quote_ident('labels')}, {label_param})"


def _label_aggregate(label: str, metric: str, params: Params) -> str:
    if metric == "mean":
        return f"avg({quote_ident(label)})"
    if metric == "count":
        return f"count(*) FILTER ({_has_label(params.add(label))})"
    return f"avg(CAST({_has_label(params.add(label))} AS INTEGER))"


def _share_aggregates(metric: str) -> list[str]:
    labels = quote_ident("labels")
    if metric == "count":
        return [f"count(*) FILTER (len({labels}) > 0) AS {quote_ident('any_emotion')}",
                f"count(*) FILTER (len({labels}) = 0) AS {quote_ident('no_emotion')}"]
    return [f"avg(CAST(len({labels}) > 0 AS INTEGER)) AS {quote_ident('any_emotion')}",
            f"avg(CAST(len({labels}) = 0 AS INTEGER)) AS {quote_ident('no_emotion')}"]


def _dominant(labels: Sequence[str], params: Params) -> str:
    """The label with the highest value (the first in the run's label order on ties); NULL when all are 0."""
    quoted = [quote_ident(label) for label in labels]
    top = f"greatest({', '.join(quoted)})"
    cases = " ".join(f"WHEN {column} = {top} THEN {params.add(label)}" for column, label in zip(quoted, labels))
    return f"CASE WHEN {top} IS NULL OR {top} <= 0 THEN NULL {cases} END AS {quote_ident('dominant')}"


def summary_query(store: OpenTable, group: RunGroup, groups: Sequence[GroupBy], request: SummaryRequest,
                  sort: str | None = None, model_coverage: ModelCoverage | None = None) -> Query:
    """One SQL statement: per group the text count, skipped rows, per-label metric, dominant, any/none."""
    params = Params()
    labels = group.labels
    _check_label_names(labels, [g.alias for g in groups] + list(STAT_COLUMNS) + list(SHARE_COLUMNS) + ["dominant"])
    select = group_select(groups, store.columns)
    select += [f"count({quote_ident('labels')}) AS {quote_ident('texts')}",
               f"count(*) - count({quote_ident('labels')}) AS {quote_ident('skipped')}"]
    select += [f"{_label_aggregate(label, request.metric, params)} AS {quote_ident(label)}" for label in labels]
    select += _share_aggregates(request.metric)
    where = parse_where(request.where, list(store.columns), params)
    in_domain = _in_domain(request.in_domain_only, model_coverage, params)
    inner = (f"SELECT {', '.join(select)} FROM {quote_ident(store.table)} "
             f"{where_clause(run_filter(group, params), where.sql if where else None, in_domain)}"
             + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(groups)))}" if groups else "")
             + (f" HAVING count({quote_ident('labels')}) >= {params.add(int(request.min_count))}"
                if request.min_count else ""))
    outer_columns = [quote_ident(g.alias) for g in groups] + [quote_ident(c) for c in STAT_COLUMNS]
    outer_columns += [quote_ident(label) for label in labels] + [_dominant(labels, params)]
    outer_columns += [quote_ident(c) for c in SHARE_COLUMNS]
    order = _summary_order(groups, sort)
    sql = f"SELECT {', '.join(outer_columns)} FROM ({inner}) AS per_group" + (f" ORDER BY {order}" if order else "")
    return Query(sql, params.values)


def _in_domain(in_domain_only: bool, model_coverage: ModelCoverage | None, params: Params) -> str | None:
    if not in_domain_only or model_coverage is None:
        return None
    return model_coverage.in_domain_condition(params)


def _check_label_names(labels: Sequence[str], taken: Sequence[str]) -> None:
    clash = next((label for label in labels if label in taken), None)
    if clash is not None:
        raise InputError(f"label {clash!r} has the same name as a summary column; group by another column "
                         f"or use `emocli query`")


def _summary_order(groups: Sequence[GroupBy], sort: str | None) -> str:
    keys = [f"{quote_ident(sort)} DESC NULLS LAST"] if sort else []
    return ", ".join(keys + _group_order(groups))


def _check_sort(sort: str | None, run_groups: Sequence[RunGroup]) -> None:
    if sort is None:
        return
    allowed = list(dict.fromkeys([label for group in run_groups for label in group.labels]
                                 + list(STAT_COLUMNS) + list(SHARE_COLUMNS)))
    if sort not in allowed:
        raise InputError(f"--sort {sort}: not a label or summary column; use one of {listing(allowed)}")


def _sort_for(sort: str | None, run_group: RunGroup) -> str | None:
    """A label that one model lacks cannot order that model's rows: they keep the group order."""
    return sort if sort in run_group.labels or sort in STAT_COLUMNS + SHARE_COLUMNS else None


def summarize(db: str | Path = DEFAULT_DB, table: str = DEFAULT_TABLE,
              request: SummaryRequest = SummaryRequest()) -> Frame:
    """Per group (nested --by terms, the model outermost when the table holds several): texts, skipped,
    per-label prevalence/mean/count, dominant emotion, any/no emotion."""
    if request.metric not in METRICS:
        raise InputError(f"--metric {request.metric}: use one of {', '.join(METRICS)}")
    if request.min_count < 0:
        raise InputError("--min-count must be 0 or more")
    with open_table(db, table) as store:
        groups = parse_group_bys(request.by, store.columns)
        run_groups = select_run_groups(store, request.runs)
        _check_sort(request.sort, run_groups)
        covered = _coverage_for(store, request, run_groups)
        frames = [_execute(store, summary_query(store, run_group, groups, request,
                                                 _sort_for(request.sort, run_group), covered.for_model(run_group.run_ids)))
                  for run_group in run_groups]
    kind = {"prevalence": "share", "mean": "score", "count": "count"}[request.metric]
    frame = _stack(frames, run_groups, [g.alias for g in groups], kind=kind,
                   title=f"{request.metric} by {', '.join(request.by) or 'all rows'} in {table}",
                   fixed_before=STAT_COLUMNS, fixed_after=("dominant",) + SHARE_COLUMNS)
    time_column = next((g.alias for g in groups if g.bucket), None)
    frame = _mark_outside(frame, run_groups, covered, [g.alias for g in groups], request.in_domain_only)
    return dataclasses.replace(frame, time_column=time_column, **_coverage_notes(frame, covered, request.in_domain_only))


def _coverage_for(store: OpenTable, request, run_groups: Sequence[RunGroup]) -> Coverage:
    covered = coverage_of(store, request, run_groups)
    if request.in_domain_only and not any(model.known for model in covered.models):
        model = covered.models[0]
        why = ("the rows carry no language (tag with --detect-language or --language-col)"
               if model.language_column is None else f"{model.model}'s training languages are unknown")
        raise InputError(f"--in-domain-only: {why}")
    return covered


def _coverage_notes(frame: Frame, covered: Coverage, in_domain_only: bool) -> dict:
    """Warnings name what lies outside the models' languages; with --in-domain-only, a note says what was dropped."""
    if not in_domain_only:
        return {"warnings": frame.warnings + covered.messages}
    notes = tuple(f"--in-domain-only: {model.model}: kept rows in {', '.join(model.model_languages)}, dropped "
                  f"{model.rows_outside:,} rows outside and {sum(g.unknown for g in model.groups):,} of unknown language"
                  for model in covered.models if model.known)
    return {"notes": frame.notes + notes}


def _mark_outside(frame: Frame, run_groups: Sequence[RunGroup], covered: Coverage, group_aliases: Sequence[str],
                  in_domain_only: bool) -> Frame:
    """Add `outside_model` (share of the group's rows in languages outside the model's) where it is known."""
    if in_domain_only or not any(model.known for model in covered.models):
        return frame
    several = MODEL_COLUMN in frame.group_columns
    shares = {(group.name if several else None): (covered.for_model(group.run_ids).share_by_key()
                                                  if covered.for_model(group.run_ids).known else {})
              for group in run_groups}
    key_at = [frame.columns.index(alias) for alias in group_aliases]
    model_at = frame.columns.index(MODEL_COLUMN) if several else None
    rows = [row + (shares[row[model_at] if several else None].get(tuple(row[i] for i in key_at)),)
            for row in frame.rows]
    return dataclasses.replace(frame, columns=frame.columns + (OUTSIDE_COLUMN,), rows=rows)


def _execute(store: OpenTable, query: Query) -> tuple[tuple[str, ...], list[tuple]]:
    cursor = store.con.execute(query.sql, query.params)
    return tuple(d[0] for d in cursor.description), cursor.fetchall()


def _stack(frames: Sequence[tuple[tuple[str, ...], list[tuple]]], run_groups: Sequence[RunGroup],
           group_columns: Sequence[str], kind: str, title: str, fixed_before: Sequence[str] = (),
           fixed_after: Sequence[str] = ()) -> Frame:
    """One frame from one result per run group: label columns are the union, the model an outer group."""
    labels = list(dict.fromkeys(label for group in run_groups for label in group.labels))
    several = len(run_groups) > 1
    columns = ([MODEL_COLUMN] if several else []) + list(group_columns) + list(fixed_before) + labels
    columns += list(fixed_after)
    rows = []
    for (names, result), run_group in zip(frames, run_groups):
        for row in result:
            values = dict(zip(names, row))
            if several:
                values[MODEL_COLUMN] = run_group.name
            rows.append(tuple(values.get(column) for column in columns))
    notes = tuple(f"model {group.name}: runs {', '.join(group.run_ids)}" for group in run_groups) if several else ()
    notes += unfinished_run_notes(run_groups)
    return Frame(columns=tuple(columns), rows=rows,
                 group_columns=tuple(([MODEL_COLUMN] if several else []) + list(group_columns)),
                 value_columns=tuple(labels), value_kind=kind, title=title, notes=notes)


# --------------------------------------------------------------------------------------------------
# co-occurrence


@dataclass(frozen=True)
class CooccurRequest:
    by: tuple[str, ...] = ()
    where: str | None = None
    min_count: int = 0
    runs: tuple[str, ...] = ()
    in_domain_only: bool = False


COOCCUR_COLUMNS = ("label_a", "label_b", "count", "lift", "count_a", "count_b", "texts")


def cooccur_query(store: OpenTable, group: RunGroup, groups: Sequence[GroupBy], request: CooccurRequest,
                  model_coverage: ModelCoverage | None = None) -> Query:
    """Per group: texts, per label how many texts carry it, per label pair how many carry both, and the
    lift P(a,b) / (P(a) P(b)) = n_ab * n / (n_a * n_b), all in SQL over the predicted `labels` lists."""
    params = Params()
    labels = group.labels
    flags = {label: quote_ident(f"has:{label}") for label in labels}
    where = parse_where(request.where, list(store.columns), params)
    # the membership flags are computed once per row, then counted alone and in pairs
    flagged = (f"SELECT {', '.join(group_select(groups, store.columns))}{', ' if groups else ''}"
               + ", ".join(f"{_has_label(params.add(label))} AS {flags[label]}" for label in labels)
               + f" FROM {quote_ident(store.table)} "
               + where_clause(run_filter(group, params), quote_ident("labels") + " IS NOT NULL",
                              where.sql if where else None,
                              _in_domain(request.in_domain_only, model_coverage, params)))
    select = [quote_ident(g.alias) for g in groups] + [f"count(*) AS {quote_ident('texts')}"]
    select += [f"count(*) FILTER ({flags[label]}) AS {quote_ident('n:' + label)}" for label in labels]
    pairs = [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:]]
    select += [f"count(*) FILTER ({flags[a]} AND {flags[b]}) AS {quote_ident(f'n:{a}:{b}')}" for a, b in pairs]
    inner = (f"SELECT {', '.join(select)} FROM ({flagged}) AS flagged"
             + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(groups)))}" if groups else "")
             + (f" HAVING count(*) >= {params.add(int(request.min_count))}" if request.min_count else ""))
    outer = [quote_ident(g.alias) for g in groups] + [quote_ident("texts")]
    outer += [quote_ident("n:" + label) for label in labels]
    for a in labels:
        for b in labels:
            pair = quote_ident(f"n:{a}:{b}" if labels.index(a) < labels.index(b) else f"n:{b}:{a}")
            count = quote_ident("n:" + a) if a == b else pair
            outer.append(f"{count} AS {quote_ident(f'c:{a}:{b}')}")
            outer.append(f"CAST({count} AS DOUBLE) * {quote_ident('texts')} / "
                         f"nullif(CAST({quote_ident('n:' + a)} AS DOUBLE) * {quote_ident('n:' + b)}, 0) "
                         f"AS {quote_ident(f'l:{a}:{b}')}")
    order = _group_order(groups)
    sql = f"SELECT {', '.join(outer)} FROM ({inner}) AS per_group" + (f" ORDER BY {', '.join(order)}" if order else "")
    return Query(sql, params.values)


def cooccurrence(db: str | Path = DEFAULT_DB, table: str = DEFAULT_TABLE,
                 request: CooccurRequest = CooccurRequest()) -> Frame:
    """Long format: one row per group and ordered label pair (a, b) with count, lift, count_a, count_b, texts."""
    with open_table(db, table) as store:
        groups = parse_group_bys(request.by, store.columns)
        run_groups = select_run_groups(store, request.runs)
        covered = _coverage_for(store, request, run_groups)
        results = [(group, _execute(store, cooccur_query(store, group, groups, request,
                                                         covered.for_model(group.run_ids))))
                   for group in run_groups]
    several = len(run_groups) > 1
    group_columns = ([MODEL_COLUMN] if several else []) + [g.alias for g in groups]
    rows = []
    for run_group, (names, result) in results:
        for row in result:
            values = dict(zip(names, row))
            keys = ([run_group.name] if several else []) + [values[g.alias] for g in groups]
            for a in run_group.labels:
                for b in run_group.labels:
                    rows.append(tuple(keys) + (a, b, values[f"c:{a}:{b}"], values[f"l:{a}:{b}"],
                                               values["n:" + a], values["n:" + b], values["texts"]))
    frame = Frame(columns=tuple(group_columns) + COOCCUR_COLUMNS, rows=rows, group_columns=tuple(group_columns),
                  value_columns=("count", "lift"), value_kind="lift",
                  title=f"label co-occurrence in {table}" + (f" by {', '.join(request.by)}" if request.by else ""))
    return dataclasses.replace(frame, **_coverage_notes(frame, covered, request.in_domain_only))


# --------------------------------------------------------------------------------------------------
# examples


@dataclass(frozen=True)
class ExamplesRequest:
    label: str
    by: tuple[str, ...] = ()
    k: int = 5
    where: str | None = None
    runs: tuple[str, ...] = ()


def text_column(store: OpenTable, run_groups: Sequence[RunGroup]) -> str:
    """The kept text column: the runs' text column if the table holds it, else `text`."""
    candidates = [run.text_col for group in run_groups for run in group.runs if run.text_col] + ["text"]
    for name in candidates:
        if name in store.columns:
            return name
    raise InputError(f"the texts were not kept in table {store.table!r} (no {candidates[0]!r} column), so there "
                     f"are no examples to show; re-tag with `emocli tag FILE --keep-text`")


def examples_query(store: OpenTable, group: RunGroup, groups: Sequence[GroupBy], request: ExamplesRequest,
                   text: str) -> Query:
    params = Params()
    score = quote_ident(request.label)
    partition = f"PARTITION BY {', '.join(g.sql(store.columns) for g in groups)} " if groups else ""
    tie_break = f", {quote_ident('id')}" if "id" in store.columns else ""
    id_select = [f"{quote_ident('id')} AS {quote_ident('id')}"] if "id" in store.columns else []
    select = group_select(groups, store.columns) + [
        f"row_number() OVER ({partition}ORDER BY {score} DESC{tie_break}) AS {quote_ident('rank')}",
        *id_select,
        f"{score} AS {quote_ident('score')}",
        f"{_has_label(params.add(request.label))} AS {quote_ident('predicted')}",
        f"{quote_ident(text)} AS {quote_ident('text')}",
    ]
    where = parse_where(request.where, list(store.columns), params)
    filters = where_clause(run_filter(group, params), f'{score} IS NOT NULL', where.sql if where else None)
    if not groups:  # one ranking: a top-k (DuckDB keeps k rows) instead of numbering every row
        needed = dict.fromkeys([request.label, "labels", text] + (["id"] if "id" in store.columns else []))
        top = (f"SELECT {', '.join(quote_ident(c) for c in needed)} FROM {quote_ident(store.table)} {filters} "
               f"ORDER BY {score} DESC{tie_break} "
               f"LIMIT {params.add(int(request.k))}")
        return Query(f"SELECT {', '.join(select)} FROM ({top}) AS top ORDER BY {quote_ident('rank')}", params.values)
    inner = f"SELECT {', '.join(select)} FROM {quote_ident(store.table)} {filters}"
    order = ", ".join(_group_order(groups) + [quote_ident("rank")])
    sql = (f"SELECT * FROM ({inner}) AS ranked WHERE {quote_ident('rank')} <= {params.add(int(request.k))} "
           f"ORDER BY {order}")
    return Query(sql, params.values)


def examples(db: str | Path = DEFAULT_DB, table: str = DEFAULT_TABLE,
             request: ExamplesRequest | None = None) -> Frame:
    """The k highest-scoring texts for a label, per group."""
    if request is None:
        raise InputError("--label is required")
    if request.k < 1:
        raise InputError("-k must be 1 or more")
    with open_table(db, table) as store:
        groups = parse_group_bys(request.by, store.columns)
        run_groups = groups_with_label(select_run_groups(store, request.runs), request.label)
        text = text_column(store, run_groups)
        frames = [_execute(store, examples_query(store, group, groups, request, text)) for group in run_groups]
    several = len(run_groups) > 1
    columns = ([MODEL_COLUMN] if several else []) + list(frames[0][0])
    prefix = {group.name: ((group.name,) if several else ()) for group in run_groups}
    rows = [prefix[group.name] + tuple(row) for group, (_, result) in zip(run_groups, frames) for row in result]
    group_columns = ([MODEL_COLUMN] if several else []) + [g.alias for g in groups]
    return Frame(columns=tuple(columns), rows=rows, group_columns=tuple(group_columns),
                 value_columns=("score",), value_kind="score",
                 title=f"top {request.k} {request.label!r} texts in {table}"
                       + (f" by {', '.join(request.by)}" if request.by else ""))


# --------------------------------------------------------------------------------------------------
# query


def run_query(db: str | Path, sql: str, max_rows: int | None = None) -> Frame:
    """Run SQL on a read-only connection with no file access; writes fail with one clear line.
    With max_rows, fetch at most that many rows (and say so in a note) instead of the whole result."""
    import duckdb

    if not sql or not sql.strip():
        raise InputError("query: empty SQL")
    con = open_read_only(db)
    try:
        cursor = con.execute(sql)
        if cursor.description is None:
            return Frame(columns=(), rows=[], title="query")
        rows = cursor.fetchall() if max_rows is None else cursor.fetchmany(max_rows + 1)
        notes = ()
        if max_rows is not None and len(rows) > max_rows:
            rows = rows[:max_rows]
            notes = (f"showing the first {max_rows} rows; use --format csv/json or LIMIT for more",)
        return Frame(columns=tuple(d[0] for d in cursor.description), rows=rows, title="query",
                     value_kind="none", notes=notes)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        if "read-only" in first or "file system operations are disabled" in first:
            raise StoreError(f"query is read-only: {first}") from None
        raise StoreError(f"query failed: {first}") from None
    finally:
        con.close()
