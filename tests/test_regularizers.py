"""EMA of weights, layer-wise LR decay and R-Drop (emocli.training.regularizers) on the tiny BERT built from a
config (conftest.tiny_model_dir), real BRIGHTER rows, the real training loop and CLI."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from emocli.errors import InputError
from emocli.inference.evaluate import EvalConfig, evaluate
from emocli.model.heads import ArchitectureConfig, build_for
from emocli.training.config import LossConfig, RegularizationConfig
from emocli.training.finetune import TrainConfig, _parameter_groups, finetune
from emocli.training.losses import MultiLabelLoss
from emocli.training.regularizers import RDropLoss, WeightEMA, doubled, layer_scales, symmetric_bernoulli_kl

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LABELS = ("anger", "fear", "joy", "sadness", "surprise")


@pytest.fixture(scope="module")
def eng200(tmp_path_factory, brighter) -> str:
    path = tmp_path_factory.mktemp("eng200") / "eng.csv"
    pl.read_csv(brighter / "train" / "eng.csv").head(200).write_csv(path)
    return str(path)


def tiny(tiny_model_dir, head="linear"):
    return build_for(ArchitectureConfig(head=head), tiny_model_dir, LABELS)


def a_batch(tokenizer, texts=("I am so angry at this", "what a lovely surprise", "scared of the dark night")):
    return dict(tokenizer(list(texts), padding=True, return_tensors="pt"))


def test_ema_after_k_optimizer_steps_is_the_bias_corrected_closed_form_blend(tiny_model_dir):
    tokenizer, module = tiny(tiny_model_dir)
    module.train()
    decay, steps = 0.7, 4
    ema = WeightEMA(module, decay)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    batch = a_batch(tokenizer)
    snapshots = []
    for _ in range(steps):
        module(**batch).logits.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update()
        snapshots.append({n: p.detach().clone() for n, p in module.named_parameters()})
    averaged = ema.averaged()
    norm = 1 - decay ** steps
    for name in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.output.dense.weight",
                 "classifier.weight", "classifier.bias"):
        expected = sum((1 - decay) * decay ** (steps - i) * snapshots[i - 1][name] for i in range(1, steps + 1)) / norm
        torch.testing.assert_close(averaged[name], expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(averaged[name], snapshots[-1][name])  # a blend, not the last weights
    live = {n: p.detach().clone() for n, p in module.named_parameters()}
    with ema.applied():
        torch.testing.assert_close(dict(module.named_parameters())["classifier.weight"].detach(),
                                   averaged["classifier.weight"])
    assert all(torch.equal(p, live[n]) for n, p in module.named_parameters())  # training resumes on live weights


@pytest.mark.parametrize("head", ["linear", "label-attention"])
def test_llrd_groups_give_each_layer_lr_times_factor_to_its_depth(tiny_model_dir, head):
    _, module = tiny(tiny_model_dir, head)
    config = TrainConfig(train=("x.csv",), learning_rate=1e-4, head_learning_rate=1e-3,
                         regularization=RegularizationConfig(llrd=0.5))
    lr_of = {id(p): g["lr"] for g in _parameter_groups(module, config) for p in g["params"]}
    prefix = module.base_model_prefix
    named = dict(module.named_parameters())
    assert sum(1 for _ in lr_of) == len(named)
    for name, param in named.items():
        if not name.startswith(prefix + "."):
            expected = 1e-3  # the head keeps its own rate
        elif ".embeddings." in name:
            expected = 1e-4 * 0.5 ** 2  # two layers above it
        elif ".encoder.layer.1." in name:
            expected = 1e-4  # the top layer
        elif ".encoder.layer.0." in name:
            expected = 1e-4 * 0.5
        else:
            expected = 1e-4  # the pooler, above the top layer
        assert lr_of[id(param)] == pytest.approx(expected, rel=1e-12), name
    assert {round(v, 12) for v in lr_of.values()} == {1e-3, 1e-4, 5e-5, 2.5e-5}


def test_llrd_refuses_a_model_it_cannot_split_into_layers(tiny_model_dir):
    _, small = build_for(ArchitectureConfig(arch="small"), tiny_model_dir, LABELS)
    with pytest.raises(InputError, match="--llrd needs a BERT-family encoder"):
        layer_scales(small, 0.8)


def bernoulli_kl(p, q):
    return p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))


def test_rdrop_loss_is_the_mean_task_loss_plus_alpha_times_the_symmetric_kl():
    torch.manual_seed(0)
    logits_a, logits_b = torch.randn(6, 5) * 2, torch.randn(6, 5) * 2
    targets = (torch.rand(6, 5) > 0.6).float()
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[:3, 4] = False  # a label three rows do not annotate: no KL there either
    task = MultiLabelLoss(LossConfig(), np.array([2, 2, 2, 2, 1]), np.array([6, 6, 6, 6, 3]))
    alpha = 0.7
    got = RDropLoss(task, alpha)(logits_a, logits_b, targets, mask)
    p, q = torch.sigmoid(logits_a), torch.sigmoid(logits_b)
    cells = 0.5 * (bernoulli_kl(p, q) + bernoulli_kl(q, p))
    kl = cells[mask].mean()
    expected = 0.5 * (task(logits_a, targets, mask).total + task(logits_b, targets, mask).total) + alpha * kl
    assert float(kl) > 0.05
    assert float(got.total) == pytest.approx(float(expected), rel=1e-5)
    assert float(symmetric_bernoulli_kl(logits_a, logits_b, mask)) == pytest.approx(float(kl), rel=1e-5)


def test_rdrop_kl_is_zero_without_dropout_and_positive_with_it(tiny_model_dir):
    tokenizer, module = tiny(tiny_model_dir)
    batch = a_batch(tokenizer)
    mask = torch.ones(3, len(LABELS), dtype=torch.bool)
    targets = torch.zeros(3, len(LABELS))
    task = MultiLabelLoss(LossConfig(), np.ones(5), np.full(5, 3))
    with torch.no_grad():
        module.eval()
        a, b = module(**doubled(batch)).logits.chunk(2)
        assert float(symmetric_bernoulli_kl(a, b, mask)) == 0.0
        assert float(RDropLoss(task, 1.0)(a, b, targets, mask).total) == pytest.approx(
            float(task(a, targets, mask).total), rel=1e-6)
        module.train()
        a, b = module(**doubled(batch)).logits.chunk(2)
        assert float(symmetric_bernoulli_kl(a, b, mask)) > 0.0  # two dropout masks


def test_ema_training_saves_the_weights_it_evaluated(tiny_model_dir, brighter, eng200, tmp_path):
    def run(out, regularization):
        return finetune(TrainConfig(train=(eng200,), dev=(str(brighter / "dev" / "eng.csv"),), out=out,
                                    base=str(tiny_model_dir), epochs=2, max_length=32, progress=False, seed=3,
                                    score_fraction=0.0, regularization=regularization))

    with_ema = run(tmp_path / "ema", RegularizationConfig(ema_decay=0.8, llrd=0.8, rdrop=0.5))
    plain = run(tmp_path / "plain", RegularizationConfig())
    report = evaluate(EvalConfig(model=str(tmp_path / "ema"), data=(str(brighter / "dev" / "eng.csv"),)))
    assert report["macro_f1"] == pytest.approx(with_ema.dev_metrics["macro_f1"], abs=1e-6)
    meta = json.loads((tmp_path / "ema" / "emocli.json").read_text())
    assert meta["regularization"] == {"ema_decay": 0.8, "llrd": 0.8, "rdrop": 0.5}
    from safetensors.torch import load_file

    ours, theirs = load_file(tmp_path / "ema" / "model.safetensors"), load_file(tmp_path / "plain" / "model.safetensors")
    assert not torch.allclose(ours["classifier.weight"], theirs["classifier.weight"])
    assert json.loads((tmp_path / "plain" / "emocli.json").read_text())["regularization"] == {
        "ema_decay": None, "llrd": None, "rdrop": 0.0}


def test_cli_records_the_flags_in_emocli_json(cli, tiny_model_dir, eng200, tmp_path):
    out = tmp_path / "m"
    result = cli(["finetune", "--train", eng200, "--base", tiny_model_dir, "--out", out, "--max-steps", "3",
                  "--thresholds", "fixed", "--ema-decay", "0.9", "--llrd", "0.85", "--rdrop", "0.3", "--quiet"])
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "emocli.json").read_text())
    assert meta["regularization"] == {"ema_decay": 0.9, "llrd": 0.85, "rdrop": 0.3}
    assert meta["training"]["regularization"] == meta["regularization"]


@pytest.mark.parametrize("flag, value, message", [("--ema-decay", "1.5", "--ema-decay 1.5 must lie strictly between"),
                                                  ("--ema-decay", "0", "--ema-decay 0.0 must lie strictly between"),
                                                  ("--llrd", "0", "--llrd 0.0 must lie in (0, 1]"),
                                                  ("--rdrop", "-1", "--rdrop -1.0 must be >= 0")])
def test_cli_refuses_a_bad_value_in_one_line(cli, tiny_model_dir, eng200, tmp_path, flag, value, message):
    result = cli(["finetune", "--train", eng200, "--base", tiny_model_dir, "--out", tmp_path / "m", flag, value,
                  "--quiet"])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_cli_refuses_llrd_on_the_small_model(cli, tiny_model_dir, eng200, tmp_path):
    result = cli(["finetune", "--train", eng200, "--base", tiny_model_dir, "--out", tmp_path / "m", "--arch", "small",
                  "--llrd", "0.8", "--max-steps", "1", "--quiet"])
    assert result.exit_code == 2 and "--llrd needs a BERT-family encoder" in result.stderr


def test_folds_members_train_through_the_same_regularized_loop(tiny_model_dir, brighter, eng200, tmp_path):
    from emocli.training.config import EnsembleConfig

    result = finetune(TrainConfig(train=(eng200,), dev=(str(brighter / "dev" / "eng.csv"),), out=tmp_path / "m",
                                  base=str(tiny_model_dir), epochs=1, max_length=32, progress=False,
                                  ensemble=EnsembleConfig(folds=2),
                                  regularization=RegularizationConfig(ema_decay=0.9, llrd=0.8, rdrop=0.5)))
    meta = json.loads((tmp_path / "m" / "emocli.json").read_text())
    assert meta["architecture"] == "ensemble" and meta["regularization"]["ema_decay"] == 0.9
    assert len(result.extra["ensemble"]["member_seeds"]) == 2
    for member in ("m0", "m1"):
        member_meta = json.loads((tmp_path / "m" / "members" / member / "emocli.json").read_text())
        assert member_meta["regularization"] == {"ema_decay": 0.9, "llrd": 0.8, "rdrop": 0.5}


def test_the_benchmark_pairs_each_recipe_with_the_same_seeds_default():
    from benchmarks.quality import paired

    def row(recipe, seed, macro, anger, thresholds="per-class (dev)"):
        return {"recipe": recipe, "seed": seed, "thresholds": thresholds,
                "pooled": {"macro_f1": macro, "f1": {"anger": anger}}}

    rows = [row("asymmetric", 1, 0.60, 0.30), row("asymmetric", 2, 0.62, 0.40), row("asymmetric+llrd", 2, 0.63, 0.35),
            row("asymmetric+llrd", 1, 0.65, 0.36), row("asymmetric+llrd", 1, 0.10, 0.10, thresholds="fixed-0.5"),
            row("asymmetric+ema", 3, 0.70, 0.50)]  # no default of seed 3 to pair with
    table = {t["recipe"]: t for t in paired(rows, "asymmetric")}
    assert table["asymmetric+llrd"]["seeds"] == [1, 2]
    assert table["asymmetric+llrd"]["macro"] == pytest.approx([0.05, 0.01])
    assert table["asymmetric+llrd"]["anger"] == pytest.approx([0.06, -0.05])
    assert "asymmetric+ema" not in table


def test_the_benchmark_pairs_dev_scores_where_a_run_has_no_pooled_ones():
    from benchmarks.quality import paired, paired_lines

    def row(recipe, seed, macro, anger):  # the multilingual block: scored on the dev files only
        return {"recipe": recipe, "seed": seed, "thresholds": "per-class (dev)", "macro_f1": macro,
                "f1": {"anger": anger}}

    rows = [row("asymmetric", 1, 0.53, 0.58), row("asymmetric", 2, 0.54, 0.59), row("folds5+distill", 1, 0.56, 0.60),
            row("folds5+distill", 2, 0.57, 0.61)]
    table = {t["recipe"]: t for t in paired(rows, "asymmetric")}
    assert table["folds5+distill"]["macro"] == pytest.approx([0.03, 0.03])
    assert table["folds5+distill"]["anger"] == pytest.approx([0.02, 0.02])
    lines = paired_lines({"paired_baseline": "asymmetric"}, rows)
    assert "dev macro-F1 gap per seed" in lines[2] and "| folds5+distill | 1, 2 | +0.030 +0.030 | +0.030 ± 0.000" in lines[4]
