"""Stacking (emocli.model.stack, emocli.training.stack, `emocli stack`): two tiny real members, real CSV files, real model directories."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from emocli.model import heads
from emocli.errors import InputError, ModelNotFoundError
from emocli.model.io import ModelInfo, load_model

LABELS = ("anger", "fear", "joy", "sadness", "surprise")
TRIGGERS = ("furious", "ghost", "sunny", "funeral", "wow")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_toy_csv(path, n, offset=0):
    """A trigger word decides each label; every label has positives."""
    fillers = ["today", "the bus", "my neighbour", "this film", "the report", "our team", "dinner", "the match"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", *LABELS])
        for i in range(n):
            k = i + offset
            on = [(k >> j) & 1 for j in range(len(LABELS))]
            words = [w for w, bit in zip(TRIGGERS, on) if bit]
            writer.writerow([f"r{k}", " ".join([fillers[k % len(fillers)], "was", *words, "."]), *on])
    return path


@pytest.fixture
def members(tiny_model_dir, tmp_path):
    """Member 1: the tiny BERT (transformers); member 2: a small conv/BiLSTM model (emocli architecture)."""
    first = tmp_path / "member_bert"
    shutil.copytree(tiny_model_dir, first)
    torch.manual_seed(1)
    tokenizer, module = heads.build_model("small", None, tiny_model_dir, LABELS)
    second = heads.save_custom(tmp_path / "member_small", module.eval(), tokenizer,
                               ModelInfo(LABELS, (0.5,) * 5, max_length=64))
    return [first, second]


@pytest.fixture
def data(tmp_path):
    return write_toy_csv(tmp_path / "train.csv", 64), write_toy_csv(tmp_path / "dev.csv", 32, offset=64)


def build(members, data, out, **overrides):
    from emocli.training.stack import StackConfig, build_stack

    config = StackConfig(members=tuple(map(str, members)), train=(str(data[0]),), dev=(str(data[1]),), out=out,
                         epochs=overrides.pop("epochs", 8), progress=False, **overrides)
    return build_stack(config)


def scores_of(model, texts):
    batch = model.tokenizer(texts, padding=True, truncation=True, max_length=model.info.max_length,
                            return_tensors="pt")
    with torch.no_grad():
        return torch.sigmoid(model.module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits)


TEXTS = ["the bus was furious .", "dinner was sunny wow .", "ok"]


def test_stack_command_trains_saves_and_reloads_with_identical_scores(cli, members, data, tmp_path):
    out = tmp_path / "stack"
    result = cli(["stack", "--member", members[0], "--member", members[1], "--train", data[0], "--dev", data[1],
                  "--out", out, "--epochs", "8", "--register", "my-stack", "--quiet", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["labels"] == list(LABELS) and len(summary["thresholds"]) == 5
    assert summary["dev_metrics"]["rows"] == 32

    meta = json.loads((out / "emocli.json").read_text())
    assert meta["architecture"] == "stack" and meta["loss"]["name"] == "hybrid"
    losses = [h["train_loss"] for h in meta["history"]]
    assert losses[-1] < losses[0]
    config = json.loads((out / "config.json").read_text())
    assert [m["architecture"] for m in config["members"]] == ["transformers", "small"]
    assert all(len(m["fingerprint"]) == 64 and m["path"].startswith("/") for m in config["members"])
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in out.rglob("*"))

    stack = load_model(out)
    assert type(stack.module).__name__ == "StackModel" and heads.loader_for(stack.info) == "emocli"
    first, again = scores_of(stack, TEXTS), scores_of(load_model(out), TEXTS)
    torch.testing.assert_close(first, again)
    assert first.shape == (3, 5)
    # padding changes nothing: each text alone scores as in the batch
    torch.testing.assert_close(scores_of(stack, TEXTS[:1])[0], first[0], atol=2e-5, rtol=1e-4)

    # loading a stack (what `tag` does) brings in neither the stack trainer nor the training package
    import subprocess
    import sys

    probe = ("import sys; from emocli.model.io import load_model; load_model(sys.argv[1]); "
             "print(sorted(m for m in sys.modules if m.startswith('emocli.training')))")
    loaded = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout

    # registered: `emocli tag` with no --model uses the stack
    import duckdb

    posts = tmp_path / "posts.csv"
    posts.write_text("id,text\n" + "".join(f"{i},{text}\n" for i, text in enumerate(TEXTS)))
    db = tmp_path / "emotions.duckdb"
    tagged = cli(["tag", posts, "--db", db, "--quiet"])
    assert tagged.exit_code == 0, tagged.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        stored = torch.tensor(con.execute(f"SELECT {', '.join(LABELS)} FROM scores ORDER BY id").fetchall())
        assert con.execute("SELECT model FROM runs").fetchone()[0] == "my-stack"
    torch.testing.assert_close(stored, first, atol=1e-5, rtol=1e-4)
    evaluated = cli(["evaluate", "--model", "my-stack", "--data", data[1], "--json"])
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["rows"] == 32


def test_member_with_changed_weights_is_refused_by_fingerprint(members, data, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "stack"
    build(members, data, out, epochs=2)
    load_model(out)  # fine while the members are untouched
    weights = members[1] / "model.safetensors"
    tensors = load_file(weights)
    tensors["embeddings.weight"][0, 0] += 1.0
    save_file(tensors, weights)
    with pytest.raises(InputError, match=r"stack member 2 .* has changed since the stack was trained"):
        load_model(out)
    shutil.rmtree(members[0])
    with pytest.raises(ModelNotFoundError, match="stack member 1 .* is gone"):
        load_model(out)


def test_bundle_copies_members_so_the_stack_survives_their_removal(members, data, tmp_path):
    out = tmp_path / "stack"
    build(members, data, out, epochs=3, bundle=True)
    config = json.loads((out / "config.json").read_text())
    assert [m["path"] for m in config["members"]] == ["members/m0", "members/m1"]
    assert (out / "members" / "m0" / "model.safetensors").exists()
    assert (out / "members" / "m1" / "emocli.json").exists()
    expected = scores_of(load_model(out), TEXTS)
    for member in members:
        shutil.rmtree(member)
    moved = tmp_path / "moved_stack"
    out.rename(moved)  # relative member paths: the directory can move as a whole
    torch.testing.assert_close(scores_of(load_model(moved), TEXTS), expected)


def test_meta_learner_learns_from_member_features(members, data, tmp_path):
    """With a plain BCE loss the meta-learner fits the toy labels well on dev (the members' features carry the trigger words)."""
    from emocli.training.losses import LossConfig

    result = build(members, data, tmp_path / "stack", epochs=30, loss=LossConfig(name="bce"), patience=30)
    assert result.dev_metrics["macro_f1"] > 0.8
    assert result.history[-1]["train_loss"] < 0.8 * result.history[0]["train_loss"]


def test_stack_needs_two_members_and_training_data(cli, members, data):
    result = cli(["stack", "--member", members[0], "--train", data[0]])
    assert result.exit_code != 0 and "at least two members" in result.stderr
    result = cli(["stack", "--member", members[0], "--member", members[1]])
    assert result.exit_code != 0 and "--train" in result.stderr
    result = cli(["stack", "--train", data[0]])
    assert result.exit_code != 0 and "--member" in result.stderr


def test_a_stack_cannot_be_a_member(members, data, tmp_path):
    out = build(members, data, tmp_path / "stack", epochs=1).out_dir
    with pytest.raises(InputError, match="itself a stack"):
        build([out, members[0]], data, tmp_path / "stack2", epochs=1)


def word_level_member(path, vocab_words):
    """A member with its own (word-level) tokenizer and a tiny BERT over that vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    from emocli.model.io import save_model

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {word: i for i, word in enumerate(specials + sorted(vocab_words))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(2)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=len(LABELS), problem_type="multi_label_classification")
    return save_model(path, BertForSequenceClassification(config).eval(), tokenizer,
                      ModelInfo(LABELS, (0.5,) * 5, max_length=32))


def test_member_with_another_tokenizer_gets_the_text_re_tokenized(members, data, tmp_path):
    words = {w for line in open(data[0]) for w in line.split(",")[1].split()} | {"."}
    other = word_level_member(tmp_path / "member_words", words)
    out = build([members[0], other], data, tmp_path / "stack", epochs=2).out_dir
    stack = load_model(out)
    assert stack.module.member_tokenizers[0] is None and stack.module.member_tokenizers[1] is not None
    own = load_model(other)
    text = "the bus was furious ."
    batch = stack.tokenizer([text], return_tensors="pt")
    features = stack.module.member_features(batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        expected = own.module(**own.tokenizer([text], return_tensors="pt")).logits
    torch.testing.assert_close(features[1][:, -len(LABELS):], expected)
    torch.testing.assert_close(scores_of(stack, [text, "dinner was wow ."])[0], scores_of(stack, [text])[0],
                               atol=2e-5, rtol=1e-4)


def test_a_stack_loaded_in_bf16_scores_like_fp32(members, data, tmp_path):
    """What a GPU does by default (--dtype auto is bf16 there): members and meta-learner in bf16, same scores
    within bf16's precision."""
    out = tmp_path / "stack"
    build(members, data, out, epochs=3)
    expected = scores_of(load_model(out), TEXTS)
    got = scores_of(load_model(out, dtype="bf16"), TEXTS).float()
    torch.testing.assert_close(got, expected, atol=0.03, rtol=0)
