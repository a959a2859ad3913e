"""The table being analysed: the store opened read-only, the table's columns, and its runs grouped by model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from emocli.analytics.groups import GroupBy
from emocli.analytics.sql import Params, listing
from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.errors import InputError, StoreError
from emocli.store.connect import open_read_only
from emocli.store.core import quote
from emocli.store.runs import RUNS_TABLE, RunRecord, read_runs

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class RunGroup:
    """One or more runs of the same model: the unit a summary never mixes with another."""

    name: str
    runs: tuple[RunRecord, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.runs[0].labels

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(run.run_id for run in self.runs)


@dataclass
class OpenTable:
    """An open DuckDB store and the columns (name -> type) of the table being analysed."""

    con: "duckdb.DuckDBPyConnection"
    path: Path
    table: str
    columns: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "OpenTable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def table_names(con: "duckdb.DuckDBPyConnection") -> list[str]:
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY table_name").fetchall()
    return [row[0] for row in rows]


def table_columns(con: "duckdb.DuckDBPyConnection", table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $t AND NOT internal "
        "ORDER BY column_index", {"t": table}).fetchall()
    return {name: dtype for name, dtype in rows}


def open_table(db: str | Path = DEFAULT_DB, table: str = DEFAULT_TABLE) -> OpenTable:
    """The database opened read-only and the table's columns; one clear error naming what exists if not."""
    con = open_read_only(db)
    tables = table_names(con)
    if table not in tables:
        con.close()
        user_tables = [name for name in tables if name != RUNS_TABLE and not name.startswith("emocli_")]
        raise StoreError(f"table {table!r} not found in {db}; tables: {listing(user_tables)}")
    return OpenTable(con=con, path=Path(db), table=table, columns=table_columns(con, table))


def load_runs(store: OpenTable) -> list[RunRecord]:
    """The runs recorded for the store's table, oldest first."""
    if RUNS_TABLE not in table_names(store.con):
        raise StoreError(f"{store.path} has no {RUNS_TABLE!r} table: was {store.table!r} written by `emocli tag`?")
    return read_runs(store.con, store.table)


def describe_runs(runs: Sequence[RunRecord]) -> str:
    return "; ".join(f"{run.run_id} ({run.model}, {run.status or '?'})" for run in runs) or "(none)"


def select_run_groups(store: OpenTable, run_ids: Sequence[str] = ()) -> list[RunGroup]:
    """The chosen runs (all of the table's runs by default), grouped by model so two models never mix."""
    runs = load_runs(store)
    if not runs:
        raise StoreError(f"no runs recorded for table {store.table!r} in {store.path}")
    by_id = {run.run_id: run for run in runs}
    missing = [run_id for run_id in run_ids if run_id not in by_id]
    if missing:
        raise InputError(f"run {missing[0]!r} not found for table {store.table!r}; runs: {describe_runs(runs)}")
    chosen = [by_id[run_id] for run_id in dict.fromkeys(run_ids)] if run_ids else runs
    groups: dict[tuple, list[RunRecord]] = {}
    for run in chosen:
        absent = [label for label in run.labels if label not in store.columns]
        if absent:
            raise StoreError(f"run {run.run_id!r} lists label {absent[0]!r} but table {store.table!r} has no "
                             f"such column; columns: {listing(list(store.columns))}")
        groups.setdefault(run.model_key, []).append(run)
    return [RunGroup(name, tuple(members)) for name, members in zip(_group_names(groups), groups.values())]


def _group_names(groups: dict[tuple, list[RunRecord]]) -> list[str]:
    """The model name, made unique with the commit (or the run ids) when two groups share it."""
    names = [members[0].model for members in groups.values()]
    result = []
    for name, members in zip(names, groups.values()):
        if names.count(name) == 1:
            result.append(name)
            continue
        commit = members[0].commit
        suffix = commit[:10] if commit else ",".join(run.run_id for run in members)
        result.append(f"{name}@{suffix}")
    if len(set(result)) < len(result):  # same model and commit, other thresholds or labels
        result = [f"{name} [{','.join(run.run_id for run in members)}]"
                  for name, members in zip(result, groups.values())]
    return result


def unfinished_run_notes(groups: Sequence[RunGroup]) -> tuple[str, ...]:
    return tuple(f"run {run.run_id} is {run.status}: the rows it committed are included"
                 for group in groups for run in group.runs if run.status not in (None, "done"))


def groups_with_label(groups: Sequence[RunGroup], label: str) -> list[RunGroup]:
    chosen = [group for group in groups if label in group.labels]
    if not chosen:
        known = sorted({name for group in groups for name in group.labels})
        raise InputError(f"unknown label {label!r}; the selected runs' labels: {listing(known)}")
    return chosen


def run_filter(group: RunGroup, params: Params) -> str:
    """The SQL condition selecting a run group's rows."""
    return f"{quote('run_id')} IN ({', '.join(params.add(run_id) for run_id in group.run_ids)})"


def group_select(groups: Sequence[GroupBy], columns: dict[str, str]) -> list[str]:
    return [f"{group.sql(columns)} AS {quote(group.alias)}" for group in groups]
