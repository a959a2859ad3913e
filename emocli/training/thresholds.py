"""Decision thresholds: fixed, or tuned per label to maximise that label's F1.

Tuning on a handful of positives overfits (one lucky positive can drag a threshold to 0.05 or 0.95),
so a guard keeps thresholds in [low, high], narrowed to [few_low, few_high] when a label has fewer
than `min_positives` positives in the tuning set, and 0.5 when it has none.
"""

from __future__ import annotations


import numpy as np

from emocli.errors import InputError
from emocli.training.config import THRESHOLD_MODES, THRESHOLD_SOURCES, ThresholdConfig  # noqa: F401 - re-exported

def f1_at(scores: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    tp = float(np.sum(predicted & truth))
    denominator = float(np.sum(predicted) + np.sum(truth))
    return 2 * tp / denominator if denominator else 0.0


def best_threshold(scores: np.ndarray, truth: np.ndarray, config: ThresholdConfig = ThresholdConfig()) -> float:
    """The threshold in the guarded range that maximises F1; ties go to the one nearest 0.5."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth).astype(bool)
    n_positive = int(truth.sum())
    if n_positive == 0:
        return 0.5
    low, high = (config.low, config.high) if n_positive >= config.min_positives else (config.few_low, config.few_high)
    candidates = np.round(np.arange(low, high + config.step / 2, config.step), 6)
    f1s = np.array([f1_at(scores, truth, t) for t in candidates])
    best = f1s.max()
    tied = candidates[np.isclose(f1s, best)]
    return float(tied[np.argmin(np.abs(tied - 0.5))])


def tune_thresholds(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                    config: ThresholdConfig = ThresholdConfig()) -> np.ndarray:
    """One threshold per label from (n, L) scores, over the rows where that label is known."""
    if config.mode == "fixed":
        return np.full(scores.shape[1], config.fixed)
    return np.array([best_threshold(scores[mask[:, j], j], targets[mask[:, j], j], config)
                     for j in range(scores.shape[1])])


def dev_supports_tuning(targets: np.ndarray, mask: np.ndarray, config: ThresholdConfig) -> bool:
    """Enough dev positives of every label (that dev annotates) to tune thresholds there."""
    positives = (targets * mask).sum(axis=0)
    annotated = mask.sum(axis=0) > 0
    return bool(annotated.any() and np.all(positives[annotated] >= config.min_positives))


def choose_threshold_source(config: ThresholdConfig, dev) -> str:
    """'fixed', 'dev' or 'cv' for a run; `dev` is the dev LabelledData or None. auto: dev when it can tune."""
    if config.mode == "fixed":
        return "fixed"
    if config.source == "dev" and dev is None:
        raise InputError("--threshold-source dev needs dev data", hint="pass --dev FILE, or use --threshold-source cv")
    if config.source == "auto":
        return "dev" if dev is not None and dev_supports_tuning(dev.targets, dev.mask, config) else "cv"
    return config.source
