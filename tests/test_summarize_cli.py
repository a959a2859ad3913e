"""The analytics commands as typed: defaults (./emotions.duckdb, table scores), every output format read back
and compared with the library, plots written, errors as one line with a non-zero exit, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from emocli.analytics.queries import SummaryRequest, summarize
from test_analytics import ENG, ENG_THRESHOLDS, SIX, SIX_THRESHOLDS, build_store, run_spec

REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A working directory holding emotions.duckdb with one model's run (the plain `summarize` case)."""
    folder = tmp_path_factory.mktemp("cwd")
    build_store(folder / "emotions.duckdb", [run_spec("run-1", "tiny", ENG, ENG_THRESHOLDS, 300, seed=21)])
    return folder


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    path = tmp_path_factory.mktemp("two") / "two.duckdb"
    build_store(path, [run_spec("run-a", "tiny-a", ENG, ENG_THRESHOLDS, 200, seed=22),
                       run_spec("run-b", "six-b", SIX, SIX_THRESHOLDS, 200, seed=23, first_id=500)])
    return path


def one_error_line(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("hint:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_summarize_by_language_with_no_other_flag(cli, store_dir, monkeypatch):
    monkeypatch.chdir(store_dir)
    result = cli(["summarize", "--by", "language"])
    assert result.exit_code == 0, result.output
    expected = summarize(store_dir / "emotions.duckdb", request=SummaryRequest(by=("language",)))
    for record in expected.records():
        language = record["language"] or "–"
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"│ {language} "))
        assert f"{record['texts']:,}" in line and f"{record['anger']:.1%}" in line and record["dominant"] in line
    for column in ("texts", "skipped", *ENG, "dominant", "any_emotion", "no_emotion"):
        assert column in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "markdown"])
def test_formats_round_trip(cli, store_dir, tmp_path, fmt):
    db = store_dir / "emotions.duckdb"
    args = ["summarize", "--db", db, "--by", "month:created_at", "--by", "language", "--metric", "mean"]
    expected = summarize(db, request=SummaryRequest(by=("month:created_at", "language"), metric="mean"))
    if fmt == "parquet":
        out = tmp_path / "summary.parquet"
        result = cli(args + ["--out", out])  # format from the suffix
        assert result.exit_code == 0, result.output
        got = pl.read_parquet(out)
    else:
        result = cli(args + ["--format", fmt])
        assert result.exit_code == 0, result.output
        if fmt == "csv":
            got = pl.read_csv(result.stdout.encode(), try_parse_dates=True)
        elif fmt == "json":
            got = pl.DataFrame(json.loads(result.stdout)).with_columns(pl.col("month:created_at").str.to_date())
        else:
            lines = result.stdout.strip().splitlines()
            assert lines[0].startswith("| month:created_at | language | texts |") and len(lines) == len(expected.rows) + 2
            return
    assert tuple(got.columns) == expected.columns
    assert got.height == len(expected.rows)
    for got_row, row in zip(got.iter_rows(), expected.rows):
        assert got_row == row  # floats survive csv/json/parquet exactly


def test_out_file_and_plots(cli, store_dir, tmp_path):
    db = store_dir / "emotions.duckdb"
    heatmap, lines, cooc = tmp_path / "heat.png", tmp_path / "lines.png", tmp_path / "co.png"
    result = cli(["summarize", "--db", db, "--by", "language", "--out", tmp_path / "s.csv", "--plot", heatmap])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.csv").read_text().startswith("language,texts,skipped,anger")
    assert result.stdout == ""  # data went to the file, messages to stderr
    result = cli(["summarize", "--db", db, "--by", "week:created_at", "--plot", lines, "-f", "json"])
    assert result.exit_code == 0, result.output
    result = cli(["cooccur", "--db", db, "--by", "language", "--plot", cooc])
    assert result.exit_code == 0, result.output
    for path in (heatmap, lines, cooc):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_two_models_stay_apart_on_the_command_line(cli, two_models):
    result = cli(["summarize", "--db", two_models, "--by", "language", "-f", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert {r["model"] for r in records} == {"tiny-a", "six-b"}
    assert all(r["disgust"] is None for r in records if r["model"] == "tiny-a")
    assert "run-a" in result.stderr and "run-b" in result.stderr  # which runs each model covers
    result = cli(["summarize", "--db", two_models, "--by", "language", "--run", "run-b", "-f", "csv"])
    assert result.exit_code == 0 and result.stdout.startswith("language,texts,skipped,anger,disgust")


def test_cooccur_table_and_json(cli, store_dir):
    db = store_dir / "emotions.duckdb"
    result = cli(["cooccur", "--db", db])
    assert result.exit_code == 0, result.output
    assert "count / lift" in result.stdout and all(label in result.stdout for label in ENG)
    records = json.loads(cli(["cooccur", "--db", db, "-f", "json"]).stdout)
    assert len(records) == len(ENG) ** 2
    assert {"label_a", "label_b", "count", "lift", "count_a", "count_b", "texts"} <= set(records[0])


def test_examples_command(cli, store_dir, tmp_path):
    db = store_dir / "emotions.duckdb"
    result = cli(["examples", "--db", db, "--label", "anger", "--by", "language", "-k", "2", "-f", "json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert len(records) == 2 * 4 and all(r["text"].startswith("text ") for r in records)
    no_text = tmp_path / "notext.duckdb"
    build_store(no_text, [run_spec("r", "m", ENG, ENG_THRESHOLDS, 20, seed=1)], keep_text=False)
    one_error_line(cli(["examples", "--db", no_text, "--label", "anger"]), "--keep-text")


def test_query_prints_and_refuses_writes(cli, store_dir):
    db = store_dir / "emotions.duckdb"
    result = cli(["query", "SELECT run_id, count(*) AS n FROM scores GROUP BY 1", "--db", db, "-f", "csv"])
    assert result.exit_code == 0 and result.stdout == "run_id,n\nrun-1,300\n"
    result = cli(["query", "SELECT labels FROM scores WHERE id = 0", "--db", db, "-f", "json"])
    assert isinstance(json.loads(result.stdout)[0]["labels"], list)
    assert "n_tokens" in cli(["query", "DESCRIBE scores", "--db", db]).stdout
    one_error_line(cli(["query", "DROP TABLE scores", "--db", db]), "read-only")
    one_error_line(cli(["query", "UPDATE scores SET anger = 1", "--db", db]), "read-only")
    one_error_line(cli(["query", "SELECT * FROM nope", "--db", db]), "nope")
    assert cli(["query", "SELECT count(*) FROM scores", "--db", db, "-f", "csv"]).stdout == "count_star()\n300\n"


def test_error_paths_are_one_line(cli, store_dir, two_models, tmp_path, monkeypatch):
    db = store_dir / "emotions.duckdb"
    monkeypatch.chdir(tmp_path)
    one_error_line(cli(["summarize", "--by", "language"]), "database not found", "emotions.duckdb")
    one_error_line(cli(["summarize", "--db", db, "--table", "tweets"]), "table 'tweets' not found", "tables: scores")
    one_error_line(cli(["summarize", "--db", two_models, "--run", "run-x"]), "run 'run-x' not found",
                   "run-a (tiny-a, done)", "run-b (six-b, done)")
    one_error_line(cli(["summarize", "--db", db, "--by", "country"]), "unknown column 'country'",
                   "columns: id, language, created_at")
    one_error_line(cli(["summarize", "--db", db, "--by", "language", "--sort", "rage"]), "--sort rage", "anger")
    one_error_line(cli(["examples", "--db", db, "--label", "rage"]), "unknown label 'rage'", "anger, fear")
    one_error_line(cli(["summarize", "--db", db, "--by", "language", "--where", "1=1; DROP TABLE scores"]),
                   "--where", "';'")
    one_error_line(cli(["summarize", "--db", db, "--where", "language = 'x' OR 1=1 --"]), "comments")
    one_error_line(cli(["cooccur", "--db", db, "--where", "upper(language) = 'ENG'"]), "function calls")
    one_error_line(cli(["summarize", "--db", db, "--where", "country = 'x'"]), "unknown column 'country'")
    one_error_line(cli(["summarize", "--db", db, "--format", "parquet"]), "--out")
    one_error_line(cli(["summarize", "--db", db, "--format", "xlsx"]), "--format xlsx")
    one_error_line(cli(["summarize", "--db", db, "--plot", tmp_path / "plot.txt"]), ".png")
    not_a_db = tmp_path / "notes.duckdb"
    not_a_db.write_text("hello")
    one_error_line(cli(["summarize", "--db", not_a_db]), "cannot open")
    assert cli(["query", "SELECT count(*) FROM scores", "--db", db, "-f", "csv"]).stdout == "count_star()\n300\n"


def test_analytics_commands_do_not_import_torch():
    for command in ("summarize", "query"):
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "emocli.cli", command, "--help"],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert not {"torch", "transformers", "matplotlib", "polars"} & imported


@pytest.mark.slow
def test_tag_then_summarize_end_to_end(cli, brighter, tiny_model_dir, tmp_path):
    """A real Parquet file tagged by `emocli tag` with the tiny model, then summarized: the numbers equal
    polars over the rows the store holds, and examples show the kept texts."""
    import datetime as dt

    import duckdb

    from test_analytics import assert_summary_equal, reference_summary

    frames = []
    for offset, language in enumerate(("eng", "deu", "esp")):
        frame = pl.read_csv(brighter / "dev" / f"{language}.csv").head(30).select("id", "text")
        frames.append(frame.with_columns(
            pl.lit(language).alias("language"),
            (pl.lit(dt.datetime(2024, 1 + 4 * offset, 3)) + pl.duration(days=pl.int_range(0, 30) * 3))
            .alias("created_at")))
    data = pl.concat(frames)
    source = tmp_path / "posts.parquet"
    data.write_parquet(source)
    db = tmp_path / "emotions.duckdb"
    result = cli(["tag", source, "--model", tiny_model_dir, "--db", db, "--keep-text", "--quiet"])
    assert result.exit_code == 0, result.output

    con = duckdb.connect(str(db), read_only=True)
    stored = pl.from_arrow(con.sql("SELECT * FROM scores").to_arrow_table())
    con.close()
    assert stored.height == data.height and stored["created_at"].dtype == pl.Datetime("us")
    stored = stored.with_columns([pl.col(label).cast(pl.Float64) for label in ENG])

    by = ("language", "month:created_at")
    result = cli(["summarize", "--db", db, "--by", by[0], "--by", by[1], "-f", "json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    frame = summarize(db, request=SummaryRequest(by=by))
    assert [tuple(r.values()) for r in got] == [tuple(
        v.isoformat() if isinstance(v, dt.date) else v for v in row) for row in frame.rows]
    assert_summary_equal(frame, reference_summary(stored, ENG, by), ENG, by)
    assert sum(r["texts"] + r["skipped"] for r in got) == data.height

    counts = summarize(db, request=SummaryRequest(by=("language",), metric="count"))
    assert_summary_equal(counts, reference_summary(stored, ENG, ("language",), metric="count"), ENG, ("language",))

    result = cli(["examples", "--db", db, "--label", "joy", "--by", "language", "-k", "2", "-f", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert len(shown) == 6 and {r["text"] for r in shown} <= set(data["text"])
    top_eng = stored.filter(pl.col("language") == "eng").sort("joy", descending=True)["text"][0]
    assert next(r for r in shown if r["language"] == "eng" and r["rank"] == 1)["text"] == top_eng


def test_values_that_look_like_rich_markup_are_printed_as_is(cli, tmp_path):
    import duckdb

    db = tmp_path / "markup.duckdb"
    build_store(db, [run_spec("[bold]r1[/]", "[red]m", ENG, ENG_THRESHOLDS, 30, seed=1)])
    con = duckdb.connect(str(db))
    con.execute("UPDATE scores SET language = '[/bold]' WHERE id % 2 = 0")
    con.close()
    for args in (["summarize", "--by", "language"], ["cooccur", "--by", "language"],
                 ["examples", "--label", "joy", "--run", "[bold]r1[/]", "-k", "1"]):
        result = cli(args + ["--db", db])
        assert result.exit_code == 0, result.output
        assert "[/bold]" in result.stdout or "[bold]r1[/]" in result.stdout
