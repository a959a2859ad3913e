"""Analytics over the DuckDB store: summaries, co-occurrence, examples and read-only queries.

Every aggregate is computed by DuckDB SQL over only the columns it needs; Python only shapes the small
aggregated result. Nothing the user types reaches SQL as raw text: column names are checked against the
table and quoted, label names and literals travel as bound parameters, and `--where` is parsed into a
small grammar of comparisons on existing columns (see `parse_where`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.errors import InputError, StoreError
from emocli.store.core import quote as quote_ident  # identifiers from users are always double-quoted

if TYPE_CHECKING:
    import duckdb

METRICS = ("prevalence", "mean", "count")
TIME_BUCKETS = ("hour", "day", "week", "month", "quarter", "year")
RUNS_TABLE = "runs"
MODEL_COLUMN = "model"
STAT_COLUMNS = ("texts", "skipped")
SHARE_COLUMNS = ("any_emotion", "no_emotion")
MAX_LISTED = 30


# --------------------------------------------------------------------------------------------------
# identifiers and parameters


def listing(names: Sequence[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "") if names else "(none)"


def check_column(name: str, columns: Sequence[str], what: str = "column", where: str = "") -> str:
    """The column itself if the table has it, else one line naming what exists."""
    if name in columns:
        return name
    place = f" in {where}" if where else ""
    raise InputError(f"unknown {what} {name!r}{place}; columns: {listing(columns)}")


class Params:
    """Named bound parameters ($p0, $p1, ...) collected while SQL text is built in any order."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


@dataclass(frozen=True)
class Query:
    sql: str
    params: dict[str, Any]


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

    def column(self, name: str) -> list:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


# --------------------------------------------------------------------------------------------------
# the --where grammar

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")+")
  | (?P<ident>[^\W\d]\w*)
  | (?P<op><=|>=|<>|!=|==|=|<|>|\(|\)|,|-)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "LIKE", "ILIKE", "TRUE", "FALSE"}
_COMPARISONS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TYPED_LITERALS = {"DATE": "DATE", "TIMESTAMP": "TIMESTAMP"}
WHERE_HELP = ("comparisons on columns (=, !=, <, <=, >, >=, [NOT] IN (...), [NOT] BETWEEN x AND y, "
              "IS [NOT] NULL, [NOT] LIKE 'pat') joined by AND/OR/NOT and parentheses; literals: numbers, "
              "'strings', DATE 'YYYY-MM-DD', TIMESTAMP '...', TRUE/FALSE")


@dataclass(frozen=True)
class Token:
    kind: str  # number | string | ident | qident | op | end
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "ident" else ""


def _tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        if text.startswith("--", pos) or text.startswith("/*", pos):
            raise InputError(f"--where: comments are not allowed (at position {pos + 1})", hint=WHERE_HELP)
        match = _TOKEN.match(text, pos)
        if not match:
            raise InputError(f"--where: unexpected character {text[pos]!r} at position {pos + 1}", hint=WHERE_HELP)
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


@dataclass(frozen=True)
class _Operand:
    sql: str
    is_column: bool


class _WhereParser:
    """Recursive descent over: or := and (OR and)*; and := not (AND not)*; not := NOT not | ( or ) | cmp."""

    def __init__(self, text: str, columns: Sequence[str], params: Params):
        self.text = text
        self.columns = list(columns)
        self.params = params
        self.tokens = _tokenize(text)
        self.index = 0

    # token helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def _advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _is_keyword(self, *words: str) -> bool:
        return self.token.upper in words

    def _is_op(self, *ops: str) -> bool:
        return self.token.kind == "op" and self.token.text in ops

    def _fail(self, what: str) -> InputError:
        near = self.token.text or "end of expression"
        return InputError(f"--where: {what} at position {self.token.pos + 1} (near {near!r})", hint=WHERE_HELP)

    def _expect_keyword(self, word: str) -> None:
        if not self._is_keyword(word):
            raise self._fail(f"expected {word}")
        self._advance()

    def _expect_op(self, op: str) -> None:
        if not self._is_op(op):
            raise self._fail(f"expected {op!r}")
        self._advance()

    # grammar
    def parse(self) -> str:
        if self.token.kind == "end":
            raise InputError("--where: empty expression", hint=WHERE_HELP)
        sql = self._or()
        if self.token.kind != "end":
            raise self._fail("unexpected text")
        return sql

    def _or(self) -> str:
        return self._joined("OR", self._and)

    def _and(self) -> str:
        return self._joined("AND", self._not)

    def _joined(self, word: str, parse_part) -> str:
        parts = [parse_part()]
        while self._is_keyword(word):
            self._advance()
            parts.append(parse_part())
        return parts[0] if len(parts) == 1 else "(" + f" {word} ".join(parts) + ")"

    def _not(self) -> str:
        if self._is_keyword("NOT"):
            self._advance()
            return f"(NOT {self._not()})"
        if self._is_op("("):
            self._advance()
            inner = self._or()
            self._expect_op(")")
            return f"({inner})"
        return self._comparison()

    def _comparison(self) -> str:
        left = self._operand()
        negated = ""
        if self._is_keyword("NOT"):
            self._advance()
            negated = "NOT "
            if not self._is_keyword("IN", "BETWEEN", "LIKE", "ILIKE"):
                raise self._fail("expected IN, BETWEEN or LIKE after NOT")
        if self._is_keyword("IS"):
            self._advance()
            is_not = ""
            if self._is_keyword("NOT"):
                self._advance()
                is_not = "NOT "
            self._expect_keyword("NULL")
            self._require_column(left)
            return f"({left.sql} IS {is_not}NULL)"
        if self._is_keyword("IN"):
            self._advance()
            self._expect_op("(")
            items = [self._literal()]
            while self._is_op(","):
                self._advance()
                items.append(self._literal())
            self._expect_op(")")
            self._require_column(left)
            return f"({left.sql} {negated}IN ({', '.join(items)}))"
        if self._is_keyword("BETWEEN"):
            self._advance()
            low = self._operand()
            self._expect_keyword("AND")
            high = self._operand()
            self._require_column(left, low, high)
            return f"({left.sql} {negated}BETWEEN {low.sql} AND {high.sql})"
        if self._is_keyword("LIKE", "ILIKE"):
            word = self._advance().upper
            if self.token.kind != "string":
                raise self._fail(f"expected a 'pattern' after {word}")
            pattern = self._literal()
            self._require_column(left)
            return f"({left.sql} {negated}{word} {pattern})"
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            op = _COMPARISONS[self._advance().text]
            right = self._operand()
            self._require_column(left, right)
            return f"({left.sql} {op} {right.sql})"
        raise self._fail("expected a comparison (=, !=, <, <=, >, >=, IN, BETWEEN, IS, LIKE)")

    def _require_column(self, *operands: _Operand) -> None:
        if not any(operand.is_column for operand in operands):
            raise InputError(f"--where: every comparison must involve a column of the table ({self.text!r})",
                             hint=WHERE_HELP)

    def _operand(self) -> _Operand:
        token = self.token
        if token.kind == "qident":
            self._advance()
            return self._column(token.text[1:-1].replace('""', '"'))
        if token.kind == "ident" and token.upper not in _KEYWORDS and not self._typed_literal_ahead():
            self._advance()
            if self._is_op("("):
                raise InputError(f"--where: function calls are not allowed ({token.text}(...))", hint=WHERE_HELP)
            return self._column(token.text)
        return _Operand(self._literal(), is_column=False)

    def _typed_literal_ahead(self) -> bool:
        return self.token.upper in _TYPED_LITERALS and self.tokens[self.index + 1].kind == "string"

    def _column(self, name: str) -> _Operand:
        check_column(name, self.columns, where="--where")
        return _Operand(quote_ident(name), is_column=True)

    def _literal(self) -> str:
        token = self.token
        if self._is_op("-") and self.tokens[self.index + 1].kind == "number":
            self._advance()
            return self.params.add(-_number(self._advance().text))
        if token.kind == "number":
            self._advance()
            return self.params.add(_number(token.text))
        if token.kind == "string":
            self._advance()
            return self.params.add(_string(token.text))
        if self._typed_literal_ahead():
            kind = _TYPED_LITERALS[self._advance().upper]
            return f"CAST({self.params.add(_string(self._advance().text))} AS {kind})"
        if token.upper in ("TRUE", "FALSE"):
            self._advance()
            return self.params.add(token.upper == "TRUE")
        if token.kind == "ident" and token.upper not in _KEYWORDS:
            raise self._fail("expected a literal (number, 'string', DATE '...')")
        raise self._fail("expected a column or a literal")


def _number(text: str) -> int | float:
    return int(text) if text.isdigit() else float(text)


def _string(text: str) -> str:
    return text[1:-1].replace("''", "'")


@dataclass(frozen=True)
class Where:
    """A parsed --where: SQL text with quoted identifiers and $p placeholders bound through `params`."""

    sql: str


def parse_where(text: str | None, columns: Sequence[str], params: Params) -> Where | None:
    """Parse a user filter into SQL that names only existing columns and binds every literal."""
    if text is None:
        return None
    return Where(_WhereParser(text, columns, params).parse())


# --------------------------------------------------------------------------------------------------
# the store: tables, runs, labels


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    model: str
    repo: str | None
    commit: str | None
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    text_col: str | None
    status: str | None
    rows_written: int | None
    rows_skipped: int | None

    @property
    def model_key(self) -> tuple:
        """Runs with equal keys scored with the same model and thresholds, so their rows can be pooled."""
        return (self.model, self.repo, self.commit, self.labels, self.thresholds)


@dataclass(frozen=True)
class RunGroup:
    """One or more runs of the same model: the unit a summary never mixes with another."""

    name: str
    runs: tuple[RunInfo, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.runs[0].labels

    @property
    def run_ids(self) -> tuple[str, ...]:
        return tuple(run.run_id for run in self.runs)


@dataclass
class Store:
    """An open DuckDB store and the columns (name -> type) of the table being analysed."""

    con: "duckdb.DuckDBPyConnection"
    path: Path
    table: str
    columns: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect_read_only(db: str | Path) -> "duckdb.DuckDBPyConnection":
    """Open an existing database read-only, with no access to other files (no COPY TO, ATTACH, read_csv)."""
    import duckdb

    path = Path(db).expanduser()
    if not path.is_file():
        nearby = sorted(p.name for p in path.resolve().parent.glob("*.duckdb")) if path.parent.is_dir() else []
        hint = "create it with `emocli tag FILE`" + (f"; databases here: {', '.join(nearby)}" if nearby else "")
        raise StoreError(f"database not found: {path}", hint=hint)
    try:
        con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
        con.execute("SET enable_progress_bar = false")  # our output is the table, not DuckDB's bar
        return con
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        if "lock" in first.lower():
            raise StoreError(f"{path} is locked by another process (is `emocli tag` still running?)") from None
        raise StoreError(f"cannot open {path} as a DuckDB database: {first}") from None


def table_names(con: "duckdb.DuckDBPyConnection") -> list[str]:
    rows = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY table_name").fetchall()
    return [row[0] for row in rows]


def table_columns(con: "duckdb.DuckDBPyConnection", table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $t AND NOT internal "
        "ORDER BY column_index", {"t": table}).fetchall()
    return {name: dtype for name, dtype in rows}


def open_store(db: str | Path = DEFAULT_DB, table: str = DEFAULT_TABLE) -> Store:
    """The database opened read-only and the table's columns; one clear error naming what exists if not."""
    con = connect_read_only(db)
    tables = table_names(con)
    if table not in tables:
        con.close()
        user_tables = [name for name in tables if name != RUNS_TABLE and not name.startswith("emocli_")]
        raise StoreError(f"table {table!r} not found in {db}; tables: {listing(user_tables)}")
    return Store(con=con, path=Path(db), table=table, columns=table_columns(con, table))


def load_runs(store: Store) -> list[RunInfo]:
    """The runs recorded for the store's table, oldest first."""
    if RUNS_TABLE not in table_names(store.con):
        raise StoreError(f"{store.path} has no {RUNS_TABLE!r} table: was {store.table!r} written by `emocli tag`?")
    rows = store.con.execute(
        f"SELECT run_id, model, repo, \"commit\", labels, thresholds, text_col, status, rows_written, "
        f"rows_skipped FROM {quote_ident(RUNS_TABLE)} WHERE table_name = $t OR table_name IS NULL "
        f"ORDER BY started_at NULLS LAST, run_id", {"t": store.table}).fetchall()
    return [RunInfo(run_id=r[0], model=r[1] or "?", repo=r[2], commit=r[3], labels=tuple(r[4] or ()),
                    thresholds=tuple(r[5] or ()), text_col=r[6], status=r[7], rows_written=r[8],
                    rows_skipped=r[9]) for r in rows]


def describe_runs(runs: Sequence[RunInfo]) -> str:
    return "; ".join(f"{run.run_id} ({run.model}, {run.status or '?'})" for run in runs) or "(none)"


def select_run_groups(store: Store, run_ids: Sequence[str] = ()) -> list[RunGroup]:
    """The chosen runs (all of the table's runs by default), grouped by model so two models never mix."""
    runs = load_runs(store)
    if not runs:
        raise StoreError(f"no runs recorded for table {store.table!r} in {store.path}")
    by_id = {run.run_id: run for run in runs}
    missing = [run_id for run_id in run_ids if run_id not in by_id]
    if missing:
        raise InputError(f"run {missing[0]!r} not found for table {store.table!r}; runs: {describe_runs(runs)}")
    chosen = [by_id[run_id] for run_id in dict.fromkeys(run_ids)] if run_ids else runs
    groups: dict[tuple, list[RunInfo]] = {}
    for run in chosen:
        absent = [label for label in run.labels if label not in store.columns]
        if absent:
            raise StoreError(f"run {run.run_id!r} lists label {absent[0]!r} but table {store.table!r} has no "
                             f"such column; columns: {listing(list(store.columns))}")
        groups.setdefault(run.model_key, []).append(run)
    return [RunGroup(name, tuple(members)) for name, members in zip(_group_names(groups), groups.values())]


def _group_names(groups: dict[tuple, list[RunInfo]]) -> list[str]:
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


# --------------------------------------------------------------------------------------------------
# grouping


@dataclass(frozen=True)
class GroupBy:
    """A --by term: a column, or a time bucket of a timestamp column (`month:created_at`)."""

    column: str
    bucket: str | None = None

    def __post_init__(self) -> None:
        if self.bucket is not None and self.bucket not in TIME_BUCKETS:  # it is spliced into SQL below
            raise InputError(f"unknown time bucket {self.bucket!r}; use one of {', '.join(TIME_BUCKETS)}")

    @property
    def alias(self) -> str:
        return f"{self.bucket}:{self.column}" if self.bucket else self.column

    def sql(self, columns: dict[str, str]) -> str:
        column = quote_ident(self.column)
        if not self.bucket:
            return column
        dtype = columns[self.column].upper()
        value = column if dtype.startswith(("DATE", "TIMESTAMP")) else f"TRY_CAST({column} AS TIMESTAMP)"
        cast = "TIMESTAMP" if self.bucket == "hour" else "DATE"
        return f"CAST(date_trunc('{self.bucket}', {value}) AS {cast})"


def parse_group_by(text: str, columns: dict[str, str]) -> GroupBy:
    """`language` -> column; `month:created_at` -> time bucket; checked against the table's columns."""
    if text in columns:
        return GroupBy(text)
    if ":" in text:
        bucket, _, column = text.partition(":")
        bucket = bucket.strip().lower()
        if bucket not in TIME_BUCKETS:
            raise InputError(f"--by {text}: unknown time bucket {bucket!r}; use one of {', '.join(TIME_BUCKETS)}")
        check_column(column, list(columns), where=f"--by {text}")
        dtype = columns[column].upper()
        if not (dtype.startswith(("DATE", "TIMESTAMP")) or dtype == "VARCHAR"):
            raise InputError(f"--by {text}: column {column!r} is {dtype}, not a date or timestamp")
        return GroupBy(column, bucket)
    return GroupBy(check_column(text, list(columns), where="--by"))


def parse_group_bys(texts: Sequence[str], columns: dict[str, str]) -> tuple[GroupBy, ...]:
    groups = tuple(parse_group_by(text, columns) for text in texts)
    aliases = [group.alias for group in groups]
    if len(set(aliases)) < len(aliases):
        raise InputError(f"--by names the same group twice: {', '.join(aliases)}")
    return groups


def _run_filter(group: RunGroup, params: Params) -> str:
    return f"{quote_ident('run_id')} IN ({', '.join(params.add(run_id) for run_id in group.run_ids)})"


def _where_clause(*conditions: str | None) -> str:
    kept = [condition for condition in conditions if condition]
    return "WHERE " + " AND ".join(kept) if kept else ""


def _group_select(groups: Sequence[GroupBy], columns: dict[str, str]) -> list[str]:
    return [f"{group.sql(columns)} AS {quote_ident(group.alias)}" for group in groups]


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


def summary_query(store: Store, group: RunGroup, groups: Sequence[GroupBy], request: SummaryRequest,
                  sort: str | None = None) -> Query:
    """One SQL statement: per group the text count, skipped rows, per-label metric, dominant, any/none."""
    params = Params()
    labels = group.labels
    _check_label_names(labels, [g.alias for g in groups] + list(STAT_COLUMNS) + list(SHARE_COLUMNS) + ["dominant"])
    select = _group_select(groups, store.columns)
    select += [f"count({quote_ident('labels')}) AS {quote_ident('texts')}",
               f"count(*) - count({quote_ident('labels')}) AS {quote_ident('skipped')}"]
    select += [f"{_label_aggregate(label, request.metric, params)} AS {quote_ident(label)}" for label in labels]
    select += _share_aggregates(request.metric)
    where = parse_where(request.where, list(store.columns), params)
    inner = (f"SELECT {', '.join(select)} FROM {quote_ident(store.table)} "
             f"{_where_clause(_run_filter(group, params), where.sql if where else None)}"
             + (f" GROUP BY {', '.join(str(i + 1) for i in range(len(groups)))}" if groups else "")
             + (f" HAVING count({quote_ident('labels')}) >= {params.add(int(request.min_count))}"
                if request.min_count else ""))
    outer_columns = [quote_ident(g.alias) for g in groups] + [quote_ident(c) for c in STAT_COLUMNS]
    outer_columns += [quote_ident(label) for label in labels] + [_dominant(labels, params)]
    outer_columns += [quote_ident(c) for c in SHARE_COLUMNS]
    order = _summary_order(groups, sort)
    sql = f"SELECT {', '.join(outer_columns)} FROM ({inner}) AS per_group" + (f" ORDER BY {order}" if order else "")
    return Query(sql, params.values)


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
    with open_store(db, table) as store:
        groups = parse_group_bys(request.by, store.columns)
        run_groups = select_run_groups(store, request.runs)
        _check_sort(request.sort, run_groups)
        frames = [_execute(store, summary_query(store, run_group, groups, request,
                                                 _sort_for(request.sort, run_group)))
                  for run_group in run_groups]
    kind = {"prevalence": "share", "mean": "score", "count": "count"}[request.metric]
    frame = _stack(frames, run_groups, [g.alias for g in groups], kind=kind,
                   title=f"{request.metric} by {', '.join(request.by) or 'all rows'} in {table}",
                   fixed_before=STAT_COLUMNS, fixed_after=("dominant",) + SHARE_COLUMNS)
    time_column = next((g.alias for g in groups if g.bucket), None)
    return dataclasses.replace(frame, time_column=time_column)


def _execute(store: Store, query: Query) -> tuple[tuple[str, ...], list[tuple]]:
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


COOCCUR_COLUMNS = ("label_a", "label_b", "count", "lift", "count_a", "count_b", "texts")


def cooccur_query(store: Store, group: RunGroup, groups: Sequence[GroupBy], request: CooccurRequest) -> Query:
    """Per group: texts, per label how many texts carry it, per label pair how many carry both, and the
    lift P(a,b) / (P(a) P(b)) = n_ab * n / (n_a * n_b), all in SQL over the predicted `labels` lists."""
    params = Params()
    labels = group.labels
    flags = {label: quote_ident(f"has:{label}") for label in labels}
    where = parse_where(request.where, list(store.columns), params)
    # the membership flags are computed once per row, then counted alone and in pairs
    flagged = (f"SELECT {', '.join(_group_select(groups, store.columns))}{', ' if groups else ''}"
               + ", ".join(f"{_has_label(params.add(label))} AS {flags[label]}" for label in labels)
               + f" FROM {quote_ident(store.table)} "
               + _where_clause(_run_filter(group, params), quote_ident("labels") + " IS NOT NULL",
                               where.sql if where else None))
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
    with open_store(db, table) as store:
        groups = parse_group_bys(request.by, store.columns)
        run_groups = select_run_groups(store, request.runs)
        results = [(group, _execute(store, cooccur_query(store, group, groups, request))) for group in run_groups]
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
    return Frame(columns=tuple(group_columns) + COOCCUR_COLUMNS, rows=rows, group_columns=tuple(group_columns),
                 value_columns=("count", "lift"), value_kind="lift",
                 title=f"label co-occurrence in {table}" + (f" by {', '.join(request.by)}" if request.by else ""))


# --------------------------------------------------------------------------------------------------
# examples


@dataclass(frozen=True)
class ExamplesRequest:
    label: str
    by: tuple[str, ...] = ()
    k: int = 5
    where: str | None = None
    runs: tuple[str, ...] = ()


def text_column(store: Store, run_groups: Sequence[RunGroup]) -> str:
    """The kept text column: the runs' text column if the table holds it, else `text`."""
    candidates = [run.text_col for group in run_groups for run in group.runs if run.text_col] + ["text"]
    for name in candidates:
        if name in store.columns:
            return name
    raise InputError(f"the texts were not kept in table {store.table!r} (no {candidates[0]!r} column), so there "
                     f"are no examples to show; re-tag with `emocli tag FILE --keep-text`")


def examples_query(store: Store, group: RunGroup, groups: Sequence[GroupBy], request: ExamplesRequest,
                   text: str) -> Query:
    params = Params()
    score = quote_ident(request.label)
    partition = f"PARTITION BY {', '.join(g.sql(store.columns) for g in groups)} " if groups else ""
    tie_break = f", {quote_ident('id')}" if "id" in store.columns else ""
    id_select = [f"{quote_ident('id')} AS {quote_ident('id')}"] if "id" in store.columns else []
    select = _group_select(groups, store.columns) + [
        f"row_number() OVER ({partition}ORDER BY {score} DESC{tie_break}) AS {quote_ident('rank')}",
        *id_select,
        f"{score} AS {quote_ident('score')}",
        f"{_has_label(params.add(request.label))} AS {quote_ident('predicted')}",
        f"{quote_ident(text)} AS {quote_ident('text')}",
    ]
    where = parse_where(request.where, list(store.columns), params)
    inner = (f"SELECT {', '.join(select)} FROM {quote_ident(store.table)} "
             f"{_where_clause(_run_filter(group, params), f'{score} IS NOT NULL', where.sql if where else None)}")
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
    with open_store(db, table) as store:
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
    con = connect_read_only(db)
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
