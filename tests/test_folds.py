"""The honest headline (emocli.training.holdout), cross-fitted ensembles (emocli.training.folds,
emocli.model.ensemble) and their distilled student: the tiny BERT built from a config, real BRIGHTER rows,
real model directories, real DuckDB files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from emocli.errors import InputError
from emocli.inference.evaluate import EvalConfig, evaluate
from emocli.model.io import load_model
from emocli.training.config import EnsembleConfig
from emocli.training.finetune import TrainConfig, finetune
from emocli.training.folds import OPTIMISTIC_OOF
from emocli.training.holdout import OPTIMISTIC_DEV, held_out_index

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAIN_ROWS = 400


@pytest.fixture(scope="module")
def eng400(tmp_path_factory, brighter) -> str:
    path = tmp_path_factory.mktemp("eng400") / "eng.csv"  # the file name says the language: eng
    pl.read_csv(brighter / "train" / "eng.csv").head(TRAIN_ROWS).write_csv(path)
    return str(path)


def config(tiny_model_dir, brighter, train, out, **overrides) -> TrainConfig:
    return TrainConfig(**{"train": (train,), "dev": (str(brighter / "dev" / "eng.csv"),), "out": out,
                          "base": str(tiny_model_dir), "epochs": 2, "max_length": 32, "progress": False,
                          **overrides})


def held_out_file(frames: list[pl.DataFrame], seed: int, path) -> str:
    """The rows plan_rows holds out of these frames (in order, all one language), written as a CSV."""
    pool = pl.concat(frames, how="diagonal_relaxed")
    held = held_out_index(["eng"] * pool.height, 0.1, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pool[held.tolist()].write_csv(path)
    return str(path)


def scores(model_dir, texts):
    from emocli.inference.engine import score_texts, scorer_for

    return score_texts(scorer_for(load_model(model_dir)), texts)


def test_headline_is_the_saved_model_on_rows_that_chose_nothing(tiny_model_dir, brighter, eng400, tmp_path):
    result = finetune(config(tiny_model_dir, brighter, eng400, tmp_path / "m"))
    meta = json.loads((tmp_path / "m" / "emocli.json").read_text())
    assert meta["data"]["score_rows"] == 40 and meta["data"]["fit_rows"] == result.train_rows == TRAIN_ROWS - 40
    assert result.headline["scored_on"] == "40 rows held out of train (10% per language, seed 42)"
    held = held_out_file([pl.read_csv(eng400)], 42, tmp_path / "held" / "eng.csv")
    report = evaluate(EvalConfig(model=str(tmp_path / "m"), data=(held,)))  # the saved model, its thresholds
    assert report["rows"] == 40
    assert result.headline["macro_f1"] == pytest.approx(report["macro_f1"], abs=1e-6)
    assert result.headline["per_class"]["anger"]["support"] == report["per_class"]["anger"]["support"]
    assert meta["headline"]["macro_f1"] == result.headline["macro_f1"]
    # the dev-tuned figure stays, labelled: dev chose the epoch and the thresholds
    on_dev = evaluate(EvalConfig(model=str(tmp_path / "m"), data=(str(brighter / "dev" / "eng.csv"),)))
    assert meta["dev_metrics"]["macro_f1"] == pytest.approx(on_dev["macro_f1"], abs=1e-6)
    assert meta["dev_metrics_note"] == OPTIMISTIC_DEV and result.threshold_source == "dev"


def test_dev_held_out_scores_on_dev_and_tunes_nothing_there(tiny_model_dir, brighter, eng400, tmp_path):
    from emocli.training.thresholds import ThresholdConfig

    dev = str(brighter / "dev" / "eng.csv")
    result = finetune(config(tiny_model_dir, brighter, eng400, tmp_path / "m", dev_held_out=True,
                             thresholds=ThresholdConfig(mode="fixed", fixed=0.45)))
    assert result.train_rows == TRAIN_ROWS and result.dev_metrics is None  # dev stopped nothing, tuned nothing
    assert result.headline["scored_on"].startswith(f"the {pl.read_csv(dev).height} dev rows, declared held out")
    report = evaluate(EvalConfig(model=str(tmp_path / "m"), data=(dev,)))
    assert result.headline["macro_f1"] == pytest.approx(report["macro_f1"], abs=1e-6)
    with pytest.raises(InputError, match="--dev-held-out needs dev data"):
        TrainConfig(train=(eng400,), dev_held_out=True)


def test_cli_prints_the_held_out_figure_first_and_warns_without_one(cli, tiny_model_dir, brighter, eng400, tmp_path):
    dev = brighter / "dev" / "eng.csv"
    common = ["finetune", "--base", tiny_model_dir, "--train", eng400, "--dev", dev, "--epochs", "1",
              "--max-length", "32", "--quiet"]
    shown = cli([*common, "--out", tmp_path / "a"])
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    held = next(i for i, line in enumerate(lines) if line.startswith("held-out macro-F1"))
    tuned = next(i for i, line in enumerate(lines) if line.startswith("dev-tuned macro-F1"))
    assert held < tuned and "40 rows held out of train" in shown.stdout and "optimistic" in lines[tuned]
    assert "held-out F1" in shown.stdout and "dev-tuned F1" in shown.stdout  # both columns of the table
    none = cli([*common, "--out", tmp_path / "b", "--score-fraction", "0", "--json"])
    assert none.exit_code == 0, none.stderr
    summary = json.loads(none.stdout)
    assert summary["headline"]["scored_on"] is None and "no held-out figure" in summary["headline"]["warning"]
    assert summary["train_rows"] == TRAIN_ROWS
    plain = cli([*common, "--out", tmp_path / "c", "--score-fraction", "0"])
    assert "no held-out figure" in plain.stderr and "held-out macro-F1" not in plain.stdout


def test_recipe_and_folds_flags_build_the_ensemble_config():
    from typer.main import get_command

    from emocli.cli.app import app
    from emocli.cli.commands.train import train_config

    command = get_command(app).commands["finetune"]

    def built(*flags):
        return train_config(command.make_context("finetune", ["--train", "t.csv", *flags]).params)

    assert built().ensemble == EnsembleConfig()
    assert built("--recipe", "folds5-distill").ensemble == EnsembleConfig(folds=5, distill=True)
    assert built("--recipe", "folds5-distill", "--folds", "3").ensemble == EnsembleConfig(folds=3, distill=True)
    with_texts = built("--folds", "3", "--distill", "--unlabeled", "u.csv")
    assert with_texts.ensemble.unlabeled == ("u.csv",) and not with_texts.distill.enabled
    with pytest.raises(InputError, match="--distill distils a cross-fitted ensemble"):
        built("--distill")


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, tiny_model_dir, brighter, eng400):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ensemble") / "model"
    result = finetune(config(tiny_model_dir, brighter, eng400, out, ensemble=EnsembleConfig(folds=2)))
    return out, result


def test_folds_build_an_ensemble_of_cross_fitted_members(ensemble_dir, brighter, eng400, tmp_path):
    out, result = ensemble_dir
    meta = json.loads((out / "emocli.json").read_text())
    dev = pl.read_csv(brighter / "dev" / "eng.csv")
    pool = TRAIN_ROWS + dev.height  # train + dev: dev is not held out, so it joins the folds
    assert meta["architecture"] == "ensemble" and meta["threshold_source"] == "out-of-fold"
    record = meta["ensemble"]
    assert record["folds"] == 2 and record["fold_seed"] == 42 and record["member_seeds"] == [42, 43]
    assert sum(record["fold_rows"]) == meta["data"]["fit_rows"] == pool - meta["data"]["score_rows"]
    assert record["out_of_fold_metrics"]["note"] == OPTIMISTIC_OOF
    assert record["out_of_fold_metrics"]["rows"] == meta["data"]["fit_rows"]  # thresholds tuned on every fit row
    assert all(0.05 <= t <= 0.95 for t in meta["thresholds"]) and meta["dev_metrics"] is None
    for i in range(2):  # each member is a model of its own, stopped on its own fold
        member = json.loads((out / "members" / f"m{i}" / "emocli.json").read_text())
        assert member["ensemble_member"] == {"index": i, "seed": 42 + i, "train_rows": pool - meta["data"]["score_rows"]
                                             - record["fold_rows"][i], "fold_rows": record["fold_rows"][i]}
    texts = dev["text"].head(20).to_list()
    members = [scores(out / "members" / f"m{i}", texts) for i in range(2)]
    np.testing.assert_allclose(scores(out, texts), np.mean(members, axis=0), atol=1e-5)
    held = held_out_file([pl.read_csv(eng400), dev], 42, tmp_path / "held" / "eng.csv")
    report = evaluate(EvalConfig(model=str(out), data=(held,)))
    assert result.headline["macro_f1"] == pytest.approx(report["macro_f1"], abs=1e-5)
    assert "held out of train + dev" in result.headline["scored_on"]


def test_an_ensemble_loads_everywhere_a_model_loads(ensemble_dir, cli, brighter, tmp_path):
    import duckdb

    from emocli.explain.explainer import explain_text
    from emocli.hub.pull import resolve_model
    from emocli.training.finetune import register_finetuned

    out, _ = ensemble_dir
    register_finetuned("folded", out, load_model(out).info, "tiny")  # what finetune --register does
    corpus = tmp_path / "corpus.csv"
    pl.read_csv(brighter / "dev" / "eng.csv").head(30).select("id", "text").write_csv(corpus)
    db = tmp_path / "t.duckdb"
    tagged = cli(["tag", corpus, "--model", "folded", "--db", db, "--json"])  # by its registry name
    assert tagged.exit_code == 0, tagged.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        stored = con.execute("SELECT anger, joy FROM scores ORDER BY id").fetchall()
        ids = [r[0] for r in con.execute("SELECT id FROM scores ORDER BY id").fetchall()]
    texts = dict(zip(*pl.read_csv(corpus).select("id", "text").to_dict(as_series=False).values()))
    expected = scores(out, [texts[i] for i in ids])
    np.testing.assert_allclose(np.array(stored), expected[:, [0, 2]], atol=1e-5)
    assert resolve_model("folded").path == out.resolve()
    model = load_model(out)
    explanation = explain_text(model, "I am so angry about the bus today", ["anger"], method="lime", samples=40)
    assert explanation.labels[0].label == "anger"
    with pytest.raises(InputError, match="use --method lime"):
        explain_text(model, "angry", ["anger"], method="integrated-gradients")
    evaluated = cli(["evaluate", "--model", out, "--data", brighter / "dev" / "eng.csv", "--json"])
    assert evaluated.exit_code == 0 and 0.0 <= json.loads(evaluated.stdout)["macro_f1"] <= 1.0


def test_an_ensemble_refuses_a_changed_member_and_can_be_stacked(ensemble_dir, eng400, tmp_path):
    from emocli.training.stack import StackConfig, build_stack

    out, _ = ensemble_dir
    stacked = build_stack(StackConfig(members=(str(out), str(out / "members" / "m0")), train=(eng400,),
                                      out=tmp_path / "stack", epochs=2, progress=False))
    assert load_model(stacked.out_dir).info.architecture == "stack"
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    weights = copy / "members" / "m1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(InputError, match=r"ensemble member 2 .* has changed since the ensemble was trained"):
        load_model(copy)


def test_distill_trains_one_student_on_the_ensembles_scores(tiny_model_dir, brighter, eng400, tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "student"
    result = finetune(config(tiny_model_dir, brighter, eng400, out, ensemble=EnsembleConfig(folds=2, distill=True)))
    meta = json.loads((out / "emocli.json").read_text())
    assert meta["architecture"] == "transformers" and (out / "model.safetensors").exists()
    AutoModelForSequenceClassification.from_pretrained(out)  # one plain model: `tag` runs at one model's speed
    teacher = json.loads((out / "ensemble" / "emocli.json").read_text())
    assert teacher["architecture"] == "ensemble" and teacher["headline"]["scored_on"] == meta["headline"]["scored_on"]
    source = meta["distilled_from"]
    assert source["ensemble"] == "ensemble" and source["folds"] == 2 and source["member_seeds"] == [42, 43]
    assert source["distill"]["teacher"] == str(out / "ensemble") and source["distill"]["on_train_texts"] is True
    assert source["student_tune_rows"] == source["fold_rows"][0]
    assert source["student_train_rows"] + source["student_tune_rows"] == meta["data"]["fit_rows"]
    assert result.threshold_source == "the student's held-out fold" and result.dev_metrics is None
    dev = pl.read_csv(brighter / "dev" / "eng.csv")
    held = held_out_file([pl.read_csv(eng400), dev], 42, tmp_path / "held" / "eng.csv")
    assert result.headline["macro_f1"] == pytest.approx(
        evaluate(EvalConfig(model=str(out), data=(held,)))["macro_f1"], abs=1e-5)
    texts = dev["text"].head(10).to_list()
    assert np.abs(scores(out, texts) - scores(out / "ensemble", texts)).max() > 1e-5  # a model of its own
