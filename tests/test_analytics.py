"""Analytics library against real DuckDB stores built to the store contract, checked against polars.

`build_store` writes the contract's tables with plain DuckDB SQL (scores + runs + emocli_meta), from a
polars frame that is also the reference: every aggregate is recomputed with polars over the same rows and
compared exactly. Scores are multiples of 1/256, so float sums are exact whatever the summation order.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from pathlib import Path

import duckdb
import polars as pl
import pytest

from emocli.analytics.queries import (CooccurRequest, ExamplesRequest, SummaryRequest, cooccurrence, examples,
                              quote_ident, run_query, summarize)
from emocli.errors import InputError, StoreError

ENG = ("anger", "fear", "joy", "sadness", "surprise")
ENG_THRESHOLDS = (0.5, 0.45, 0.5, 0.55, 0.5)
SIX = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
SIX_THRESHOLDS = (0.5, 0.5, 0.4, 0.5, 0.5, 0.6)
LANGUAGES = ("eng", "deu", "esp", None)

RUNS_DDL = """CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, table_name VARCHAR, model VARCHAR, repo VARCHAR,
  "commit" VARCHAR, labels VARCHAR[], thresholds DOUBLE[], task VARCHAR, inputs VARCHAR[], text_col VARCHAR,
  started_at TIMESTAMP, finished_at TIMESTAMP, rows_written BIGINT, rows_skipped BIGINT, rows_truncated BIGINT,
  status VARCHAR)"""


def make_rows(run_id: str, labels: tuple[str, ...], thresholds: tuple[float, ...], n: int, seed: int,
              first_id: int = 0, skip_every: int = 17) -> list[dict]:
    """Rows as `emocli tag` writes them: kept input columns, one FLOAT per label, predicted labels by the
    thresholds; every `skip_every`-th row skipped (NULL scores and labels)."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 1, 1)
    rows = []
    for i in range(n):
        row = {
            "id": first_id + i,
            "language": LANGUAGES[rng.randrange(len(LANGUAGES))] if rng.random() > 0.03 else None,
            "created_at": start + dt.timedelta(minutes=rng.randrange(0, 366 * 24 * 60)),
            "user_id": rng.randrange(50),
            "text": f"text {first_id + i} from {run_id} it's \"quoted\"",
            "n_tokens": rng.randrange(3, 90),
        }
        row["truncated"] = row["n_tokens"] > 64
        skipped = i % skip_every == skip_every - 1
        predicted = []
        for label, threshold in zip(labels, thresholds):
            score = None if skipped else rng.randrange(0, 257) / 256
            row[label] = score
            if score is not None and score >= threshold:
                predicted.append(label)
        row["labels"] = None if skipped else predicted
        row["run_id"] = run_id
        rows.append(row)
    return rows


def build_store(path: Path, runs: list[dict], table: str = "scores", keep_text: bool = True) -> pl.DataFrame:
    """Write a store DB following the contract; returns the scores as a polars frame (the reference)."""
    con = duckdb.connect(str(path))
    con.execute(RUNS_DDL)
    con.execute("CREATE TABLE emocli_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO emocli_meta VALUES ('schema_version', '1')")
    text_column = "text VARCHAR, " if keep_text else ""
    con.execute(f"CREATE TABLE {quote_ident(table)} (id BIGINT, language VARCHAR, created_at TIMESTAMP, "
                f"user_id BIGINT, {text_column}labels VARCHAR[], n_tokens INTEGER, truncated BOOLEAN, "
                f"run_id VARCHAR)")
    frames = []
    all_labels: list[str] = []
    for run in runs:
        for label in run["labels"]:
            if label not in all_labels:
                all_labels.append(label)
                con.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN {quote_ident(label)} FLOAT")
        rows = run["rows"]
        frame = pl.DataFrame(rows, schema={
            "id": pl.Int64, "language": pl.Utf8, "created_at": pl.Datetime("us"), "user_id": pl.Int64,
            "text": pl.Utf8, "n_tokens": pl.Int32, "truncated": pl.Boolean,
            **{label: pl.Float32 for label in run["labels"]}, "labels": pl.List(pl.Utf8), "run_id": pl.Utf8})
        if not keep_text:
            frame = frame.drop("text")
        names = ", ".join(quote_ident(c) for c in frame.columns)
        con.register("incoming", frame.to_arrow())
        con.execute(f"INSERT INTO {quote_ident(table)} ({names}) SELECT {names} FROM incoming")
        con.unregister("incoming")
        con.execute("INSERT INTO runs VALUES ($1, $2, $3, $4, $5, $6, $7, 'multi_label', $8, 'text', "
                    "TIMESTAMP '2024-06-01' + to_minutes($9), TIMESTAMP '2024-06-01' + to_minutes($9 + 1), "
                    "$10, $11, 0, 'done')",
                    [run["run_id"], table, run["model"], run.get("repo"), run.get("commit", "c0ffee"),
                     list(run["labels"]), list(run["thresholds"]), ["in.parquet"], len(frames),
                     len(rows), sum(r["labels"] is None for r in rows)])
        frames.append(frame)
    con.close()
    reference = pl.concat(frames, how="diagonal_relaxed")
    return reference.with_columns([pl.col(label).cast(pl.Float64) for label in all_labels])


def run_spec(run_id, model, labels, thresholds, n, seed, first_id=0, commit="c0ffee"):
    return {"run_id": run_id, "model": model, "labels": labels, "thresholds": thresholds, "commit": commit,
            "rows": make_rows(run_id, labels, thresholds, n, seed, first_id)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three runs: two of model tiny-a (pooled), one of brighter-b with another label set (kept apart)."""
    path = tmp_path_factory.mktemp("store") / "emotions.duckdb"
    runs = [run_spec("run-a", "tiny-a", ENG, ENG_THRESHOLDS, 700, seed=1),
            run_spec("run-a2", "tiny-a", ENG, ENG_THRESHOLDS, 150, seed=2, first_id=700),
            run_spec("run-b", "brighter-b", SIX, SIX_THRESHOLDS, 400, seed=3, first_id=1000)]
    return path, build_store(path, runs)


# --------------------------------------------------------------------------------------------------
# the polars reference


def bucket_expr(spec: str) -> pl.Expr:
    if ":" not in spec:
        return pl.col(spec)
    unit, column = spec.split(":")
    every = {"day": "1d", "week": "1w", "month": "1mo", "year": "1y"}[unit]
    return pl.col(column).dt.truncate(every).cast(pl.Date).alias(spec)


def reference_summary(df: pl.DataFrame, labels, by=(), metric="prevalence", run_ids=None) -> dict:
    """{group tuple: {texts, skipped, <label>..., dominant, any_emotion, no_emotion}} computed with polars."""
    if run_ids is not None:
        df = df.filter(pl.col("run_id").is_in(list(run_ids)))
    scored = pl.col("labels").is_not_null()
    has = {label: pl.col("labels").list.contains(label) for label in labels}
    if metric == "prevalence":
        values = [has[l].cast(pl.Int64).mean().alias(l) for l in labels]
    elif metric == "mean":
        values = [pl.col(l).mean().alias(l) for l in labels]
    else:
        values = [has[l].cast(pl.Int64).sum().alias(l) for l in labels]
    any_ = (pl.col("labels").list.len() > 0).cast(pl.Int64)
    none_ = (pl.col("labels").list.len() == 0).cast(pl.Int64)
    shares = ([any_.sum().alias("any_emotion"), none_.sum().alias("no_emotion")] if metric == "count"
              else [any_.mean().alias("any_emotion"), none_.mean().alias("no_emotion")])
    keys = [bucket_expr(spec) for spec in by]
    counted = df.with_columns(keys).group_by(list(by) or pl.lit(1)).agg(
        scored.sum().alias("texts"), (~scored).sum().alias("skipped"))
    per_label = (df.filter(scored).with_columns(keys).group_by(list(by) or pl.lit(1))
                 .agg(*values, *shares))
    result = {}
    joined = counted.join(per_label, on=list(by) or "literal", how="left", nulls_equal=True)
    for row in joined.iter_rows(named=True):
        key = tuple(row[spec] for spec in by)
        entry = {name: row[name] for name in ("texts", "skipped", *labels, "any_emotion", "no_emotion")}
        if metric == "count":
            entry = {k: (0 if v is None else v) for k, v in entry.items()}
        entry["dominant"] = dominant(entry, labels)
        result[key] = entry
    return result


def dominant(entry: dict, labels) -> str | None:
    values = [entry[label] for label in labels]
    if any(v is None for v in values) or max(values) <= 0:
        return None
    return labels[values.index(max(values))]


def frame_by_group(frame, by, model=None) -> dict:
    result = {}
    for record in frame.records():
        if model is not None and record.get("model") != model:
            continue
        result[tuple(record[spec] for spec in by)] = record
    return result


def assert_summary_equal(frame, reference, labels, by, model=None):
    got = frame_by_group(frame, by, model)
    assert set(got) == set(reference), (sorted(map(str, got)), sorted(map(str, reference)))
    for key, expected in reference.items():
        row = got[key]
        for name, value in expected.items():
            if name in labels and expected["texts"] == 0:
                assert row[name] is None or row[name] == 0, (key, name)
                continue
            assert row[name] == value, (key, name, row[name], value)


# --------------------------------------------------------------------------------------------------
# summarize


def test_prevalence_by_language_matches_polars(store):
    path, df = store
    frame = summarize(path, request=SummaryRequest(by=("language",), runs=("run-a", "run-a2")))
    assert frame.columns == ("language", "texts", "skipped", *ENG, "dominant", "any_emotion", "no_emotion")
    reference = reference_summary(df, ENG, ("language",), run_ids=("run-a", "run-a2"))
    assert_summary_equal(frame, reference, ENG, ("language",))
    assert sum(r["texts"] for r in reference.values()) == 850 - sum(1 for r in df.filter(
        pl.col("run_id") != "run-b").iter_rows(named=True) if r["labels"] is None)
    assert frame.column("language")[-1] is None  # NULL group last, groups ordered
    assert frame.column("language")[:3] == ["deu", "eng", "esp"]


@pytest.mark.parametrize("metric", ["mean", "count"])
def test_mean_and_count_metrics_match_polars(store, metric):
    path, df = store
    frame = summarize(path, request=SummaryRequest(by=("language",), metric=metric, runs=("run-b",)))
    reference = reference_summary(df, SIX, ("language",), metric=metric, run_ids=("run-b",))
    assert_summary_equal(frame, reference, SIX, ("language",))
    assert frame.value_kind == {"mean": "score", "count": "count"}[metric]


def test_no_by_gives_one_overall_row(store):
    path, df = store
    frame = summarize(path, request=SummaryRequest(runs=("run-b",)))
    reference = reference_summary(df, SIX, (), run_ids=("run-b",))
    assert len(frame.rows) == 1
    assert_summary_equal(frame, reference, SIX, ())


@pytest.mark.parametrize("by", [("month:created_at",), ("week:created_at", "language"), ("year:created_at",),
                                ("language", "day:created_at")])
def test_time_buckets_nested_match_polars(store, by):
    path, df = store
    frame = summarize(path, request=SummaryRequest(by=by, runs=("run-a",)))
    reference = reference_summary(df, ENG, by, run_ids=("run-a",))
    assert_summary_equal(frame, reference, ENG, by)
    bucket = next(spec for spec in by if ":" in spec)
    assert frame.time_column == bucket
    assert all(isinstance(v, dt.date) for v in frame.column(bucket))
    if bucket.startswith("month"):
        assert [d.month for d in frame.column(bucket)] == list(range(1, 13))


def test_two_models_are_kept_apart(store):
    path, df = store
    frame = summarize(path, request=SummaryRequest(by=("language",)))
    assert frame.group_columns == ("model", "language")
    assert set(frame.column("model")) == {"tiny-a", "brighter-b"}
    assert frame.columns[frame.columns.index("skipped") + 1:frame.columns.index("dominant")] == (
        "anger", "fear", "joy", "sadness", "surprise", "disgust")
    assert_summary_equal(frame, reference_summary(df, ENG, ("language",), run_ids=("run-a", "run-a2")),
                         ENG, ("language",), model="tiny-a")
    assert_summary_equal(frame, reference_summary(df, SIX, ("language",), run_ids=("run-b",)),
                         SIX, ("language",), model="brighter-b")
    assert all(r["disgust"] is None for r in frame.records() if r["model"] == "tiny-a")
    assert any("run-a, run-a2" in note for note in frame.notes)


def test_same_model_name_other_commit_is_not_pooled(tmp_path):
    path = tmp_path / "two_commits.duckdb"
    df = build_store(path, [run_spec("r1", "m", ENG, ENG_THRESHOLDS, 120, seed=5, commit="aaaaaaaaaaaa1"),
                            run_spec("r2", "m", ENG, ENG_THRESHOLDS, 80, seed=6, first_id=500,
                                     commit="bbbbbbbbbbbb2")])
    frame = summarize(path, request=SummaryRequest(by=("language",)))
    assert set(frame.column("model")) == {"m@aaaaaaaaaa", "m@bbbbbbbbbb"}
    assert_summary_equal(frame, reference_summary(df, ENG, ("language",), run_ids=("r2",)), ENG, ("language",),
                         model="m@bbbbbbbbbb")


def test_where_filter_matches_polars(store):
    path, df = store
    frame = summarize(path, request=SummaryRequest(
        by=("language",), runs=("run-b",),
        where="(language = 'eng' OR language IN ('deu')) AND anger > 0.5 AND created_at < DATE '2024-07-01'"))
    subset = df.filter(((pl.col("language") == "eng") | (pl.col("language") == "deu")) & (pl.col("anger") > 0.5)
                       & (pl.col("created_at") < dt.datetime(2024, 7, 1)))
    assert_summary_equal(frame, reference_summary(subset, SIX, ("language",), run_ids=("run-b",)), SIX,
                         ("language",))
    assert frame.column("anger") == [1.0, 1.0]  # anger > 0.5 means predicted at threshold 0.5


def test_min_count_and_sort(store):
    path, df = store
    reference = reference_summary(df, SIX, ("language",), run_ids=("run-b",))
    cutoff = sorted(r["texts"] for r in reference.values())[1]
    frame = summarize(path, request=SummaryRequest(by=("language",), runs=("run-b",), min_count=cutoff,
                                                   sort="joy"))
    kept = {k: v for k, v in reference.items() if v["texts"] >= cutoff}
    assert len(frame.rows) == len(kept) == len(reference) - 1
    assert frame.column("joy") == sorted((v["joy"] for v in kept.values()), reverse=True)


def test_summary_reads_through_quoted_identifiers(tmp_path):
    """A kept input column with a space and a quote in its name still groups, quoted."""
    path = tmp_path / "odd.duckdb"
    df = build_store(path, [run_spec("r1", "m", ENG, ENG_THRESHOLDS, 90, seed=9)], table="my scores")
    con = duckdb.connect(str(path))
    con.execute('ALTER TABLE "my scores" ADD COLUMN "user ""nick""" VARCHAR')
    con.execute('UPDATE "my scores" SET "user ""nick""" = CAST(user_id % 3 AS VARCHAR)')
    con.close()
    frame = summarize(path, "my scores", SummaryRequest(by=('user "nick"',)))
    df = df.with_columns((pl.col("user_id") % 3).cast(pl.Utf8).alias('user "nick"'))
    assert_summary_equal(frame, reference_summary(df, ENG, ('user "nick"',)), ENG, ('user "nick"',))


# --------------------------------------------------------------------------------------------------
# co-occurrence


def test_cooccurrence_counts_and_lift_match_polars(store):
    path, df = store
    frame = cooccurrence(path, request=CooccurRequest(by=("language",), runs=("run-b",)))
    scored = df.filter((pl.col("run_id") == "run-b") & pl.col("labels").is_not_null())
    has = {label: pl.col("labels").list.contains(label).cast(pl.Int64) for label in SIX}
    pairs = [(a, b) for a in SIX for b in SIX]
    counts = scored.group_by("language").agg(
        pl.len().alias("n"), *[has[a].sum().alias(f"n:{a}") for a in SIX],
        *[(has[a] * has[b]).sum().alias(f"n:{a}:{b}") for a, b in pairs])
    got = {(r["language"], r["label_a"], r["label_b"]): r for r in frame.records()}
    assert len(got) == counts.height * len(pairs)
    for row in counts.iter_rows(named=True):
        for a, b in pairs:
            record = got[(row["language"], a, b)]
            n_ab, n, n_a, n_b = row[f"n:{a}:{b}"], row["n"], row[f"n:{a}"], row[f"n:{b}"]
            assert (record["count"], record["texts"], record["count_a"], record["count_b"]) == (n_ab, n, n_a, n_b)
            expected_lift = None if n_a * n_b == 0 else float(n_ab) * n / (float(n_a) * n_b)
            assert record["lift"] == expected_lift, (row["language"], a, b)
    symmetric = {k: v["count"] for k, v in got.items()}
    assert all(symmetric[(g, a, b)] == symmetric[(g, b, a)] for g, a, b in symmetric)


def test_cooccurrence_keeps_models_apart(store):
    path, _ = store
    frame = cooccurrence(path)
    models = {r["model"]: {r["label_a"] for r in frame.records() if r["model"] == r["model"]}
              for r in frame.records()}
    assert set(models) == {"tiny-a", "brighter-b"}
    assert {r["label_a"] for r in frame.records() if r["model"] == "tiny-a"} == set(ENG)
    assert {r["label_a"] for r in frame.records() if r["model"] == "brighter-b"} == set(SIX)


# --------------------------------------------------------------------------------------------------
# examples and query


def test_examples_are_the_top_k_per_group(store):
    path, df = store
    frame = examples(path, request=ExamplesRequest(label="surprise", by=("language",), k=3, runs=("run-b",)))
    expected = (df.filter((pl.col("run_id") == "run-b") & pl.col("surprise").is_not_null())
                .sort(["surprise", "id"], descending=[True, False]).group_by("language", maintain_order=True)
                .head(3))
    got = {(r["language"], r["id"]): r for r in frame.records()}
    assert len(got) == expected.height
    for row in expected.iter_rows(named=True):
        record = got[(row["language"], row["id"])]
        assert record["score"] == pytest.approx(row["surprise"], abs=0) and record["text"] == row["text"]
        assert record["predicted"] == ("surprise" in row["labels"])
    assert {r["rank"] for r in frame.records()} == {1, 2, 3}


def test_examples_only_from_models_with_the_label(store):
    path, _ = store
    frame = examples(path, request=ExamplesRequest(label="disgust", k=2))
    assert "model" not in frame.columns and len(frame.rows) == 2  # only brighter-b knows disgust
    with pytest.raises(InputError, match="unknown label 'rage'.*anger"):
        examples(path, request=ExamplesRequest(label="rage"))


def test_examples_without_kept_text_say_how_to_keep_it(tmp_path):
    path = tmp_path / "notext.duckdb"
    build_store(path, [run_spec("r1", "m", ENG, ENG_THRESHOLDS, 30, seed=4)], keep_text=False)
    with pytest.raises(InputError, match="--keep-text"):
        examples(path, request=ExamplesRequest(label="joy"))


def test_query_is_read_only(store):
    path, df = store
    frame = run_query(path, "SELECT run_id, count(*) AS n FROM scores GROUP BY 1 ORDER BY 1")
    assert frame.rows == [("run-a", 700), ("run-a2", 150), ("run-b", 400)]
    for sql in ("DROP TABLE scores", "DELETE FROM scores", "INSERT INTO runs (run_id) VALUES ('x')",
                "COPY scores TO 'leak.csv'", "ATTACH 'other.duckdb' AS other"):
        with pytest.raises(StoreError, match="read-only"):
            run_query(path, sql)
    assert run_query(path, "SELECT count(*) FROM scores").rows == [(df.height,)]


# --------------------------------------------------------------------------------------------------
# errors name what exists


def test_errors_list_what_exists(store, tmp_path):
    path, _ = store
    with pytest.raises(StoreError, match="database not found"):
        summarize(tmp_path / "missing.duckdb", request=SummaryRequest(by=("language",)))
    with pytest.raises(StoreError, match=r"table 'nope' not found .*tables: scores$"):
        summarize(path, "nope", SummaryRequest(by=("language",)))
    with pytest.raises(InputError, match=r"run 'run-z' not found .*run-a \(tiny-a, done\).*run-b"):
        summarize(path, request=SummaryRequest(runs=("run-z",)))
    with pytest.raises(InputError, match=r"unknown column 'lang' in --by; columns: id, language"):
        summarize(path, request=SummaryRequest(by=("lang",)))
    with pytest.raises(InputError, match="unknown time bucket 'fortnight'"):
        summarize(path, request=SummaryRequest(by=("fortnight:created_at",)))
    with pytest.raises(InputError, match="column 'user_id' is BIGINT, not a date"):
        summarize(path, request=SummaryRequest(by=("month:user_id",)))
    with pytest.raises(InputError, match="--sort rage: not a label"):
        summarize(path, request=SummaryRequest(by=("language",), sort="rage"))
    with pytest.raises(InputError, match="--metric"):
        summarize(path, request=SummaryRequest(metric="median"))


def test_unfinished_runs_are_named_and_query_can_cap_rows(tmp_path):
    path = tmp_path / "partial.duckdb"
    build_store(path, [run_spec("r1", "m", ENG, ENG_THRESHOLDS, 40, seed=8)])
    con = duckdb.connect(str(path))
    con.execute("UPDATE runs SET status = 'interrupted'")
    con.close()
    frame = summarize(path, request=SummaryRequest(by=("language",)))
    assert frame.notes == ("run r1 is interrupted: the rows it committed are included",)
    capped = run_query(path, "SELECT id FROM scores ORDER BY id", max_rows=5)
    assert capped.rows == [(i,) for i in range(5)] and "first 5 rows" in capped.notes[0]


def test_label_named_like_a_summary_column_is_refused(tmp_path):
    path = tmp_path / "clash.duckdb"
    build_store(path, [run_spec("r1", "m", ("joy", "texts"), (0.5, 0.5), 20, seed=8)])
    with pytest.raises(InputError, match="label 'texts' has the same name as a summary column"):
        summarize(path, request=SummaryRequest(by=("language",)))
