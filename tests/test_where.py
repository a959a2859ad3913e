"""The --where grammar: what it accepts runs on a real store and matches polars; what it refuses never
reaches SQL (injection attempts, unknown columns, function calls, comments)."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl
import pytest

from emocli.analytics.queries import SummaryRequest, summarize
from emocli.analytics.sql import Params
from emocli.analytics.where import parse_where
from emocli.errors import InputError
from test_analytics import ENG, ENG_THRESHOLDS, build_store, run_spec

COLUMNS = ["id", "language", "created_at", "user_id", "text", "labels", "n_tokens", "truncated", "run_id",
           *ENG, "date"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("where") / "emotions.duckdb"
    df = build_store(path, [run_spec("r1", "m", ENG, ENG_THRESHOLDS, 400, seed=11)])
    return path, df


def count_where(path, text: str) -> int:
    params = Params()
    con = duckdb.connect(str(path), read_only=True)
    columns = [row[0] for row in con.execute("SELECT column_name FROM duckdb_columns() "
                                             "WHERE table_name = 'scores'").fetchall()]
    where = parse_where(text, columns, params)
    try:
        return con.execute(f"SELECT count(*) FROM scores WHERE {where.sql}", params.values).fetchone()[0]
    finally:
        con.close()


CASES = [
    ("language = 'eng' AND anger > 0.5", (pl.col("language") == "eng") & (pl.col("anger") > 0.5)),
    ("language IN ('eng', 'deu') OR joy >= 0.75", pl.col("language").is_in(["eng", "deu"]) | (pl.col("joy") >= 0.75)),
    ("language NOT IN ('eng') AND NOT (fear < 0.25)",
     ~pl.col("language").is_in(["eng"]) & ~(pl.col("fear") < 0.25)),
    ("anger BETWEEN 0.25 AND 0.5", pl.col("anger").is_between(0.25, 0.5)),
    ("anger NOT BETWEEN 0.25 AND 0.5", ~pl.col("anger").is_between(0.25, 0.5)),
    ("language IS NULL", pl.col("language").is_null()),
    ("labels IS NOT NULL and language is not null", pl.col("labels").is_not_null() & pl.col("language").is_not_null()),
    ("created_at >= DATE '2024-07-01' AND created_at < TIMESTAMP '2024-09-15 12:00:00'",
     (pl.col("created_at") >= dt.datetime(2024, 7, 1)) & (pl.col("created_at") < dt.datetime(2024, 9, 15, 12))),
    ("created_at >= '2024-11-01'", pl.col("created_at") >= dt.datetime(2024, 11, 1)),
    ("truncated = TRUE", pl.col("truncated")),
    ("user_id <> 3 AND user_id != 4 AND -1 < user_id", (pl.col("user_id") != 3) & (pl.col("user_id") != 4)),
    ("0.5 <= surprise", pl.col("surprise") >= 0.5),
    ('"language" == \'esp\'', pl.col("language") == "esp"),
    ("text LIKE '%1%' AND text NOT LIKE '%2%'",
     pl.col("text").str.contains("1", literal=True) & ~pl.col("text").str.contains("2", literal=True)),
    ("n_tokens > 1e1 AND n_tokens < 5.5e1", (pl.col("n_tokens") > 10) & (pl.col("n_tokens") < 55)),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
def test_accepted_filters_match_polars(store, text, expected):
    path, df = store
    assert count_where(path, text) == df.filter(expected).height


def test_literals_are_bound_not_inlined():
    params = Params()
    where = parse_where("language = 'O''Brien'' OR 1=1 --' AND anger > 0.5", COLUMNS, params)
    assert "O'Brien" not in where.sql and "1=1" not in where.sql
    assert where.sql == '(("language" = $p0) AND ("anger" > $p1))'
    assert params.values == {"p0": "O'Brien' OR 1=1 --", "p1": 0.5}


def test_a_column_named_like_a_keyword_is_still_a_column():
    params = Params()
    where = parse_where("date = DATE '2024-01-02' AND date IS NOT NULL", COLUMNS, params)
    assert where.sql == '(("date" = CAST($p0 AS DATE)) AND ("date" IS NOT NULL))'


REJECTED = [
    ("1=1; DROP TABLE scores", "unexpected character ';'"),
    ("language = 'x' OR 1=1 --", "comments are not allowed"),
    ("language = 'x' OR 1=1", "every comparison must involve a column"),
    ("language = 'x' /* hi */", "comments are not allowed"),
    ("lang = 'eng'", "unknown column 'lang' in --where; columns: id, language"),
    ("lower(language) = 'eng'", r"function calls are not allowed \(lower"),
    ("anger > (SELECT 1)", "expected a column or a literal"),
    ("language = 'eng' UNION SELECT 1", "unexpected text"),
    ("language = eng", "unknown column 'eng'"),
    ("anger > 0.5 AND", "expected a column or a literal"),
    ("(anger > 0.5", "expected '\\)'"),
    ("language IN (SELECT run_id FROM runs)", "expected a literal"),
    ("language", "expected a comparison"),
    ("'eng' IS NULL", "every comparison must involve a column"),
    ("language = 'unterminated", "unexpected character"),
    ("anger > 0.5 ; ", "unexpected character ';'"),
    ("language = \"eng\"", "unknown column 'eng'"),
    ("anger::VARCHAR = '1'", "unexpected character ':'"),
    ("   ", "empty expression"),
]


@pytest.mark.parametrize("text,message", REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected_filters_say_why(text, message):
    with pytest.raises(InputError, match=message) as raised:
        parse_where(text, COLUMNS, Params()) or pytest.fail("accepted")
    assert "\n" not in raised.value.message


def test_summarize_rejects_injection_and_leaves_the_store_intact(store):
    path, df = store
    for text in ("1=1; DROP TABLE scores", "language = 'x' OR 1=1 --", "nope > 1", "version() = '1'"):
        with pytest.raises(InputError, match="--where"):
            summarize(path, request=SummaryRequest(by=("language",), where=text))
    assert count_where(path, "id >= 0") == df.height
