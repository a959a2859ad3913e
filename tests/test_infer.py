"""The engine: score_batch equals a plain transformers forward; batching, skipping, truncation, pipelining."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from emocli.errors import InputError
from emocli.inference.engine import EngineConfig, load_scorer, score_batch, score_windows
from emocli.model.io import ModelInfo, load_model, save_model

TOLERANCE = 1e-5  # fp32: only the padding length differs from the reference, which moves scores by ~1e-7


def reference_scores(model_dir, texts, max_length, activation="sigmoid"):
    """A direct AutoModelForSequenceClassification forward, one text at a time (no padding at all)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    module = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            logits = module(**enc).logits[0]
            rows.append((torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, -1)).numpy())
    return np.stack(rows)


def as_matrix(batch: pa.RecordBatch, labels) -> np.ndarray:
    return np.stack([batch.column(label).to_numpy(zero_copy_only=False) for label in labels], axis=1)


@pytest.fixture(scope="module")
def eng_texts(brighter):
    texts = pcsv.read_csv(brighter / "dev" / "eng.csv").column("text").to_pylist()
    return texts[:60]


@pytest.fixture(scope="module")
def minilm_emotion_dir(tmp_path_factory, minilm_dir):
    """The packaged MiniLM with a seeded 5-label head: the real encoder the CPU target is about."""
    import torch

    from emocli.model.io import load_for_finetune

    torch.manual_seed(1)
    labels = ("anger", "fear", "joy", "sadness", "surprise")
    tokenizer, module = load_for_finetune(minilm_dir, labels)
    out = tmp_path_factory.mktemp("minilm_emotion")
    return save_model(out, module, tokenizer, ModelInfo(labels, (0.5,) * 5, "multi_label", 128))


def test_tiny_model_scores_equal_a_direct_forward(tiny_model_dir, eng_texts):
    scorer = load_scorer(load_model(tiny_model_dir), EngineConfig(batch_tokens=256))
    batch = score_batch(pa.array(eng_texts), scorer)
    assert batch.schema.names == [*scorer.labels, "labels", "n_tokens", "truncated"]
    assert all(batch.schema.field(label).type == pa.float32() for label in scorer.labels)
    ours = as_matrix(batch, scorer.labels)
    np.testing.assert_allclose(ours, reference_scores(tiny_model_dir, eng_texts, 64), atol=TOLERANCE, rtol=0)
    # predicted labels follow the model's own thresholds (0.45 for fear, 0.55 for sadness)
    thresholds = np.array([0.5, 0.45, 0.5, 0.55, 0.5])
    expected = [[label for label, s, t in zip(scorer.labels, row, thresholds) if s >= t] for row in ours]
    assert batch.column("labels").to_pylist() == expected


def test_minilm_scores_equal_a_direct_forward(minilm_emotion_dir, eng_texts):
    scorer = load_scorer(load_model(minilm_emotion_dir))
    ours = as_matrix(score_batch(pa.array(eng_texts[:24]), scorer), scorer.labels)
    np.testing.assert_allclose(ours, reference_scores(minilm_emotion_dir, eng_texts[:24], 128), atol=TOLERANCE, rtol=0)


def test_empty_texts_are_skipped_and_long_ones_truncated(tiny_model_dir):
    scorer = load_scorer(load_model(tiny_model_dir), EngineConfig(max_length=16))
    long_text = "I was so scared that night " * 20
    batch = score_batch(pa.array(["happy day", None, "", "   ", long_text], pa.string()), scorer)
    assert batch.column("anger").to_pylist()[1:4] == [None, None, None]
    assert batch.column("labels").to_pylist()[1:4] == [None, None, None]
    assert batch.column("anger").null_count == 3
    assert batch.column("n_tokens").to_pylist() == [4, 0, 0, 0, 16]
    assert batch.column("truncated").to_pylist() == [False, False, False, False, True]
    truncated_ref = reference_scores(tiny_model_dir, [long_text], 16)
    np.testing.assert_allclose(as_matrix(batch, scorer.labels)[4:], truncated_ref, atol=TOLERANCE, rtol=0)


def test_batches_respect_the_token_budget_and_cover_every_row_once(tiny_model_dir, eng_texts):
    scorer = load_scorer(load_model(tiny_model_dir), EngineConfig(batch_tokens=200))
    tokenized = scorer.tokenize(pa.array(eng_texts + [None]))
    batches = scorer.plan_batches(tokenized)
    rows = np.concatenate([b.rows for b in batches])
    assert sorted(rows.tolist()) == list(range(len(eng_texts)))  # the None row is in no batch
    for b in batches:
        assert b.input_ids.shape[0] * b.input_ids.shape[1] <= 200 or b.input_ids.shape[0] == 1
        assert b.input_ids.shape[1] == tokenized.lengths[b.rows].max()  # padded only to the batch's longest
    padded = sum(b.input_ids.numel() for b in batches)
    assert padded < 1.15 * tokenized.n_tokens  # length sorting leaves little padding


def test_single_label_models_use_softmax_and_argmax(tmp_path, tiny_model_dir, eng_texts):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = ("anger", "joy", "neutral")
    torch.manual_seed(3)
    module = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3,
                                                                ignore_mismatched_sizes=True)
    out = save_model(tmp_path / "single", module, AutoTokenizer.from_pretrained(tiny_model_dir),
                     ModelInfo(labels, (0.5,) * 3, "single_label", 64))
    scorer = load_scorer(load_model(out))
    batch = score_batch(pa.array(eng_texts[:20]), scorer)
    probs = as_matrix(batch, labels)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, reference_scores(out, eng_texts[:20], 64, "softmax"), atol=TOLERANCE, rtol=0)
    assert batch.column("labels").to_pylist() == [[labels[i]] for i in probs.argmax(axis=1)]


def test_pipelined_windows_equal_score_batch_and_surface_errors(tiny_model_dir, eng_texts):
    scorer = load_scorer(load_model(tiny_model_dir))
    windows = [pa.array(eng_texts[i:i + 7]) for i in range(0, len(eng_texts), 7)] + [None]
    got = list(score_windows(windows, lambda w: w, scorer))
    assert [w for w, _ in got] == windows  # in order, the marker passed through unscored
    assert got[-1][1] is None
    piped = np.concatenate([as_matrix(s.scores, scorer.labels) for _, s in got[:-1]])
    np.testing.assert_allclose(piped, as_matrix(score_batch(pa.array(eng_texts), scorer), scorer.labels),
                               atol=TOLERANCE, rtol=0)

    def failing(window):
        if window == "bad":
            raise InputError("posts.csv: line 9: expected 2 columns, got 3")
        return window

    with pytest.raises(InputError, match="line 9"):
        list(score_windows([pa.array(["ok"]), "bad", pa.array(["never"])], failing, scorer))
    with pytest.raises(InputError, match="holds int64, not text"):
        score_batch(pa.array([1, 2]), scorer)


def test_bf16_on_cpu_stays_close_to_fp32_and_the_hint_names_it_only_where_it_applies(minilm_emotion_dir, eng_texts):
    from emocli.inference.engine import bf16_note

    fp32 = load_scorer(load_model(minilm_emotion_dir), EngineConfig())
    bf16 = load_scorer(load_model(minilm_emotion_dir, dtype="bf16"), EngineConfig(dtype="bf16"))
    ours, theirs = (as_matrix(score_batch(pa.array(eng_texts), s), s.labels) for s in (fp32, bf16))
    assert 0 < np.abs(ours - theirs).max() < 0.02  # bf16 really ran (scores moved), and stayed close

    note = bf16_note(EngineConfig(), fp32, has_bf16_unit=True)
    assert note is not None and "--dtype bf16" in note and "--backend onnx --quantize" in note
    assert bf16_note(EngineConfig(), fp32, has_bf16_unit=False) is None
    assert bf16_note(EngineConfig(dtype="fp32"), fp32, has_bf16_unit=True) is None  # asked for fp32: no hint
    assert bf16_note(EngineConfig(quantize=True), fp32, has_bf16_unit=True) is None
    assert bf16_note(EngineConfig(dtype="bf16"), bf16, has_bf16_unit=True) is None
