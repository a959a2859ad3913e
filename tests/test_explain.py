"""`emocli explain`: a tiny BERT trained so that one planted word fires `anger` (another fires `joy`) must get
that word ranked first by LIME and by integrated gradients, per text, in every output format, and over a
real DuckDB store."""

from __future__ import annotations

import html.parser
import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from emocli.explain.explainer import explain_text
from emocli.explain.ig import IG_RELATIVE_TOLERANCE, path_points
from emocli.explain.lime import weighted_ridge
from emocli.explain.scoring import label_probabilities
from emocli.explain.words import word_spans
from emocli.model.io import load_model

LABELS = ("anger", "fear", "joy", "sadness", "surprise")
TRIGGERS = {"anger": "furious", "joy": "delighted"}
TEXTS = [
    "the city was quiet and she felt furious about the report",
    "furious again , they said nothing about the long road",
    "we walked home late and everyone there was furious",
]


def _filler_words(tokenizer) -> list[str]:
    """Common whole words of the MiniLM vocabulary (ids 2000-4000 are frequent English words)."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(2000, 4000)))
    return [t for t in tokens if t.isalpha() and len(t) >= 3 and t not in TRIGGERS.values()]


def synthetic_texts(words: list[str], n: int, rng: random.Random) -> tuple[list[str], list[list[float]]]:
    """Random word strings; a trigger planted at a random place sets its label, nothing else sets any."""
    texts, targets = [], []
    for _ in range(n):
        sentence = [rng.choice(words) for _ in range(rng.randint(4, 10))]
        target = [0.0] * len(LABELS)
        for label, trigger in TRIGGERS.items():
            if rng.random() < 0.4:
                sentence.insert(rng.randint(0, len(sentence)), trigger)
                target[LABELS.index(label)] = 1.0
        texts.append(" ".join(sentence))
        targets.append(target)
    return texts, targets


@pytest.fixture(scope="session")
def trigger_model_dir(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer BERT (hidden 32, MiniLM tokenizer) fine-tuned with a plain torch loop on synthetic texts."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from emocli.model.io import ModelInfo, save_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains faster on one thread than on two busy ones
    try:
        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
        texts, targets = synthetic_texts(_filler_words(tokenizer), 640, random.Random(0))
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2,
                            num_labels=len(LABELS), problem_type="multi_label_classification")
        module = BertForSequenceClassification(config)
        module.bert.embeddings.word_embeddings.weight.requires_grad_(False)  # random vectors are distinct enough
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
        y = torch.tensor(targets)
        for _ in range(15):
            order = torch.randperm(len(texts)).tolist()
            for begin in range(0, len(texts), 32):
                batch = order[begin: begin + 32]
                encoded = tokenizer([texts[i] for i in batch], padding=True, return_tensors="pt")
                loss = module(**encoded, labels=y[batch]).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
        module.eval()
        info = ModelInfo(labels=LABELS, thresholds=(0.5,) * len(LABELS), task="multi_label", max_length=48)
        return save_model(tmp_path_factory.mktemp("trigger_model"), module, tokenizer, info)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trigger_model(trigger_model_dir):
    return load_model(trigger_model_dir)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def one_error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# ------------------------------------------------------------------------------------------ library


def test_the_trigger_model_learned_the_trigger(trigger_model):
    ids = [trigger_model.tokenizer(t)["input_ids"] for t in TEXTS + ["we walked home late and everyone was there"]]
    scores = label_probabilities(trigger_model, ids)
    anger, joy = LABELS.index("anger"), LABELS.index("joy")
    assert (scores[:3, anger] > 0.8).all() and scores[3, anger] < 0.2
    assert (scores[:, joy] < 0.2).all()


@pytest.mark.parametrize("method", ["lime", "integrated-gradients"])
def test_trigger_word_gets_the_largest_attribution(trigger_model, method):
    for text in TEXTS:
        explanation = explain_text(trigger_model, text, method=method, samples=300)
        assert [item.label for item in explanation.labels] == ["anger"]  # the predicted labels by default
        assert explanation.top_word("anger") == "furious"
        contributions = explanation.label("anger").contributions
        trigger = max(contributions)
        assert trigger > 0.5 and sorted(contributions)[-2] < 0.25 * trigger
    both = explain_text(trigger_model, "delighted with the furious game today", method=method, samples=300)
    assert {item.label for item in both.labels} == {"anger", "joy"}
    assert both.top_word("anger") == "furious" and both.top_word("joy") == "delighted"


def test_integrated_gradients_completeness(trigger_model):
    """Stated tolerance: with the default 64 trapezoid steps, |sum of attributions - (score - baseline score)|
    <= IG_RELATIVE_TOLERANCE (1e-2) * |score - baseline score|; fewer steps leave a larger gap."""
    for text in TEXTS + ["delighted with the furious game today"]:
        explanation = explain_text(trigger_model, text, ["anger", "joy"], method="integrated-gradients")
        for item in explanation.labels:
            expected = item.score - item.baseline_score
            gap = abs(sum(item.contributions) - expected)
            assert gap == pytest.approx(item.diagnostics["completeness_gap"], abs=1e-6)
            if abs(expected) > 0.05:
                assert gap <= IG_RELATIVE_TOLERANCE * abs(expected)
            else:
                assert gap <= 1e-3
    coarse = explain_text(trigger_model, TEXTS[0], ["anger"], method="ig", steps=4).labels[0]
    fine = explain_text(trigger_model, TEXTS[0], ["anger"], method="ig", steps=64).labels[0]
    assert fine.diagnostics["completeness_gap"] < coarse.diagnostics["completeness_gap"]
    for rule in ("trapezoid", "gauss-legendre"):
        alphas, weights = path_points(16, rule)
        assert weights.sum() == pytest.approx(1.0) and alphas.min() >= 0 and alphas.max() <= 1


@pytest.mark.parametrize("method", ["lime", "integrated-gradients"])
def test_single_label_models_explain_the_softmax(trigger_model, method):
    softmax_model = replace(trigger_model, info=replace(trigger_model.info, task="single_label"))
    explanation = explain_text(softmax_model, TEXTS[2], method=method, samples=300)
    (item,) = explanation.labels  # single-label: the argmax
    assert item.label == "anger" and explanation.top_word("anger") == "furious"
    if method == "integrated-gradients":
        assert item.diagnostics["completeness_gap"] <= IG_RELATIVE_TOLERANCE * abs(item.score - item.baseline_score)


@pytest.mark.parametrize("arch, head", [("transformer", "label-attention"), ("transformer", "cnn-bilstm-attn"),
                                        ("small", None)])
def test_custom_architectures_are_explained(arch, head, tiny_model_dir, tmp_path):
    """Heads and the small model load through emocli (not transformers); both methods work on them."""
    from emocli.model import heads
    from emocli.model.io import ModelInfo, save_model

    tokenizer, module = heads.build_model(arch, head, tiny_model_dir, LABELS)
    info = ModelInfo(LABELS, (0.5,) * len(LABELS), max_length=32, architecture=heads.architecture_name(arch, head))
    model = load_model(save_model(tmp_path / "custom", module.eval(), tokenizer, info))
    ig = explain_text(model, TEXTS[0], ["anger", "joy"], method="integrated-gradients")
    for item in ig.labels:
        assert item.diagnostics["completeness_gap"] <= max(IG_RELATIVE_TOLERANCE * abs(item.score - item.baseline_score),
                                                           1e-4)
    lime = explain_text(model, TEXTS[0], ["anger"], samples=50)
    assert len(lime.label("anger").contributions) == len(lime.words) == 11


def test_lime_is_reproducible_with_a_seed(trigger_model):
    first = explain_text(trigger_model, TEXTS[0], ["anger"], samples=200, seed=7)
    again = explain_text(trigger_model, TEXTS[0], ["anger"], samples=200, seed=7)
    assert first.to_dict() == again.to_dict()
    others = [explain_text(trigger_model, TEXTS[0], ["anger"], samples=200, seed=s) for s in (1, 2, 3)]
    assert all(o.label("anger").contributions != first.label("anger").contributions for o in others)
    assert all(o.top_word("anger") == "furious" for o in others)


def test_words_are_spans_mapped_to_tokens(trigger_model):
    text = "I'm   unbelievably furious!! ok"
    assert [text[s:e] for s, e in word_spans(text)] == ["I'm", "unbelievably", "furious", "!", "!", "ok"]
    explanation = explain_text(trigger_model, text, ["anger"], method="ig")
    words = {w.text: w for w in explanation.words}
    assert all(text[w.start:w.end] == w.text for w in explanation.words)
    assert words["unbelievably"].n_tokens > 1 and words["furious"].n_tokens == 1 and words["I'm"].n_tokens == 3
    long_text = " ".join(["the city was quiet"] * 20) + " furious"  # past max_length 48: truncated
    truncated = explain_text(trigger_model, long_text, ["anger"], method="lime", samples=50)
    assert truncated.truncated and truncated.words[-1].n_tokens == 0
    assert truncated.label("anger").contributions[-1] == 0.0


def test_weighted_ridge_recovers_a_linear_function():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(400, 5)).astype(float)
    y = (x @ np.array([0.5, -0.2, 0.0, 1.0, 0.1]) + 0.3)[:, None]
    coef, intercept, r2 = weighted_ridge(x, y, rng.uniform(0.1, 1.0, 400), alpha=1e-6)
    np.testing.assert_allclose(coef[:, 0], [0.5, -0.2, 0.0, 1.0, 0.1], atol=1e-5)
    assert intercept[0] == pytest.approx(0.3, abs=1e-5) and r2[0] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------- CLI


class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text += data


def test_cli_json_and_html(cli, trigger_model_dir, tmp_path):
    texts = [TEXTS[0], "delighted <b>fans</b> & a furious coach"]
    result = cli(["explain", "--model", trigger_model_dir, "--samples", "200", "--json", *texts])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["method"] == "lime" and [e["text"] for e in payload["explanations"]] == texts
    for explanation in payload["explanations"]:
        anger = next(item for item in explanation["labels"] if item["label"] == "anger")
        words = [w["word"] for w in explanation["words"]]
        assert words[int(np.argmax(anger["contributions"]))] == "furious"

    page_path = tmp_path / "explain.html"
    result = cli(["explain", "--model", trigger_model_dir, "--method", "integrated-gradients", "--label", "anger",
                  "--format", "html", "--out", page_path, *texts])
    assert result.exit_code == 0, result.stderr
    page = page_path.read_text(encoding="utf-8")
    parser = _PageParser()
    parser.feed(page)
    assert parser.tags.count("html") == 1 and parser.tags.count("style") == 1 and "script" not in parser.tags
    assert "<b>fans" not in page  # the user's text is escaped
    assert ">&lt;</span>" in page and ">&amp;</span>" in page and "<link" not in page
    for text in texts:  # each text's words and the characters between them, in order
        assert text in parser.text


def test_cli_terminal_output_ranks_the_trigger(cli, trigger_model_dir):
    result = cli(["explain", "-m", trigger_model_dir, "--samples", "200", TEXTS[1]])
    assert result.exit_code == 0, result.stderr
    assert "anger" in result.stdout and TEXTS[1] in result.stdout
    assert "raises: furious +" in result.stdout


def test_cli_rows_from_a_data_file(cli, trigger_model_dir, tmp_path):
    data = tmp_path / "posts.csv"
    data.write_text("id,text\n1,we walked home late\n2,she felt furious today\n", encoding="utf-8")
    result = cli(["explain", "-m", trigger_model_dir, "--data", data, "--id", "2", "--label", "anger", "--json"])
    assert result.exit_code == 0, result.stderr
    (explanation,) = json.loads(result.stdout)["explanations"]
    assert explanation["id"] == "2" and explanation["text"] == "she felt furious today"

    parquet = tmp_path / "posts.parquet"
    pl.DataFrame({"post": [10, 11], "body": ["calm day", "a furious reply"]}).write_parquet(parquet)
    result = cli(["explain", "-m", trigger_model_dir, "--data", parquet, "--id", "11", "--id", "10", "--id-col", "post",
                  "--text-col", "body", "--label", "anger", "--method", "ig", "--json"])
    assert result.exit_code == 0, result.stderr
    explanations = json.loads(result.stdout)["explanations"]
    assert [(e["id"], e["text"]) for e in explanations] == [("11", "a furious reply"), ("10", "calm day")]

    assert "no row with id = '9'" in one_error_line(
        cli(["explain", "-m", trigger_model_dir, "--data", data, "--id", "9"]))
    assert "missing.csv: file not found" in one_error_line(
        cli(["explain", "-m", trigger_model_dir, "--data", tmp_path / "missing.csv", "--id", "1"]))
    assert "no column 'body'" in one_error_line(
        cli(["explain", "-m", trigger_model_dir, "--data", data, "--id", "1", "--text-col", "body"]))


def test_cli_error_lines(cli, trigger_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a ./emotions.duckdb in the caller's directory would switch explain to corpus mode
    assert "unknown label 'rage'" in one_error_line(cli(["explain", "-m", trigger_model_dir, "-l", "rage", "x"]))
    assert "not a directory, a registry name" in one_error_line(cli(["explain", "-m", tmp_path / "nope", "x"]))
    assert "unknown method" in one_error_line(cli(["explain", "-m", trigger_model_dir, "--method", "shap", "x"]))
    assert "give texts" in one_error_line(cli(["explain", "-m", trigger_model_dir]))
    assert "--samples must be at least 2" in one_error_line(cli(["explain", "-m", trigger_model_dir, "--samples", "1",
                                                                 "x"]))


# --------------------------------------------------------------------------------------- corpus level


def build_store(path: Path, model, model_dir: Path, *, keep_text: bool = True) -> None:
    """A store following the tag contract (scores + runs), with scores computed by the trigger model."""
    import duckdb

    words = _filler_words(model.tokenizer)
    rows = []
    for language, seed in (("eng", 1), ("deu", 2)):
        texts, _ = synthetic_texts(words, 60, random.Random(seed))
        scores = label_probabilities(model, [model.tokenizer(t)["input_ids"] for t in texts])
        for n, (text, score) in enumerate(zip(texts, scores)):
            labels = [label for label, value in zip(LABELS, score) if value >= 0.5]
            rows.append((f"{language}.csv:{n}", language, text, *map(float, score), labels, 12, False, "run-1"))
    label_columns = ", ".join(f'"{label}" FLOAT' for label in LABELS)
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE scores (id VARCHAR, language VARCHAR, text VARCHAR, {label_columns}, "
                    "labels VARCHAR[], n_tokens INTEGER, truncated BOOLEAN, run_id VARCHAR)")
        con.executemany(f"INSERT INTO scores VALUES ({', '.join(['?'] * (len(LABELS) + 7))})", rows)
        con.execute("CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, table_name VARCHAR, model VARCHAR, repo VARCHAR, "
                    "commit VARCHAR, labels VARCHAR[], thresholds DOUBLE[], task VARCHAR, inputs VARCHAR[], "
                    "text_col VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, rows_written BIGINT, "
                    "rows_skipped BIGINT, rows_truncated BIGINT, status VARCHAR)")
        con.execute("INSERT INTO runs VALUES ('run-1', 'scores', ?, NULL, 'dir-fingerprint', ?, ?, 'multi_label', "
                    "['eng.csv', 'deu.csv'], 'text', now(), now(), ?, 0, 0, 'done')",
                    [str(model_dir), list(LABELS), [0.5] * len(LABELS), len(rows)])
        if not keep_text:
            con.execute("ALTER TABLE scores DROP COLUMN text")


@pytest.fixture(scope="module")
def store(tmp_path_factory, trigger_model, trigger_model_dir) -> Path:
    path = tmp_path_factory.mktemp("store") / "emotions.duckdb"
    build_store(path, trigger_model, trigger_model_dir)
    return path


def test_corpus_explain_finds_the_trigger_per_group(cli, store):
    # no --model: the model is the one the store's runs table says scored anger
    result = cli(["explain", "--db", store, "--label", "anger", "--by", "language", "-k", "20", "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["method"] == "integrated-gradients" and payload["by"] == "language"
    groups = {g["group"]: g for g in payload["groups"]}
    assert set(groups) == {"eng", "deu"}
    for group in groups.values():
        assert group["n_texts"] == 20 and group["mean_score"] > 0.8
        top = group["words"][0]
        assert top["word"] == "furious" and top["texts"] == 20 and top["occurrences"] >= 20
        assert all(w["occurrences"] >= 3 for w in group["words"])
        assert top["total_contribution"] == pytest.approx(top["mean_contribution"] * top["occurrences"])
    by_total = cli(["explain", "--db", store, "--label", "anger", "-k", "20", "--rank", "total", "--min-count", "1",
                    "--json"])
    words = json.loads(by_total.stdout)["groups"][0]["words"]
    assert words[0]["word"] == "furious" and len({w["word"] for w in words}) == len(words)
    totals = [w["total_contribution"] for w in words]
    assert totals == sorted(totals, reverse=True)


def test_corpus_explain_with_lime_and_terminal_output(cli, store, trigger_model_dir):
    result = cli(["explain", "--db", store, "-m", trigger_model_dir, "--label", "anger", "-k", "10",
                  "--method", "lime", "--run", "run-1"])
    assert result.exit_code == 0, result.stderr
    assert "What drives anger" in result.stdout
    first_row = next(line for line in result.stdout.splitlines() if "+0." in line)
    assert "furious" in first_row


def test_corpus_explain_errors(cli, store, trigger_model, trigger_model_dir, tmp_path):
    no_text = tmp_path / "no_text.duckdb"
    build_store(no_text, trigger_model, trigger_model_dir, keep_text=False)
    result = cli(["explain", "--db", no_text, "--label", "anger"])
    assert "has no column 'text'" in one_error_line(result) and "--keep-text" in result.stderr
    assert "has no column 'rage'" in one_error_line(cli(["explain", "--db", store, "--label", "rage"]))
    assert "no column 'country'" in one_error_line(cli(["explain", "--db", store, "-l", "anger", "--by", "country"]))
    assert "no rows of run 'run-9'" in one_error_line(cli(["explain", "--db", store, "-l", "anger", "--run", "run-9"]))
    assert "database not found" in one_error_line(cli(["explain", "--db", tmp_path / "x.duckdb", "-l", "anger"]))
    assert "exactly one --label" in one_error_line(cli(["explain", "--db", store]))
    assert "unknown --rank 'best'" in one_error_line(cli(["explain", "--db", store, "-l", "anger", "--rank", "best"]))


def test_corpus_explain_over_a_store_written_by_tag(cli, trigger_model, trigger_model_dir, tmp_path):
    words = _filler_words(trigger_model.tokenizer)
    lines = ["id,language,text"]
    for language, seed in (("eng", 3), ("deu", 4)):
        texts, _ = synthetic_texts(words, 40, random.Random(seed))
        lines += [f"{language}{n},{language},{text}" for n, text in enumerate(texts)]
    posts = tmp_path / "posts.csv"
    posts.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path / "emotions.duckdb"
    tagged = cli(["tag", posts, "--model", trigger_model_dir, "--db", db, "--keep-text", "--device", "cpu", "--quiet"])
    assert tagged.exit_code == 0, tagged.stderr
    result = cli(["explain", "--db", db, "--label", "anger", "--by", "language", "-k", "10", "--json"])
    assert result.exit_code == 0, result.stderr
    groups = json.loads(result.stdout)["groups"]
    assert sorted(g["group"] for g in groups) == ["deu", "eng"]
    assert all(g["words"][0]["word"] == "furious" for g in groups)


def test_explain_help_imports_no_torch():
    code = "import sys; from emocli.cli.commands import explain; import emocli.cli.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
