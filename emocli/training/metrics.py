"""Multi-label metrics that respect a mask of known labels (an unknown cell is neither right nor wrong).

With a full mask they equal scikit-learn's f1_score (micro/macro), precision/recall per class,
roc_auc_score(average="macro"), jaccard_score(average="samples"), hamming_loss and accuracy_score.
"""

from __future__ import annotations

import numpy as np


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Mann-Whitney AUC with average ranks for ties; None when only one class is present."""
    n_pos = int(truth.sum())
    n_neg = len(truth) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def per_class_metrics(predicted: np.ndarray, targets: np.ndarray, mask: np.ndarray, scores: np.ndarray,
                      labels: tuple[str, ...]) -> dict[str, dict]:
    out = {}
    for j, label in enumerate(labels):
        known = mask[:, j]
        if not known.any():
            continue
        pred, truth = predicted[known, j], targets[known, j].astype(bool)
        tp = int(np.sum(pred & truth))
        precision, recall = _safe_div(tp, pred.sum()), _safe_div(tp, truth.sum())
        out[label] = {
            "precision": precision, "recall": recall,
            "f1": _safe_div(2 * tp, pred.sum() + truth.sum()),
            "support": int(truth.sum()), "known": int(known.sum()),
            "roc_auc": _roc_auc(scores[known, j], truth),
        }
    return out


def compute_metrics(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray, thresholds: np.ndarray,
                    labels: tuple[str, ...]) -> dict:
    """Scores (n, L) in [0, 1] -> micro/macro F1, per-class P/R/F1/support, ROC-AUC, Jaccard, Hamming, subset acc."""
    mask = mask.astype(bool)
    predicted = (scores >= np.asarray(thresholds)[None, :]) & mask
    truth = targets.astype(bool) & mask
    per_class = per_class_metrics(predicted, targets, mask, scores, labels)
    tp = int(np.sum(predicted & truth))
    micro_f1 = _safe_div(2 * tp, predicted.sum() + truth.sum())
    aucs = [m["roc_auc"] for m in per_class.values() if m["roc_auc"] is not None]
    rows = mask.any(axis=1)
    union = (predicted | truth).sum(axis=1)
    jaccard = np.where(union > 0, (predicted & truth).sum(axis=1) / np.maximum(union, 1), 0.0)
    wrong = (predicted != truth) & mask
    return {
        "rows": int(rows.sum()),
        "micro_f1": micro_f1,
        "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])) if per_class else 0.0,
        "roc_auc_macro": float(np.mean(aucs)) if aucs else None,
        "jaccard_samples": float(jaccard[rows].mean()) if rows.any() else 0.0,
        "hamming_loss": _safe_div(wrong.sum(), mask.sum()),
        "subset_accuracy": float((~wrong.any(axis=1))[rows].mean()) if rows.any() else 0.0,
        "per_class": per_class,
        "thresholds": {label: float(t) for label, t in zip(labels, thresholds)},
    }


def macro_f1(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray, thresholds: np.ndarray) -> float:
    mask = mask.astype(bool)
    predicted = (scores >= np.asarray(thresholds)[None, :]) & mask
    truth = targets.astype(bool) & mask
    f1s = [_safe_div(2 * np.sum(predicted[:, j] & truth[:, j]), predicted[:, j].sum() + truth[:, j].sum())
           for j in range(scores.shape[1]) if mask[:, j].any()]
    return float(np.mean(f1s)) if f1s else 0.0
