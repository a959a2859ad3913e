"""Each loss against a value worked out by hand on a 2x2 batch with one unknown cell."""

import math

import numpy as np
import pytest
import torch

from emocli.training.losses import LossConfig, MultiLabelLoss, class_weights, label_cooccurrence, supervised_contrastive

LOGITS = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
TARGETS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
MASK = torch.tensor([[True, True], [True, False]])  # row 1 does not annotate label 1


def sig(x):
    return 1 / (1 + math.exp(-x))


def make(name, positives=(1, 1), known=(2, 2), **kwargs):
    return MultiLabelLoss(LossConfig(name=name, class_weights="inverse", **kwargs), np.array(positives),
                          np.array(known))


def test_bce_averages_over_known_cells_only():
    expected = (math.log(2) + math.log(1 + math.e ** 2) + math.log(1 + math.e ** -1)) / 3
    out = make("bce")(LOGITS, TARGETS, MASK)
    assert float(out.total) == pytest.approx(expected, rel=1e-6)
    assert out.known.tolist() == [2.0, 1.0]


def test_unknown_cell_changes_nothing():
    for name in ("bce", "weighted-bce", "focal", "asymmetric", "hybrid"):
        loss = make(name, lambda_con=0.0)
        flipped_targets, wild_logits = TARGETS.clone(), LOGITS.clone()
        flipped_targets[1, 1], wild_logits[1, 1] = 0.0, 9.0
        a = loss(LOGITS, TARGETS, MASK).total
        b = loss(wild_logits, flipped_targets, MASK).total
        assert float(a) == pytest.approx(float(b), rel=1e-6), name


def test_weighted_bce_weights_positive_term():
    # positives 1 of 4 known vs 2 of 4: inverse weights [2, 1]
    expected = (2 * math.log(2) + math.log(1 + math.e ** 2) + math.log(1 + math.e ** -1)) / 3
    out = make("weighted-bce", positives=(1, 2), known=(4, 4))(LOGITS, TARGETS, MASK)
    assert float(out.total) == pytest.approx(expected, rel=1e-6)


def test_focal():
    # alpha [2, 1] on positives, gamma 2: (1 - p_t)^2 * BCE
    expected = (2 * 0.5 ** 2 * math.log(2) + sig(2) ** 2 * math.log(1 + math.e ** 2)
                + sig(-1) ** 2 * math.log(1 + math.e ** -1)) / 3
    out = make("focal", positives=(1, 2), known=(4, 4))(LOGITS, TARGETS, MASK)
    assert float(out.total) == pytest.approx(expected, rel=1e-5)


def test_asymmetric():
    def negative(x):
        p_m = max(sig(x) - 0.05, 0.0)
        return p_m ** 4 * -math.log(1 - p_m)

    expected = (math.log(2) + negative(2.0) + negative(-1.0)) / 3  # gamma_pos 0: plain -log p on positives
    out = make("asymmetric")(LOGITS, TARGETS, MASK)
    assert float(out.total) == pytest.approx(expected, rel=1e-5)


def test_asymmetric_margin_discards_easy_negatives():
    out = make("asymmetric")(torch.tensor([[-4.0]]), torch.tensor([[0.0]]), torch.tensor([[True]]))
    assert float(out.total) == 0.0  # p = 0.018 < m = 0.05: p_m = 0


def test_hybrid_correlation_term():
    # p = 0.5 everywhere: predicted P(i and j) = 0.25; train co-occurrence 0.1 -> penalty (0.15)^2
    loss = MultiLabelLoss(LossConfig(name="hybrid", class_weights="inverse", lambda_corr=0.1, lambda_con=0.0),
                          np.array([1, 1]), np.array([2, 2]), np.array([[0.5, 0.1], [0.1, 0.5]]))
    out = loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.ones(2, 2, dtype=torch.bool))
    assert float(out.total) == pytest.approx(math.log(2) + 0.1 * 0.15 ** 2, rel=1e-6)


def test_supervised_contrastive_by_hand():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    value = supervised_contrastive(embeddings, targets, torch.ones(3, 2, dtype=torch.bool), temperature=1.0)
    # anchors 0 and 2: positive similarity 1, others 0 -> -log(e / (e + 1)); anchor 1 has no positive
    assert float(value) == pytest.approx(math.log(1 + math.e) - 1, rel=1e-6)
    masked = supervised_contrastive(embeddings, targets, torch.tensor([[False, True], [True, True], [True, True]]), 1.0)
    assert float(masked) == 0.0  # label 0 unknown on row 0: no pair shares a known positive


def test_hybrid_uses_embeddings():
    loss = make("hybrid", lambda_corr=0.0, lambda_con=0.5)
    base = loss(LOGITS, TARGETS, MASK).total
    with_con = loss(LOGITS, torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.ones(2, 2, dtype=torch.bool),
                    torch.tensor([[1.0, 0.0], [0.0, 1.0]])).total
    assert float(with_con) != pytest.approx(float(base))


def test_class_weight_formulas():
    positives, known = np.array([10, 40]), np.array([100, 100])
    assert class_weights(positives, known, "inverse").tolist() == pytest.approx([4.0, 1.0])
    assert class_weights(positives, known, "sqrt-inverse").tolist() == pytest.approx([2.0, 1.0])
    beta = 0.999
    expected = ((1 - beta) / (1 - beta ** 10)) / ((1 - beta) / (1 - beta ** 40))
    assert class_weights(positives, known, "effective-number").tolist() == pytest.approx([expected, 1.0])
    # frequencies are over known rows: 10 of 100 vs 10 of 20
    assert class_weights(np.array([10, 10]), np.array([100, 20]), "inverse").tolist() == pytest.approx([5.0, 1.0])
    with pytest.raises(ValueError):
        class_weights(np.array([0, 3]), np.array([5, 5]), "inverse")


def test_cooccurrence_over_rows_where_both_known():
    targets = np.array([[1, 1], [1, 0], [1, 1]], dtype=np.float32)
    mask = np.array([[1, 1], [1, 1], [1, 0]], dtype=bool)
    c = label_cooccurrence(targets, mask)
    assert c[0, 1] == pytest.approx(0.5) and c[0, 0] == pytest.approx(1.0)
