"""Per-class threshold tuning on known toy cases, and the guard for labels with few positives."""

import numpy as np
import pytest

from emocli.training.thresholds import ThresholdConfig, best_threshold, tune_thresholds


def test_toy_case_picks_f1_optimum():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    truth = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    # any t in (0.3, 0.4] gives F1 8/9; ties go to the value nearest 0.5
    assert best_threshold(scores, truth, ThresholdConfig(min_positives=3)) == pytest.approx(0.40)


def test_guard_with_few_positives():
    scores = np.array([0.9, 0.91, 0.92, 0.97, 0.98, 0.1])
    truth = np.array([0, 0, 0, 1, 1, 0])
    free = best_threshold(scores, truth, ThresholdConfig(min_positives=1))
    assert 0.92 < free <= 0.95  # unguarded: just above the negatives
    guarded = best_threshold(scores, truth, ThresholdConfig(min_positives=5))
    assert 0.3 <= guarded <= 0.7
    assert best_threshold(scores, np.zeros(6), ThresholdConfig()) == 0.5  # no positive at all


def test_tune_thresholds_uses_known_rows_and_fixed_mode():
    scores = np.array([[0.2, 0.9], [0.8, 0.95], [0.3, 0.1], [0.7, 0.2]])
    targets = np.array([[0, 1], [1, 0], [0, 0], [1, 0]], dtype=np.float32)
    mask = np.array([[1, 1], [1, 0], [1, 1], [1, 1]], dtype=bool)
    config = ThresholdConfig(min_positives=1)
    tuned = tune_thresholds(scores, targets, mask, config)
    assert 0.3 < tuned[0] <= 0.7  # separates 0.7/0.8 from 0.2/0.3
    assert 0.2 < tuned[1] <= 0.9  # row 1 (score 0.95, unknown) is ignored
    fixed = tune_thresholds(scores, targets, mask, ThresholdConfig(mode="fixed", fixed=0.4))
    assert fixed.tolist() == [0.4, 0.4]


def test_config_validation():
    with pytest.raises(ValueError):
        ThresholdConfig(mode="magic")
    with pytest.raises(ValueError):
        ThresholdConfig(fixed=1.5)
