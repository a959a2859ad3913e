"""Languages: the alias table, detection in `tag`, the model's coverage in `runs`, and the summaries that warn."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from emocli.analytics.coverage import coverage
from emocli.analytics.queries import CooccurRequest, SummaryRequest, cooccurrence, summarize
from emocli.errors import InputError
from emocli.inference.tagger import TagConfig, tag
from emocli.languages import coverage_key, is_covered, normalize_languages, to_iso639_3
from emocli.model.info import META_FILE, read_model_info

CORPUS_LANGUAGES = ("eng", "deu", "esp", "rus", "amh", "hin")
PER_LANGUAGE = 12


def test_brighter_codes_and_detector_codes_map_to_iso639_3():
    assert [to_iso639_3(c) for c in ("esp", "chn", "ptbr", "ptmz", "eng", "arq", "vmw")] == [
        "spa", "zho", "por", "por", "eng", "arq", "vmw"]
    assert [to_iso639_3(c) for c in ("en", "pt-BR", "zh_Hant", "__label__de", "German", None, " ")] == [
        "eng", "por", "zho", "deu", "deu", "und", "und"]
    assert coverage_key("arq") == coverage_key("ar") == "ara"  # a detector's Arabic matches Algerian Arabic
    assert normalize_languages(["eng", "esp", "ptbr", "ptmz"]) == ("eng", "por", "spa")
    assert normalize_languages(["train"]) is None  # train.csv names no language
    assert normalize_languages(["mul"]) is None and normalize_languages(["en", "multilingual"]) is None
    assert is_covered("esp", ("spa",)) is True and is_covered("deu", ("eng",)) is False
    assert is_covered("und", ("eng",)) is None and is_covered("deu", None) is None


def test_the_detector_is_right_on_brighter_texts_and_says_und_when_unsure(brighter):
    from emocli.inference.langid import LanguageDetector

    detector = LanguageDetector()
    for language, iso in (("deu", "deu"), ("rus", "rus"), ("hin", "hin"), ("esp", "spa")):
        texts = pcsv.read_csv(brighter / "dev" / f"{language}.csv").column("text").to_pylist()[:60]
        codes, scores = detector.detect(texts)
        assert sum(code == iso for code in codes) / len(codes) >= 0.7, (language, codes)
        assert scores.min() >= 0.0 and scores.max() <= 1.0
    codes, scores = detector.detect(["😀😀", "", None, "   ", "ok"])
    assert codes == ["und"] * 5 and list(scores[1:4]) == [0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def english_model(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model, recorded as trained on English (as `finetune` on eng.csv records it)."""
    out = tmp_path_factory.mktemp("english") / "tiny-eng"
    shutil.copytree(tiny_model_dir, out)
    meta = json.loads((out / META_FILE).read_text())
    (out / META_FILE).write_text(json.dumps({**meta, "languages": ["eng"]}))
    return out


@pytest.fixture(scope="module")
def corpus_texts(brighter) -> tuple[list[str], list[str]]:
    texts, languages = [], []
    for language in CORPUS_LANGUAGES:
        rows = pcsv.read_csv(brighter / "dev" / f"{language}.csv").column("text").to_pylist()[:PER_LANGUAGE]
        texts += rows
        languages += [language] * len(rows)
    return texts, languages


def tag_corpus(tmp_path, model, columns: dict, **options) -> Path:
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table(columns), path)
    db = tmp_path / "out.duckdb"
    tag(TagConfig(inputs=(str(path),), model=str(model), db=db, **options))
    return db


def fetch(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_tag_detects_languages_when_the_input_has_no_language_column(tmp_path, english_model, corpus_texts):
    texts, truth = corpus_texts
    db = tag_corpus(tmp_path, english_model, {"id": list(range(len(texts))), "text": texts})
    rows = fetch(db, "SELECT id, language, language_score FROM scores ORDER BY id")
    assert len(rows) == len(texts)
    hits = sum(coverage_key(language) == coverage_key(truth[row_id]) for row_id, language, _ in rows)
    assert hits / len(rows) >= 0.8
    assert all(0.0 <= score <= 1.0 for _, _, score in rows)
    assert fetch(db, "SELECT model_languages, language_source FROM runs") == [(["eng"], "detected")]
    assert dict(fetch(db, "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'scores' "
                          "AND column_name LIKE 'language%'")) == {"language": "VARCHAR", "language_score": "FLOAT"}


def test_a_language_column_is_kept_as_is_and_detection_is_opt_in(tmp_path, english_model, corpus_texts):
    texts, truth = corpus_texts
    db = tag_corpus(tmp_path, english_model, {"text": texts, "lang_code": truth}, language_col="lang_code",
                    keep=("lang_code",))
    assert fetch(db, "SELECT DISTINCT lang_code FROM scores ORDER BY 1") == [(c,) for c in sorted(CORPUS_LANGUAGES)]
    assert fetch(db, "SELECT language_source FROM runs") == [("column:lang_code",)]
    assert "language_score" not in [c for (c,) in fetch(db, "SELECT column_name FROM duckdb_columns() "
                                                            "WHERE table_name = 'scores'")]
    forced = tmp_path / "forced"
    forced.mkdir()
    db = tag_corpus(forced, english_model, {"text": texts, "language": truth}, detect_language=True)
    assert fetch(db, "SELECT count(*) FROM scores WHERE input_language = 'deu' AND language = 'deu'")[0][0] >= 10


def test_a_missing_language_column_is_one_clear_error(tmp_path, english_model, corpus_texts, cli):
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": corpus_texts[0][:5]}), path)
    with pytest.raises(InputError, match=r"corpus.parquet: --language-col 'lingo': no such column"):
        tag(TagConfig(inputs=(str(path),), model=str(english_model), db=tmp_path / "x.duckdb", language_col="lingo"))
    result = cli(["tag", path, "-m", english_model, "--db", tmp_path / "y.duckdb", "--language-col", "lingo"])
    assert result.exit_code == 2 and "no such column" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def brighter_store(tmp_path_factory, english_model, corpus_texts) -> Path:
    """The corpus tagged with its BRIGHTER `language` column, by a model trained on English."""
    texts, truth = corpus_texts
    return tag_corpus(tmp_path_factory.mktemp("store"), english_model, {"text": texts, "language": truth})


def test_coverage_flags_the_languages_outside_the_model(brighter_store):
    result = coverage(brighter_store, "scores", SummaryRequest(by=("language",)))
    (model,) = result.models
    assert model.model_languages == ("eng",) and model.language_column == "language"
    assert model.inside_values == ("eng",) and model.outside_languages == ("amh", "deu", "hin", "rus", "spa")
    assert {g.key[0] for g in model.flagged_groups} == {"deu", "esp", "rus", "amh", "hin"}
    assert model.rows == 6 * PER_LANGUAGE and model.rows_outside == 5 * PER_LANGUAGE
    assert result.messages == (
        f"5 of 6 languages are outside {model.model}'s training languages (eng): their scores are not comparable "
        "(amh, deu, esp, hin, rus); --in-domain-only drops them",)


def test_summarize_and_cooccur_warn_and_in_domain_only_drops_the_rows(brighter_store, cli):
    frame = summarize(brighter_store, "scores", SummaryRequest(by=("language",)))
    outside = dict(zip(frame.column("language"), frame.column("outside_model")))
    assert outside == {"eng": 0.0, "deu": 1.0, "esp": 1.0, "rus": 1.0, "amh": 1.0, "hin": 1.0}
    assert len(frame.warnings) == 1 and frame.warnings[0].startswith("5 of 6 languages are outside")
    overall = summarize(brighter_store, "scores", SummaryRequest())
    assert overall.column("outside_model") == [pytest.approx(5 / 6)]
    assert "83% of the rows (60 of 72) are in languages outside" in overall.warnings[0]

    kept = summarize(brighter_store, "scores", SummaryRequest(by=("language",), in_domain_only=True))
    assert kept.column("language") == ["eng"] and kept.column("texts") == [PER_LANGUAGE] and not kept.warnings
    assert any("dropped 60 rows outside" in note for note in kept.notes)

    pairs = cooccurrence(brighter_store, "scores", CooccurRequest(in_domain_only=True))
    assert set(pairs.column("texts")) == {PER_LANGUAGE}
    assert cooccurrence(brighter_store, "scores", CooccurRequest()).warnings[0].startswith("83% of the rows")

    result = cli(["summarize", "--by", "language", "--db", brighter_store])
    assert result.exit_code == 0 and "warning: 5 of 6 languages are outside" in result.stderr
    result = cli(["cooccur", "--db", brighter_store, "--in-domain-only"])
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_in_domain_only_says_why_it_cannot_filter(tmp_path, tiny_model_dir, corpus_texts, cli):
    texts, truth = corpus_texts
    db = tag_corpus(tmp_path, tiny_model_dir, {"text": texts, "language": truth})  # no languages recorded
    frame = summarize(db, "scores", SummaryRequest(by=("language",)))
    assert "outside_model" not in frame.columns
    assert frame.warnings == (f"{frame_model(db)}'s training languages are unknown: scores per language may not "
                              "be comparable",)
    result = cli(["summarize", "--db", db, "--in-domain-only"])
    assert result.exit_code == 2 and "--in-domain-only:" in result.stderr and "training languages are unknown" in result.stderr


def frame_model(db: Path) -> str:
    return fetch(db, "SELECT model FROM runs")[0][0]


def test_finetune_records_its_training_languages(finetuned_model_dir, cli):
    info = read_model_info(finetuned_model_dir)
    assert info.languages == ("eng",)
    assert json.loads((finetuned_model_dir / META_FILE).read_text())["languages"] == ["eng"]
    result = cli(["models", "info", finetuned_model_dir, "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["languages"] == ["eng"]
    result = cli(["models", "info", "all-minilm-l6-v2", "--json"])
    assert json.loads(result.stdout)["languages"] == ["eng"]


def test_a_run_started_without_detection_resumes_without_it(tmp_path, english_model, corpus_texts):
    texts, _ = corpus_texts
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": texts}), path)
    db = tmp_path / "out.duckdb"
    first = tag(TagConfig(inputs=(str(path),), model=str(english_model), db=db, detect_language=False, limit=20))
    again = tag(TagConfig(inputs=(str(path),), model=str(english_model), db=db))  # the default now detects
    assert again.run_id == first.run_id and again.status == "done" and again.resumed_from == 20
    assert any("started without language detection" in note for note in again.notes)
    assert fetch(db, "SELECT count(*), count(DISTINCT id) FROM scores") == [(len(texts), len(texts))]
    assert fetch(db, "SELECT count(*) FROM runs") == [(1,)]
