"""Model coverage: which rows are in languages the model was trained on, per group, and the warning to print.

A run records the model's training languages (`runs.model_languages`, ISO 639-3; NULL = unknown) and where
the rows' language comes from (`runs.language_source`: `column:NAME`, `detected`, or NULL). Every distinct
language value of a run group's rows is mapped through `emocli.languages` (BRIGHTER `esp` -> `spa`, ...) and
compared by macrolanguage; a row is *inside*, *outside* or *unknown* (`und`, NULL, or a model whose languages
are unknown). A group is flagged when more than half of its rows are outside.

    result = coverage(db, table, SummaryRequest(by=("language",)))
    result.messages        # the one warning line per model, e.g. "27 of 28 languages are outside ..."
    result.models[0].flagged_groups

`summarize` and `cooccur` call `coverage` with their own request (its `by`, `where` and `runs`); with
`in_domain_only` they keep only rows inside (`in_domain_condition`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from emocli.analytics.groups import GroupBy, parse_group_bys
from emocli.analytics.source import OpenTable, RunGroup, group_select, open_table, run_filter, select_run_groups
from emocli.analytics.sql import Params, in_list, where_clause
from emocli.analytics.where import parse_where
from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.languages import UNDETERMINED, is_covered, to_iso639_3
from emocli.store.core import quote

MOSTLY_OUTSIDE = 0.5  # a group is flagged when more than this share of its rows is outside the model's languages
MAX_NAMED = 8  # groups named in the warning line before "and N more"
LEGACY_LANGUAGE_COLUMNS = ("language", "lang")  # runs before schema 3 name no language source


class GroupedRequest(Protocol):
    """What coverage needs from a summarize/cooccur request."""

    by: tuple[str, ...]
    where: str | None
    runs: tuple[str, ...]


@dataclass(frozen=True)
class GroupCoverage:
    key: tuple  # the group's values, in --by order (empty for all rows)
    rows: int
    outside: int
    unknown: int

    @property
    def share_outside(self) -> float:
        return self.outside / self.rows if self.rows else 0.0

    @property
    def flagged(self) -> bool:
        return self.share_outside > MOSTLY_OUTSIDE


@dataclass(frozen=True)
class ModelCoverage:
    """One run group (model): its languages, the rows' language column, and coverage per group."""

    model: str
    run_ids: tuple[str, ...]
    model_languages: tuple[str, ...] | None  # None: unknown
    language_column: str | None  # None: the rows carry no language
    inside_values: tuple[str, ...]  # raw column values inside the model's languages
    outside_languages: tuple[str, ...]  # ISO 639-3 codes of the rows outside
    languages: tuple[str, ...]  # ISO 639-3 codes of all the rows (but `und`)
    groups: tuple[GroupCoverage, ...]
    group_columns: tuple[str, ...]
    message: str | None

    @property
    def rows(self) -> int:
        return sum(group.rows for group in self.groups)

    @property
    def rows_outside(self) -> int:
        return sum(group.outside for group in self.groups)

    @property
    def share_outside(self) -> float:
        return self.rows_outside / self.rows if self.rows else 0.0

    @property
    def flagged_groups(self) -> tuple[GroupCoverage, ...]:
        return tuple(group for group in self.groups if group.flagged)

    @property
    def known(self) -> bool:
        """Whether in/out can be told at all (the model's languages and the rows' are both known)."""
        return self.model_languages is not None and self.language_column is not None

    def share_by_key(self) -> dict[tuple, float | None]:
        """Group key -> share of its rows outside; None for a group whose rows are all of unknown language."""
        return {group.key: (None if group.unknown == group.rows else group.share_outside) for group in self.groups}

    def in_domain_condition(self, params: Params) -> str | None:
        """SQL keeping only rows inside the model's languages (`und` and unknown rows are dropped too); None
        when coverage is unknown (nothing to filter on)."""
        if not self.known:
            return None
        return in_list(f"CAST({quote(self.language_column)} AS VARCHAR)", self.inside_values, params)


@dataclass(frozen=True)
class Coverage:
    models: tuple[ModelCoverage, ...]

    @property
    def messages(self) -> tuple[str, ...]:
        return tuple(model.message for model in self.models if model.message)

    def for_model(self, run_ids: Sequence[str]) -> ModelCoverage | None:
        return next((model for model in self.models if model.run_ids == tuple(run_ids)), None)


def coverage(db: str | Path = DEFAULT_DB, table: str = DEFAULT_TABLE, request: GroupedRequest | None = None) -> Coverage:
    """Coverage of every run group of the table under a summarize/cooccur request (its by, where and runs)."""
    with open_table(db, table) as store:
        return coverage_of(store, request)


def coverage_of(store: OpenTable, request: GroupedRequest | None = None,
                run_groups: Sequence[RunGroup] | None = None) -> Coverage:
    """`coverage` on a table already open (what summarize and cooccur use inside their own connection)."""
    by = tuple(request.by) if request is not None else ()
    where = request.where if request is not None else None
    groups = parse_group_bys(by, store.columns)
    if run_groups is None:
        run_groups = select_run_groups(store, tuple(request.runs) if request is not None else ())
    return Coverage(tuple(_model_coverage(store, group, groups, where) for group in run_groups))


def language_column(store: OpenTable, group: RunGroup) -> str | None:
    """The table column holding the rows' language for a run group, or None."""
    for run in group.runs:
        source = run.language_source
        if source == "detected" and "language" in store.columns:
            return "language"
        if source and source.startswith("column:") and source.removeprefix("column:") in store.columns:
            return source.removeprefix("column:")
    if any(run.language_source for run in group.runs):
        return None
    return next((c for c in LEGACY_LANGUAGE_COLUMNS if c in store.columns), None)


def model_languages(group: RunGroup) -> tuple[str, ...] | None:
    """The run group's model's training languages (ISO 639-3, as `runs.model_languages` records them); None
    when unknown."""
    languages = {run.model_languages for run in group.runs}
    return next(iter(languages)) if len(languages) == 1 else None  # runs of one model agree; if not: unknown


def _model_coverage(store: OpenTable, group: RunGroup, groups: Sequence[GroupBy], where: str | None) -> ModelCoverage:
    column = language_column(store, group)
    trained = model_languages(group)
    if trained is None:  # nothing can be told inside or outside: spare the two scans of the table
        return _with_message(ModelCoverage(
            model=group.name, run_ids=group.run_ids, model_languages=None, language_column=column,
            inside_values=(), outside_languages=(), languages=(), groups=(),
            group_columns=tuple(g.alias for g in groups), message=None), groups)
    values = _distinct_values(store, group, column) if column else []
    inside = tuple(v for v in values if is_covered(v, trained))
    unknown = tuple(v for v in values if is_covered(v, trained) is None)
    outside_values = [v for v in values if is_covered(v, trained) is False]
    per_group = _group_counts(store, group, groups, where, column, inside, unknown) if column else ()
    result = ModelCoverage(
        model=group.name, run_ids=group.run_ids, model_languages=trained, language_column=column,
        inside_values=inside, outside_languages=tuple(sorted({to_iso639_3(v) for v in outside_values})),
        languages=tuple(sorted({to_iso639_3(v) for v in values} - {UNDETERMINED})), groups=per_group,
        group_columns=tuple(g.alias for g in groups), message=None)
    return _with_message(result, groups)


def _distinct_values(store: OpenTable, group: RunGroup, column: str) -> list[str]:
    params = Params()
    sql = (f"SELECT DISTINCT CAST({quote(column)} AS VARCHAR) FROM {quote(store.table)} "
           f"{where_clause(run_filter(group, params), f'{quote(column)} IS NOT NULL')}")
    return sorted(row[0] for row in store.con.execute(sql, params.values).fetchall())


def _group_counts(store: OpenTable, group: RunGroup, groups: Sequence[GroupBy], where: str | None, column: str,
                  inside: Sequence[str], unknown: Sequence[str]) -> tuple[GroupCoverage, ...]:
    """Per group: rows, rows outside, rows unknown; one SQL statement (NULL languages are unknown)."""
    params = Params()
    value = f"CAST({quote(column)} AS VARCHAR)"
    is_unknown = f"({value} IS NULL OR {in_list(value, unknown, params)})"
    is_inside = in_list(value, inside, params)
    select = group_select(groups, store.columns) + [
        "count(*)", f"count(*) FILTER (NOT {is_inside} AND NOT {is_unknown})", f"count(*) FILTER ({is_unknown})"]
    parsed = parse_where(where, list(store.columns), params)
    sql = (f"SELECT {', '.join(select)} FROM {quote(store.table)} "
           f"{where_clause(run_filter(group, params), quote('labels') + ' IS NOT NULL', parsed.sql if parsed else None)}"
           + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(groups)))}" if groups else ""))
    n = len(groups)
    return tuple(GroupCoverage(tuple(row[:n]), int(row[n]), int(row[n + 1]), int(row[n + 2]))
                 for row in store.con.execute(sql, params.values).fetchall() if row[n])


def _with_message(result: ModelCoverage, groups: Sequence[GroupBy]) -> ModelCoverage:
    from dataclasses import replace

    return replace(result, message=warning_line(result, groups))


def warning_line(result: ModelCoverage, groups: Sequence[GroupBy]) -> str | None:
    """The one line naming what is outside the model's languages; None when nothing is (or nothing is known)."""
    if result.language_column is None:
        return None
    if result.model_languages is None:
        if any(g.column == result.language_column for g in groups):
            return (f"{result.model}'s training languages are unknown: scores per {result.language_column} "
                    "may not be comparable")
        return None
    if not result.groups:
        return None
    trained = ", ".join(result.model_languages)
    flagged = result.flagged_groups
    by_language = len(groups) == 1 and groups[0].column == result.language_column and not groups[0].bucket
    if by_language:
        if not flagged:
            return None
        languages = [group for group in result.groups if group.unknown < group.rows]  # `und` is no language
        return (f"{len(flagged)} of {len(languages)} languages are outside {result.model}'s training languages "
                f"({trained}): their scores are not comparable{_names(flagged)}; --in-domain-only drops them")
    if result.rows_outside == 0:
        return None
    share = f"{result.share_outside:.0%} of the rows ({result.rows_outside:,} of {result.rows:,})"
    where = ""
    if groups and flagged:
        where = (f"; {len(flagged)} of {len(result.groups)} groups are mostly outside{_names(flagged)}")
    return (f"{share} are in languages outside {result.model}'s training languages ({trained}): their scores are "
            f"not comparable{where}; --in-domain-only drops them")


def _names(flagged: Sequence[GroupCoverage]) -> str:
    keys = sorted(("/".join("NULL" if v is None else str(v) for v in group.key) for group in flagged))
    names = keys[:MAX_NAMED]
    more = f" and {len(flagged) - MAX_NAMED} more" if len(flagged) > MAX_NAMED else ""
    return f" ({', '.join(names)}{more})"
