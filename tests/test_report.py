"""`emocli report`: every figure of the page equals what summarize/cooccur/examples print for the same rows,
histograms equal polars over the stored scores, bad input is one line, the page is one self-contained file."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import duckdb
import pytest

from emocli.analytics.queries import CooccurRequest, ExamplesRequest, SummaryRequest, cooccurrence, examples, summarize
from emocli.analytics.report import ReportRequest, bucket_for, build_report, jaccard
from emocli.analytics.report_page import chart_specs, javascript_bundle, report_html
from test_analytics import ENG, ENG_THRESHOLDS, SIX, SIX_THRESHOLDS, build_store, run_spec
from test_summarize_cli import one_error_line

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent
XSS = "</script><script>alert(1)</script>"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One model's run over 2024 (600 rows), the top anger text carrying a script-closing payload."""
    folder = tmp_path_factory.mktemp("report")
    path = folder / "emotions.duckdb"
    reference = build_store(path, [run_spec("run-1", "tiny", ENG, ENG_THRESHOLDS, 600, seed=31)])
    with duckdb.connect(str(path)) as con:
        con.execute(f"UPDATE scores SET text = $t WHERE id = (SELECT id FROM scores WHERE anger IS NOT NULL "
                    f"ORDER BY anger DESC, id LIMIT 1)", {"t": XSS})
    return path, reference


def spec_values(spec: dict) -> list[dict]:
    return spec["data"]["values"] if "data" in spec else spec["spec"]["data"]["values"]


def page_specs(page: str) -> dict[str, dict]:
    return {name: json.loads(body) for name, body in
            re.findall(r'<script type="application/json" id="spec-([a-z]+)">(.*?)</script>', page, re.S)}


def test_prevalence_chart_holds_summarize_json_to_the_last_digit(cli, store):
    db, _ = store
    result = cli(["summarize", "--db", db, "--by", "language", "--format", "json"])
    assert result.exit_code == 0, result.output
    expected = json.loads(result.stdout)
    data = build_report(db)  # no flags: --by language, the table's created_at for the trend
    values = spec_values(chart_specs(data)["prevalence"])
    assert data.by == "language" and len(values) == len(expected) * len(ENG)
    for record in expected:
        cells = {v["emotion"]: v for v in values if v["group"] == record["language"]}
        assert {label: cells[label]["prevalence"] for label in ENG} == {label: record[label] for label in ENG}
        assert {cells[label]["texts"] for label in ENG} == {record["texts"]}
        assert {cells[label]["dominant"] for label in ENG} == {record["dominant"]}
    assert [row.key for row in data.groups] == [record["language"] for record in expected]


def test_trend_bucket_from_the_date_range_or_over(cli, store):
    db, _ = store
    data = build_report(db)
    assert data.trend.time_column == "week:created_at"  # 366 days: 53 weeks, the finest bucket under 60 points
    result = cli(["summarize", "--db", db, "--by", "week:created_at", "--format", "json"])
    expected = json.loads(result.stdout)
    values = spec_values(chart_specs(data)["trend"])
    got = {(v["bucket"], v["emotion"]): v["prevalence"] for v in values}
    assert got == {(r["week:created_at"], label): r[label] for r in expected for label in ENG}
    monthly = build_report(db, request=ReportRequest(over="month:created_at"))
    assert monthly.trend.time_column == "month:created_at" and len(monthly.trend.rows) == 12
    import datetime as dt

    start = dt.datetime(2024, 1, 1)
    assert bucket_for(start, start + dt.timedelta(hours=30)) == "hour"
    assert bucket_for(start, start + dt.timedelta(days=40)) == "day"
    assert bucket_for(start, start + dt.timedelta(days=3 * 365)) == "month"
    assert bucket_for(start, start + dt.timedelta(days=30 * 365)) == "year"


def test_cooccurrence_lift_and_jaccard_come_from_cooccur(store):
    db, _ = store
    frame = cooccurrence(db, request=CooccurRequest())
    expected = {(r["label_a"], r["label_b"]): r for r in frame.records() if r["label_a"] != r["label_b"]}
    for measure in ("lift", "jaccard"):
        data = build_report(db, request=ReportRequest(cooccur=measure))
        spec = chart_specs(data)["cooccur"]
        values = spec_values(spec)
        assert {(v["label_a"], v["label_b"]) for v in values} == set(expected)
        for v in values:
            r = expected[(v["label_a"], v["label_b"])]
            assert (v["count"], v["lift"]) == (r["count"], r["lift"])
            assert v["jaccard"] == r["count"] / (r["count_a"] + r["count_b"] - r["count"])
        assert spec["layer"][0]["encoding"]["color"]["field"] == measure
    assert jaccard(0, 0, 0) is None


def test_score_histograms_and_thresholds_match_polars(store):
    db, reference = store
    data = build_report(db, request=ReportRequest(bins=10))
    spec = chart_specs(data)["distribution"]
    values = spec_values(spec)
    for label, threshold in zip(ENG, ENG_THRESHOLDS):
        scores = reference[label].drop_nulls()
        expected = [int(((scores * 10).floor().clip(0, 9) == b).sum()) for b in range(10)]
        got = [v["count"] for v in values if v["label"] == label]
        assert got == expected and sum(got) == scores.len()
        assert {v["threshold"] for v in values if v["label"] == label} == {threshold}
    assert data.corpus.thresholds == dict(zip(ENG, ENG_THRESHOLDS))


def test_corpus_section_and_examples(store):
    db, reference = store
    data = build_report(db, request=ReportRequest(top_k=2))
    corpus = data.corpus
    assert (corpus.rows, corpus.skipped) == (reference.height, reference["labels"].is_null().sum())
    assert corpus.texts == corpus.rows - corpus.skipped
    assert corpus.truncated == reference["truncated"].sum()
    assert (corpus.model, corpus.commit, corpus.labels, corpus.files) == ("tiny", "c0ffee", ENG, ("in.parquet",))
    first, last = reference["created_at"].min(), reference["created_at"].max()
    assert corpus.date_range == (first.isoformat(sep=" "), last.isoformat(sep=" "))
    for label in ENG:
        assert data.examples[label].rows == examples(db, request=ExamplesRequest(label=label, k=2)).rows
    page = report_html(data)
    assert XSS not in page and "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for value in (f"{corpus.rows:,}", "c0ffee", "in.parquet", corpus.date_range[0]):
        assert value in page


def test_small_groups_are_marked_not_hidden(store):
    db, _ = store
    data = build_report(db, request=ReportRequest(min_texts=150))
    small = {row.key for row in data.groups if row.small}
    assert small and small == {row.key for row in data.groups if row.texts < 150}
    values = spec_values(chart_specs(data)["prevalence"])
    assert {v["group"] for v in values if v["small"]} == small  # still drawn, faded
    page = report_html(data)
    assert page.count("too few texts to trust (n &lt; 150)") == len(small)


def test_groups_outside_the_model_languages_are_flagged(tmp_path):
    db = tmp_path / "langs.duckdb"
    build_store(db, [run_spec("run-1", "tiny", ENG, ENG_THRESHOLDS, 200, seed=32)])
    data = build_report(db)  # runs.model_languages NULL: unknown, nothing flagged
    assert data.corpus.model_languages is None and not any(row.outside_model_languages for row in data.groups)
    with duckdb.connect(str(db)) as con:
        con.execute("ALTER TABLE runs ADD COLUMN IF NOT EXISTS model_languages VARCHAR[]")  # an older store's runs
        con.execute("UPDATE runs SET model_languages = ['eng', 'deu']")
    data = build_report(db)
    assert data.corpus.model_languages == ("eng", "deu")
    # the same share summarize reports in its outside_model column (BRIGHTER esp = ISO spa: outside)
    shares = {r["language"]: r["outside_model"] for r in summarize(db, request=SummaryRequest(by=("language",))).records()}
    assert {row.key for row in data.groups if row.outside_model_languages} == {k for k, v in shares.items() if (v or 0) > 0.5} == {"esp"}
    page = report_html(data)
    assert "not a language the model was trained on" in page
    assert html.escape(summarize(db, request=SummaryRequest(by=("language",))).warnings[0]) in page  # the same line


def test_page_is_self_contained_and_inlines_the_libraries_once(store):
    db, _ = store
    page = report_html(build_report(db))
    assert page.count("window.vegaEmbed=") == 1  # one bundle for all four charts
    assert set(page_specs(page)) == {"prevalence", "trend", "cooccur", "distribution"}
    outside_bundle = page.replace(javascript_bundle(), "")  # the bundle's own HTML snippets are JS strings
    assert len(outside_bundle) < len(page) - 800_000
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)\s*=""", outside_bundle, re.I)
    assert "@import" not in page and "url(" not in page.split("</style>")[0]
    assert len(page.encode()) < 3_000_000


def test_report_command_defaults_and_bad_input(cli, store, tmp_path, monkeypatch):
    db, _ = store
    monkeypatch.chdir(db.parent)
    result = cli(["report", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (db.parent / "report.html").stat().st_size > 100_000
    one_error_line(cli(["report", "--db", tmp_path / "absent.duckdb", "-o", tmp_path / "x.html"]),
                   "database not found", "absent.duckdb")
    one_error_line(cli(["report", "--by", "country", "-o", tmp_path / "x.html"]), "'country'", "--by")
    one_error_line(cli(["report", "--over", "month:user_id", "-o", tmp_path / "x.html"]), "user_id", "not a date")
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE IF NOT EXISTS empty AS SELECT * FROM scores LIMIT 0")
        con.execute("INSERT INTO runs SELECT 'run-empty', 'empty', model, repo, \"commit\", labels, thresholds, "
                    "task, inputs, text_col, started_at, finished_at, 0, 0, 0, 'done' FROM runs "
                    "WHERE run_id = 'run-1' AND NOT EXISTS (SELECT 1 FROM runs WHERE run_id = 'run-empty')")
    one_error_line(cli(["report", "--table", "empty", "-o", tmp_path / "x.html"]), "'empty'", "no rows")
    one_error_line(cli(["report", "--where", "language = 'xx'", "-o", tmp_path / "x.html"]), "matching --where")
    assert not (tmp_path / "x.html").exists()


def test_two_models_ask_for_a_run_and_missing_texts_are_said(cli, tmp_path):
    db = tmp_path / "two.duckdb"
    build_store(db, [run_spec("run-a", "tiny-a", ENG, ENG_THRESHOLDS, 100, seed=33),
                     run_spec("run-b", "six-b", SIX, SIX_THRESHOLDS, 100, seed=34, first_id=500)], keep_text=False)
    one_error_line(cli(["report", "--db", db, "-o", tmp_path / "r.html"]), "2 models", "--run run-a")
    data = build_report(db, request=ReportRequest(runs=("run-b",), labels=("joy", "fear")))
    assert data.corpus.labels == ("joy", "fear") and data.corpus.rows == 100
    assert data.examples == {} and "--keep-text" in data.examples_note
    assert set(spec_values(chart_specs(data)["prevalence"])[0]) >= {"group", "emotion", "prevalence"}


def test_report_does_not_import_torch(store, tmp_path):
    db, _ = store
    out = tmp_path / "r.html"
    probe = ("import runpy, sys; sys.argv = ['emocli', 'report', '--db', sys.argv[1], '-o', sys.argv[2], '-q']\n"
             "try:\n    runpy.run_module('emocli.cli', run_name='__main__')\nexcept SystemExit as e:\n"
             "    assert not e.code, e.code\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'matplotlib'}))")
    done = subprocess.run([sys.executable, "-c", probe, str(db), str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]" and out.stat().st_size > 100_000
