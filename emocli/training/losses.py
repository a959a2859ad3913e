"""Imbalance-aware multi-label losses, all taking a mask of known labels.

Every loss is computed element-wise on (batch, labels) and averaged over the *known* cells only
(mask True): a label a file does not annotate contributes nothing, it is never a negative.

Class weights w_j (>= 1, the most frequent label has weight 1) weight the positive term of label j,
like `pos_weight` in BCEWithLogitsLoss: rare labels get a larger push towards recall.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from emocli.training.config import CLASS_WEIGHTS, LOSSES, LossConfig  # noqa: F401 - re-exported


def class_weights(positives: np.ndarray, known: np.ndarray, scheme: str, beta: float = 0.999) -> np.ndarray:
    """Per-label weights from positive counts n_j over known rows, normalised so the largest class has 1.

    inverse: f_max / f_j with f_j = n_j / known_j; sqrt-inverse: its square root;
    effective-number (Cui et al. 2019): (1 - beta) / (1 - beta^n_j), divided by the largest class's value.
    """
    positives = np.asarray(positives, dtype=np.float64)
    known = np.asarray(known, dtype=np.float64)
    if np.any(positives <= 0):
        raise ValueError("a label with no positive example has no finite class weight")
    if scheme in ("inverse", "sqrt-inverse"):
        freq = positives / np.maximum(known, 1.0)
        weights = freq.max() / freq
        return np.sqrt(weights) if scheme == "sqrt-inverse" else weights
    if scheme == "effective-number":
        raw = (1.0 - beta) / (1.0 - np.power(beta, positives))
        return raw / raw[np.argmax(positives)]
    raise ValueError(f"unknown class weights {scheme!r}")


def label_cooccurrence(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """C_ij = P(y_i = 1 and y_j = 1) over rows where both labels are known (0 where never both known)."""
    both = mask.astype(np.float64).T @ mask.astype(np.float64)
    joint = (targets * mask).astype(np.float64).T @ (targets * mask).astype(np.float64)
    return np.where(both > 0, joint / np.maximum(both, 1.0), 0.0)


class LossOutput(NamedTuple):
    total: "torch.Tensor"  # noqa: F821 - scalar to back-propagate
    per_class: "torch.Tensor"  # noqa: F821 - (labels,) sum of element losses per label (for logging)
    known: "torch.Tensor"  # noqa: F821 - (labels,) known cells per label in the batch


def _masked_mean(elements, mask):
    mask = mask.to(elements.dtype)
    per_class = (elements * mask).sum(dim=0)
    known = mask.sum(dim=0)
    return per_class.sum() / known.sum().clamp(min=1.0), per_class, known


def bce_elements(logits, targets, pos_weight=None):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")


def focal_elements(logits, targets, gamma: float, alpha=None):
    """alpha_t (1 - p_t)^gamma * BCE, alpha_t = alpha_j on positives and 1 on negatives."""
    import torch

    bce = bce_elements(logits, targets)
    p = torch.sigmoid(logits)
    p_t = targets * p + (1 - targets) * (1 - p)
    alpha_t = 1.0 if alpha is None else targets * alpha + (1 - targets)
    return alpha_t * (1 - p_t).pow(gamma) * bce


def asymmetric_elements(logits, targets, gamma_pos: float, gamma_neg: float, margin: float, eps: float = 1e-8):
    """ASL: -y (1-p)^g+ log p - (1-y) p_m^g- log(1 - p_m), p_m = max(p - m, 0)."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(logits)
    p_m = (p - margin).clamp(min=0)
    positive = targets * (1 - p).pow(gamma_pos) * F.logsigmoid(logits)
    negative = (1 - targets) * p_m.pow(gamma_neg) * torch.log((1 - p_m).clamp(min=eps))
    return -(positive + negative)


def correlation_penalty(logits, mask, cooccurrence):
    """Mean squared gap between the batch's predicted co-occurrence P(i and j) and the train matrix (i != j)."""
    import torch

    p = torch.sigmoid(logits) * mask
    m = mask.to(p.dtype)
    both = m.T @ m
    predicted = (p.T @ p) / both.clamp(min=1.0)
    off_diagonal = (1 - torch.eye(p.shape[1], device=p.device, dtype=p.dtype)) * (both > 0).to(p.dtype)
    return ((predicted - cooccurrence) ** 2 * off_diagonal).sum() / off_diagonal.sum().clamp(min=1.0)


def supervised_contrastive(embeddings, targets, mask, temperature: float):
    """SupCon (Khosla et al. 2020) with multi-label positives: texts sharing a known positive label."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(embeddings.float(), dim=-1)
    logits = z @ z.T / temperature
    n = z.shape[0]
    self_mask = torch.eye(n, device=z.device, dtype=torch.bool)
    y = (targets * mask).float()
    positive = ((y @ y.T) > 0) & ~self_mask
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    counts = positive.sum(dim=1)
    anchors = counts > 0
    if not anchors.any():
        return embeddings.new_zeros(())
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(dim=1)[anchors] / counts[anchors])
    return per_anchor.mean()


class MultiLabelLoss:
    """The configured loss, bound to train-set statistics (class weights, co-occurrence)."""

    def __init__(self, config: LossConfig, positives: np.ndarray, known: np.ndarray,
                 cooccurrence: np.ndarray | None = None):
        import torch

        self.config = config
        weights = class_weights(positives, known, config.class_weights, config.effective_beta)
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.cooccurrence = torch.tensor(cooccurrence if cooccurrence is not None else
                                         np.zeros((len(positives), len(positives))), dtype=torch.float32)

    def __call__(self, logits, targets, mask, embeddings=None) -> LossOutput:
        c = self.config
        logits = logits.float()
        weights = self.weights.to(logits.device)
        if c.name == "bce":
            elements = bce_elements(logits, targets)
        elif c.name in ("weighted-bce", "hybrid"):
            elements = bce_elements(logits, targets, pos_weight=weights)
        elif c.name == "focal":
            elements = focal_elements(logits, targets, c.focal_gamma, alpha=weights)
        else:
            elements = asymmetric_elements(logits, targets, c.asl_gamma_pos, c.asl_gamma_neg, c.asl_margin)
        total, per_class, known = _masked_mean(elements, mask)
        if c.name == "hybrid":
            if c.lambda_corr > 0:
                total = total + c.lambda_corr * correlation_penalty(logits, mask, self.cooccurrence.to(logits.device))
            if c.lambda_con > 0 and embeddings is not None:
                total = total + c.lambda_con * supervised_contrastive(embeddings, targets, mask,
                                                                      c.contrastive_temperature)
        return LossOutput(total, per_class.detach(), known.detach())
