"""Custom architectures (emocli.model.heads): real modules on a tiny BERT / the packaged MiniLM, real files on disk."""

from __future__ import annotations

import json
import time

import pytest
import torch

from emocli.model import heads
from emocli.errors import InputError, ModelNotFoundError
from emocli.model.io import ModelInfo, load_model, save_model

LABELS = ("anger", "fear", "joy", "sadness", "surprise")
CHOICES = {"cnn-bilstm-attn": ("transformer", "cnn-bilstm-attn"),
           "label-attention": ("transformer", "label-attention"),
           "small": ("small", None)}
TEXTS = ["I am furious about this!", "ok", "The storm at night scared me, and then the sun came out again."]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(name, base):
    torch.manual_seed(0)
    arch, head = CHOICES[name]
    tokenizer, module = heads.build_model(arch, head, base, LABELS)
    return tokenizer, module.eval()


def logits_of(module, tokenizer, texts):
    with torch.no_grad():
        return module(**tokenizer(texts, padding=True, return_tensors="pt")).logits


@pytest.mark.parametrize("name", list(CHOICES))
def test_forward_shapes_and_padding_does_not_change_logits(name, tiny_model_dir):
    tokenizer, module = build(name, tiny_model_dir)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = module(**batch, output_hidden_states=True)
    assert out.logits.shape == (3, len(LABELS))
    assert out.pooled.shape[0] == 3 and out.pooled.ndim == 2
    assert out.hidden_states[-1].shape[:2] == batch["input_ids"].shape
    for i, text in enumerate(TEXTS):
        alone = logits_of(module, tokenizer, [text])[0]
        torch.testing.assert_close(alone, out.logits[i], atol=2e-5, rtol=1e-4)
    # extra padding beyond the longest text changes nothing either
    padded = tokenizer(TEXTS, padding="max_length", max_length=48, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(module(**padded).logits, out.logits, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(CHOICES))
def test_save_then_load_model_gives_identical_scores_without_pickle(name, tiny_model_dir, tmp_path):
    tokenizer, module = build(name, tiny_model_dir)
    expected = logits_of(module, tokenizer, TEXTS)
    info = ModelInfo(LABELS, (0.5, 0.4, 0.5, 0.6, 0.5), max_length=64)
    save_model(tmp_path, module, tokenizer, info)  # the generic save dispatches on the module

    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and "emocli.json" in files and "config.json" in files
    assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".py")) for f in files)
    meta = json.loads((tmp_path / "emocli.json").read_text())
    assert meta["architecture"] == name
    config = json.loads((tmp_path / "config.json").read_text())
    assert "model_type" not in config and config["emocli_architecture"] == name
    if name != "small":
        assert config["encoder"]["model_type"] == "bert"  # the encoder is rebuilt from here, offline

    loaded = load_model(tmp_path)
    assert isinstance(loaded.module, type(module))
    assert loaded.info.architecture == name and loaded.info.thresholds == info.thresholds
    assert heads.loader_for(loaded.info) == "emocli"
    assert not loaded.module.training
    torch.testing.assert_close(logits_of(loaded.module, loaded.tokenizer, TEXTS), expected)


def test_custom_model_does_not_load_in_plain_transformers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    tokenizer, module = build("label-attention", tiny_model_dir)
    heads.save_custom(tmp_path, module, tokenizer, ModelInfo(LABELS, (0.5,) * 5))
    with pytest.raises((ValueError, OSError, KeyError)):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert heads.loader_for(ModelInfo(LABELS, (0.5,) * 5)) == "transformers"


def test_load_custom_bf16(tiny_model_dir, tmp_path):
    tokenizer, module = build("cnn-bilstm-attn", tiny_model_dir)
    expected = torch.sigmoid(logits_of(module, tokenizer, TEXTS))
    heads.save_custom(tmp_path, module, tokenizer, ModelInfo(LABELS, (0.5,) * 5))
    loaded = load_model(tmp_path, dtype="bf16")
    assert next(loaded.module.parameters()).dtype == torch.bfloat16
    scores = torch.sigmoid(logits_of(loaded.module, loaded.tokenizer, TEXTS).float())
    assert (scores - expected).abs().max() < 0.02


def test_small_model_starts_from_the_base_embeddings(minilm_dir):
    from transformers import AutoModel

    tokenizer, module = heads.build_model("small", None, minilm_dir, LABELS)
    base = AutoModel.from_pretrained(minilm_dir).get_input_embeddings().weight.detach()
    small = module.embeddings.weight.detach()
    assert small.shape == (base.shape[0], 128)
    ids = tokenizer(["happy sad angry", "furious"], add_special_tokens=False)["input_ids"]
    happy, sad, angry, furious = ids[0] + ids[1]

    def cos(a, b):
        return float(torch.nn.functional.cosine_similarity(a[None], b[None]))

    # the projection keeps the pretrained geometry: angry is nearer furious than happy, in both spaces
    assert cos(base[angry], base[furious]) > cos(base[happy], base[furious])
    assert cos(small[angry], small[furious]) > cos(small[happy], small[furious])


def test_small_model_is_much_faster_than_minilm_on_cpu(minilm_dir):
    from transformers import AutoModelForSequenceClassification

    tokenizer, small = heads.build_model("small", None, minilm_dir, LABELS)
    minilm = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=len(LABELS))
    texts = [f"text number {i}: I can't believe what happened at the station this morning, so scary" for i in range(64)]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")

    def seconds(module):
        module.eval()
        with torch.inference_mode():
            module(**batch)  # warm-up
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                module(**batch)
                best = min(best, time.perf_counter() - start)
        return best

    speedup = seconds(minilm) / seconds(small)
    # the benchmark reports the real ratio; on a shared 2-core CPU the test only demands a wide margin
    assert speedup > 4, f"small model only {speedup:.1f}x faster than MiniLM"


def toy_data():
    """A word decides a label: 'furious' -> anger, 'ghost' -> fear, 'sunny' -> joy; every combination occurs."""
    fillers = ["today", "the bus", "my neighbour", "this film", "the weather report", "our team", "dinner"]
    triggers = ("furious", "ghost", "sunny")
    texts, targets = [], []
    for combo in range(8):
        words = [w for j, w in enumerate(triggers) if (combo >> j) & 1]
        for filler in fillers:
            texts.append(" ".join([filler, "was", *words, "."]))
            targets.append([float((combo >> j) & 1) for j in range(3)] + [0.0, 0.0])
    return texts, torch.tensor(targets)


@pytest.mark.parametrize("name,lr", [("small", 1e-2), ("cnn-bilstm-attn", 3e-3), ("label-attention", 3e-3)])
def test_a_few_training_steps_learn_a_trigger_word(name, lr, tiny_model_dir):
    texts, targets = toy_data()
    tokenizer, module = build(name, tiny_model_dir)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    # the encoder's 30522-row embedding table stays frozen here: Adam over it would cost most of the test's time
    trainable = [p for n, p in module.named_parameters() if "word_embeddings" not in n]
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    module.train()
    losses = []
    for _ in range(40):
        loss = module(**batch, labels=targets).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    module.eval()
    with torch.no_grad():
        scores = torch.sigmoid(module(**tokenizer(["the match was furious .", "the match was sunny ."],
                                                  padding=True, return_tensors="pt")).logits)
    assert scores[0, 0] > 0.5 > scores[1, 0]
    assert scores[1, 2] > 0.5 > scores[0, 2]


def test_build_model_rejects_unknown_choices(tiny_model_dir, tmp_path):
    with pytest.raises(InputError, match="--head"):
        heads.build_model("transformer", "cnn", tiny_model_dir, LABELS)
    with pytest.raises(InputError, match="--arch"):
        heads.build_model("rnn", None, tiny_model_dir, LABELS)
    with pytest.raises(InputError, match="small"):
        heads.build_model("small", "label-attention", tiny_model_dir, LABELS)
    tokenizer, module = build("small", tiny_model_dir)
    heads.save_custom(tmp_path, module, tokenizer, ModelInfo(LABELS, (0.5,) * 5))
    with pytest.raises(InputError, match="base encoder"):
        heads.build_model("transformer", "label-attention", tmp_path, LABELS)


def test_linear_head_is_the_plain_transformers_model(tiny_model_dir):
    tokenizer, module = heads.build_model("transformer", "linear", tiny_model_dir, LABELS)
    assert type(module).__name__ == "BertForSequenceClassification"
    assert not heads.is_custom_module(module)


def test_broken_custom_dirs_give_clear_errors(tiny_model_dir, tmp_path):
    tokenizer, module = build("small", tiny_model_dir)
    heads.save_custom(tmp_path, module, tokenizer, ModelInfo(LABELS, (0.5,) * 5))
    meta = json.loads((tmp_path / "emocli.json").read_text())
    (tmp_path / "emocli.json").write_text(json.dumps({**meta, "architecture": "gru-magic"}))
    with pytest.raises(InputError, match="unknown architecture 'gru-magic'"):
        load_model(tmp_path)
    (tmp_path / "emocli.json").write_text(json.dumps(meta))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_model(tmp_path)


# -- through `emocli finetune` (emocli.training.finetune) ---------------------------------------------------------------------

def toy_files(tmp_path):
    from test_stack import write_toy_csv

    return (write_toy_csv(tmp_path / "train.csv", 64), write_toy_csv(tmp_path / "dev.csv", 32, offset=64))


@pytest.mark.parametrize("flags,architecture", [(["--arch", "small"], "small"),
                                                (["--head", "label-attention", "--loss", "hybrid"], "label-attention"),
                                                (["--head", "cnn-bilstm-attn"], "cnn-bilstm-attn")])
def test_finetune_builds_saves_and_evaluates_custom_architectures(cli, tiny_model_dir, tmp_path, flags, architecture):
    train, dev = toy_files(tmp_path)
    out = tmp_path / "model"
    result = cli(["finetune", "--base", tiny_model_dir, "--train", train, "--dev", dev, "--out", out, *flags,
                  "--epochs", "2", "--batch-size", "16", "--quiet", "--json"])
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "emocli.json").read_text())
    assert meta["architecture"] == architecture and meta["labels"] == list(LABELS)
    assert meta["training"]["architecture"]["arch"] == ("small" if architecture == "small" else "transformer")
    model = load_model(out)
    assert heads.loader_for(model.info) == "emocli" and model.module.emocli_config.architecture == architecture
    evaluated = cli(["evaluate", "--model", out, "--data", dev, "--json"])
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["rows"] == 32


def test_distillation_pulls_the_student_towards_the_teacher(tiny_model_dir, tmp_path):
    """The teacher says 'anger' for every text; the labelled data says anger only with 'furious'."""
    from emocli.training.distill import DistillConfig, read_texts
    from emocli.training.losses import LossConfig
    from emocli.training.thresholds import ThresholdConfig
    from emocli.inference.engine import score_texts, scorer_for
    from emocli.training.finetune import TrainConfig, finetune

    train, dev = toy_files(tmp_path)
    teacher = load_model(tiny_model_dir)
    with torch.no_grad():
        teacher.module.classifier.bias.copy_(torch.tensor([4.0, -4.0, -4.0, -4.0, -4.0]))
    save_model(tmp_path / "teacher", teacher.module, teacher.tokenizer, teacher.info)
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("id,text\n" + "".join(f"u{i},{w} happened near the {p} today\n" for i, (w, p) in enumerate(
        [(w, p) for w in ("nothing", "a ghost", "something sunny", "a fight") for p in ("bus", "park", "school")])))
    texts = read_texts((str(unlabeled),), "text")

    def student(distill):
        config = TrainConfig(train=(str(train),), dev=(str(dev),), out=tmp_path / f"student-{bool(distill.teacher)}",
                             base=str(tiny_model_dir), epochs=6, batch_size=16, learning_rate=3e-3, progress=False,
                             patience=6, architecture=heads.ArchitectureConfig(arch="small"), distill=distill,
                             loss=LossConfig(name="weighted-bce"), sampler="label-balanced",  # the recipe it was tuned on
                             thresholds=ThresholdConfig(mode="per-class"))
        model = load_model(finetune(config).out_dir)
        return score_texts(scorer_for(model, max_length=64), texts)[:, 0]

    plain = student(DistillConfig())
    distilled = student(DistillConfig(teacher=str(tmp_path / "teacher"), unlabeled=(str(unlabeled),), weight=2.0))
    assert distilled.mean() > plain.mean() + 0.2, (distilled.mean(), plain.mean())


def test_teacher_without_unlabeled_texts_is_a_clear_error(cli, tiny_model_dir, tmp_path):
    train, dev = toy_files(tmp_path)
    result = cli(["finetune", "--base", tiny_model_dir, "--train", train, "--arch", "small",
                  "--teacher", tiny_model_dir, "--quiet"])
    assert result.exit_code != 0 and "--unlabeled" in result.stderr
    result = cli(["finetune", "--base", tiny_model_dir, "--train", train, "--arch", "small", "--head",
                  "label-attention", "--quiet"])
    assert result.exit_code != 0 and "--head label-attention does not apply to --arch small" in result.stderr


@pytest.mark.parametrize("name", ["small", "label-attention"])
def test_tag_scores_custom_models_like_load_model_does(cli, tiny_model_dir, tmp_path, name):
    import duckdb
    import numpy as np

    from emocli.inference.engine import score_texts, scorer_for

    tokenizer, module = build(name, tiny_model_dir)
    model_dir = heads.save_custom(tmp_path / "model", module, tokenizer, ModelInfo(LABELS, (0.5,) * 5, max_length=32))
    data = tmp_path / "posts.csv"
    data.write_text("id,text\n" + "".join(f'{i},"{text}"\n' for i, text in enumerate(TEXTS * 3)))
    db = tmp_path / "emotions.duckdb"
    result = cli(["tag", data, "--model", model_dir, "--db", db, "--quiet"])
    assert result.exit_code == 0, result.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        stored = np.array(con.execute(f"SELECT {', '.join(LABELS)} FROM scores ORDER BY id").fetchall())
    model = load_model(model_dir)
    expected = score_texts(scorer_for(model, max_length=32), TEXTS * 3)
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_weights_that_share_one_buffer_are_saved_as_separate_tensors(tmp_path):
    """cuDNN packs a CUDA LSTM's weights into one buffer; safetensors refuses shared storage as it stands."""
    from safetensors.torch import load_file

    buffer = torch.arange(12, dtype=torch.float32)
    module = torch.nn.Module()
    module.a = torch.nn.Parameter(buffer[:6].view(2, 3))
    module.b = torch.nn.Parameter(buffer[6:])
    heads.save_weights(module, tmp_path / "w.safetensors")
    saved = load_file(str(tmp_path / "w.safetensors"))
    assert torch.equal(saved["a"], buffer[:6].view(2, 3)) and torch.equal(saved["b"], buffer[6:])
