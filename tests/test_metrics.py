"""Masked multi-label metrics equal scikit-learn's on random data; unknown cells are ignored."""

import numpy as np
import pytest
from sklearn import metrics as sk

from emocli.training.metrics import compute_metrics, macro_f1

LABELS = ("a", "b", "c", "d")


def random_case(seed=0, n=300):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 4)) < [0.1, 0.3, 0.5, 0.7]).astype(np.float32)
    scores = np.clip(targets * 0.3 + rng.random((n, 4)) * 0.7, 0, 1).astype(np.float32)
    thresholds = np.array([0.3, 0.4, 0.5, 0.6])
    return targets, scores, thresholds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_mask_matches_sklearn(seed):
    targets, scores, thresholds = random_case(seed)
    mask = np.ones_like(targets, dtype=bool)
    m = compute_metrics(scores, targets, mask, thresholds, LABELS)
    pred = (scores >= thresholds).astype(int)
    y = targets.astype(int)
    assert m["micro_f1"] == pytest.approx(sk.f1_score(y, pred, average="micro"))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, pred, average="macro"))
    assert m["roc_auc_macro"] == pytest.approx(sk.roc_auc_score(y, scores, average="macro"))
    assert m["jaccard_samples"] == pytest.approx(sk.jaccard_score(y, pred, average="samples", zero_division=0))
    assert m["hamming_loss"] == pytest.approx(sk.hamming_loss(y, pred))
    assert m["subset_accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    precision, recall, f1, support = sk.precision_recall_fscore_support(y, pred, zero_division=0)
    for j, label in enumerate(LABELS):
        assert m["per_class"][label]["precision"] == pytest.approx(precision[j])
        assert m["per_class"][label]["recall"] == pytest.approx(recall[j])
        assert m["per_class"][label]["f1"] == pytest.approx(f1[j])
        assert m["per_class"][label]["support"] == support[j]
    assert macro_f1(scores, targets, mask, thresholds) == pytest.approx(m["macro_f1"])


def test_unknown_cells_are_ignored():
    targets, scores, thresholds = random_case(3)
    mask = np.ones_like(targets, dtype=bool)
    mask[:150, 0] = False  # label a unknown on the first half
    mask[:, 3] = False  # label d never annotated
    m = compute_metrics(scores, targets, mask, thresholds, LABELS)
    assert "d" not in m["per_class"]
    y, pred = targets[150:, 0].astype(int), (scores[150:, 0] >= 0.3).astype(int)
    assert m["per_class"]["a"]["f1"] == pytest.approx(sk.f1_score(y, pred))
    assert m["per_class"]["a"]["known"] == 150
    assert m["macro_f1"] == pytest.approx(np.mean([m["per_class"][k]["f1"] for k in "abc"]))
    # changing an unknown cell changes nothing
    flipped = targets.copy()
    flipped[:150, 0] = 1 - flipped[:150, 0]
    assert compute_metrics(scores, flipped, mask, thresholds, LABELS)["macro_f1"] == pytest.approx(m["macro_f1"])
    y3 = targets[:, :3].astype(int)
    pred3 = (scores[:, :3] >= thresholds[:3]).astype(int)
    wrong = (y3 != pred3) & mask[:, :3]
    assert m["hamming_loss"] == pytest.approx(wrong.sum() / mask.sum())
