"""Real fine-tunes: the packaged MiniLM (session fixture) and the tiny BERT for flag combinations."""

import json

import numpy as np
import polars as pl
import pytest
import torch

from emocli.training.labelled import file_sha256
from emocli.inference.evaluate import EvalConfig, evaluate, score_labelled
from emocli.training.finetune import TrainConfig, finetune

ENG = ("anger", "fear", "joy", "sadness", "surprise")


def subset(src, dst, rows):
    dst.parent.mkdir(parents=True, exist_ok=True)
    pl.read_csv(src).head(rows).write_csv(dst)
    return str(dst)


def test_short_finetune_beats_a_constant_predictor(finetuned_model_dir, brighter):
    report = evaluate(EvalConfig(model=str(finetuned_model_dir), data=(str(brighter / "dev" / "eng.csv"),)))
    dev = pl.read_csv(brighter / "dev" / "eng.csv")
    # the best constant predictor says "yes" to every label: F1 = 2p / (1 + p)
    constant = np.mean([2 * dev[label].mean() / (1 + dev[label].mean()) for label in ENG])
    assert report["macro_f1"] > constant + 0.02
    assert report["roc_auc_macro"] > 0.65  # threshold-free: the ranking was learned
    meta = json.loads((finetuned_model_dir / "emocli.json").read_text())
    assert meta["dev_metrics"]["macro_f1"] == pytest.approx(report["macro_f1"], abs=1e-6)


def test_one_scoring_reports_under_any_threshold_like_evaluate(finetuned_model_dir, brighter):
    files = (str(brighter / "dev" / "eng.csv"), str(brighter / "dev" / "deu.csv"))
    scored = score_labelled(EvalConfig(model=str(finetuned_model_dir), data=files))
    for threshold in (None, 0.5, 0.2):
        expected = evaluate(EvalConfig(model=str(finetuned_model_dir), data=files, threshold=threshold))
        assert scored.report(threshold) == expected
    assert scored.report(0.2)["macro_f1"] != scored.report(0.5)["macro_f1"]
    assert set(scored.report()["by_language"]) == {"eng", "deu"}


def test_saved_dir_reloads_in_plain_transformers_with_same_scores(finetuned_model_dir, brighter):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from emocli.model.io import load_model
    from emocli.inference.engine import score_texts, scorer_for

    texts = pl.read_csv(brighter / "dev" / "eng.csv")["text"].head(12).to_list()
    tokenizer = AutoTokenizer.from_pretrained(finetuned_model_dir)
    plain = AutoModelForSequenceClassification.from_pretrained(finetuned_model_dir).eval()
    assert plain.config.problem_type == "multi_label_classification"
    assert [plain.config.id2label[i] for i in range(5)] == list(ENG)
    with torch.inference_mode():
        batch = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
        expected = torch.sigmoid(plain(**batch).logits).numpy()
    model = load_model(finetuned_model_dir)
    ours = score_texts(scorer_for(model, max_batch_rows=5), texts)
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_model_dir_holds_history_curves_and_metadata(finetuned_model_dir, brighter):
    history = [json.loads(line) for line in (finetuned_model_dir / "history.jsonl").read_text().splitlines()]
    assert history and set(history[0]["class_loss"]) == set(ENG) and set(history[0]["dev_f1"]) == set(ENG)
    assert history[-1]["step"] == 40
    assert (finetuned_model_dir / "training_curves.png").stat().st_size > 5000
    assert (finetuned_model_dir / "model.safetensors").exists()
    meta = json.loads((finetuned_model_dir / "emocli.json").read_text())
    assert meta["labels"] == list(ENG) and len(meta["thresholds"]) == 5
    assert all(0.05 <= t <= 0.95 for t in meta["thresholds"])
    assert meta["threshold_source"] == "dev" and meta["max_length"] == 64
    assert meta["loss"]["name"] == "asymmetric" and meta["sampler"] == "shuffle"  # the defaults
    assert meta["training"]["max_steps"] == 40
    train_file = str(brighter / "train" / "eng.csv")
    assert meta["data"]["train"][train_file] == file_sha256(brighter / "train" / "eng.csv")
    assert meta["base_model"]["name"] and "per_class" in meta["dev_metrics"]


def test_evaluate_cli(cli, finetuned_model_dir, brighter, tmp_path):
    dev_eng = brighter / "dev" / "eng.csv"
    result = cli(["evaluate", "--model", finetuned_model_dir, "--data", dev_eng, "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 116 or report["rows"] == pl.read_csv(dev_eng).height
    for key in ("micro_f1", "macro_f1", "roc_auc_macro", "jaccard_samples", "hamming_loss", "subset_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    # two languages: a per-language breakdown; afr does not annotate surprise
    afr = subset(brighter / "dev" / "afr.csv", tmp_path / "dev" / "afr.csv", 60)
    table = cli(["evaluate", "--model", finetuned_model_dir, "--data", dev_eng, "--data", afr, "--thresholds", "fixed"])
    assert table.exit_code == 0 and "per class" in table.stdout and "per language" in table.stdout
    assert table.stdout.count(" 0.50 ") == 5  # --thresholds fixed: 0.5 for every label, not the saved ones
    both = json.loads(cli(["evaluate", "--model", finetuned_model_dir, "--data", dev_eng, "--data", afr,
                           "--json"]).stdout)
    assert set(both["by_language"]) == {"eng", "afr"}
    assert "surprise" not in both["by_language"]["afr"]["per_class"]
    assert both["per_class"]["surprise"]["known"] == report["per_class"]["surprise"]["known"]


def test_mixed_label_sets_register_and_cv_thresholds(cli, tiny_model_dir, brighter, tmp_path, one_torch_thread):
    from emocli.hub.registry import load_registry

    eng = subset(brighter / "train" / "eng.csv", tmp_path / "train" / "eng.csv", 48)
    frame = pl.read_csv(brighter / "train" / "afr.csv")
    afr = str(tmp_path / "train" / "afr.csv")
    pl.concat([frame.filter(pl.col("disgust") == 1).head(6), frame.head(90)]).write_csv(afr)
    out = tmp_path / "mixed"
    result = cli(["finetune", "--base", tiny_model_dir, "--train", str(tmp_path / "train" / "*.csv"), "--out", out,
                  "--thresholds", "per-class",
                  "--epochs", "1", "--max-length", "32", "--quiet", "--register", "mixed-test", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert sorted(summary["labels"]) == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert summary["threshold_source"] == "cv"  # no dev: out-of-fold predictions over train
    assert len(summary["notes"]) == 1 and "2 languages" in summary["notes"][0]  # the recipe that paid there
    assert "--recipe folds5-distill" in summary["notes"][0]
    meta = json.loads((out / "emocli.json").read_text())
    assert set(meta["data"]["train"]) == {eng, afr} and meta["data"]["languages"] == ["afr", "eng"]
    registry = load_registry()
    assert registry.default == "mixed-test" and registry.get("mixed-test").path == str(out.resolve())


@pytest.mark.parametrize("loss, sampler", [("bce", "shuffle"), ("focal", "label-balanced"),
                                           ("asymmetric", "shuffle"), ("hybrid", "label-balanced")])
def test_each_loss_trains_on_tiny_model(tiny_model_dir, brighter, tmp_path, loss, sampler, one_torch_thread):
    from emocli.training.losses import LossConfig
    from emocli.training.thresholds import ThresholdConfig

    train = subset(brighter / "train" / "eng.csv", tmp_path / "eng.csv", 64)
    config = TrainConfig(train=(train,), dev=(str(brighter / "dev" / "eng.csv"),), out=tmp_path / "m",
                         base=str(tiny_model_dir), loss=LossConfig(name=loss), sampler=sampler, epochs=2,
                         max_length=32, progress=False, thresholds=ThresholdConfig(mode="fixed", fixed=0.4))
    result = finetune(config)
    assert result.thresholds == (0.4,) * 5 and result.threshold_source == "fixed"
    assert all(np.isfinite(r["train_loss"]) for r in result.history) and len(result.history) >= 1
    again = finetune(config)  # --seed makes it reproducible
    assert [r["train_loss"] for r in again.history] == [r["train_loss"] for r in result.history]


def test_finetune_guesses_train_file_and_default_out(cli, tiny_model_dir, brighter, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.chdir(tmp_path)
    subset(brighter / "train" / "eng.csv", tmp_path / "train.csv", 40)
    result = cli(["finetune", "--base", tiny_model_dir, "--max-steps", "2", "--thresholds", "fixed", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert "train.csv" in result.stderr  # says which file it found
    meta = json.loads((tmp_path / "emocli-model" / "emocli.json").read_text())
    assert meta["thresholds"] == [0.5] * 5 and "dev F1" not in result.stdout


@pytest.mark.parametrize("head", ["linear", "cnn-bilstm-attn", "label-attention"])
def test_head_learning_rate_applies_to_the_new_head_only(head, tiny_model_dir):
    from emocli.model.heads import ArchitectureConfig, build_for
    from emocli.training.finetune import TrainConfig, _parameter_groups

    _, module = build_for(ArchitectureConfig(head=head), tiny_model_dir, ("a", "b", "c"))
    groups = _parameter_groups(module, TrainConfig(train=("x.csv",), learning_rate=1e-4, head_learning_rate=1e-3))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    names = dict(module.named_parameters())
    encoder = {name for name in names if name.startswith(module.base_model_prefix + ".")}
    assert encoder and len(encoder) < len(names)
    assert all(lr_of[id(names[n])] == (1e-4 if n in encoder else 1e-3) for n in names)
    assert all(decay_of[id(names[n])] == (0.0 if "bias" in n.split(".")[-1] else 0.01) for n in names if "Norm" not in n)
    assert sum(len(g["params"]) for g in groups) == len(names)


def test_the_multilingual_recipe_note_only_where_that_recipe_paid():
    from emocli.training.config import EnsembleConfig, TrainConfig
    from emocli.training.finetune import recipe_notes

    default = TrainConfig(train=("x.csv",))
    assert recipe_notes(default, ["eng"]) == []  # English: the distilled student did not beat one model
    assert recipe_notes(default, []) == []
    assert recipe_notes(default, ["extra", "train"]) == []  # file names, not languages
    assert "4 languages" in recipe_notes(default, ["afr", "deu", "eng", "esp"])[0]
    folds = TrainConfig(train=("x.csv",), ensemble=EnsembleConfig(folds=5, distill=True))
    assert recipe_notes(folds, ["afr", "deu", "eng", "esp"]) == []  # already on it
