"""LIME for text.

Random subsets of words are removed (or replaced by [MASK]); the perturbed inputs are scored in batches
and a ridge regression weighted by an exponential kernel on the cosine distance to the full text gives each
word's local linear contribution to the label's score.
"""

from __future__ import annotations

import numpy as np

from emocli.explain.scoring import label_probabilities
from emocli.explain.words import _Encoded
from emocli.model.io import EmotionModel

LIME_KERNEL_WIDTH = 0.25  # on cosine distance in [0, 1]; LIME's text default of 25 on a 0-100 scale
LIME_RIDGE_ALPHA = 1.0


# --------------------------------------------------------------------------------------------- LIME


def lime_masks(n_words: int, samples: int, seed: int) -> np.ndarray:
    """[samples, n_words] booleans, True = word kept. Row 0 is the whole text; each other row removes a
    uniformly drawn number (1..n) of uniformly drawn words, as LIME does for text."""
    rng = np.random.default_rng(seed)
    masks = np.ones((samples, n_words), dtype=bool)
    for row in range(1, samples):
        n_removed = int(rng.integers(1, n_words + 1))
        masks[row, rng.choice(n_words, size=n_removed, replace=False)] = False
    return masks


def _perturbed_ids(encoded: _Encoded, dropped_positions: set[int], replacement: int | None) -> list[int]:
    if replacement is None:
        return [t for i, t in enumerate(encoded.input_ids) if i not in dropped_positions]
    return [replacement if i in dropped_positions else t for i, t in enumerate(encoded.input_ids)]


def cosine_kernel(masks: np.ndarray, width: float = LIME_KERNEL_WIDTH) -> np.ndarray:
    """Sample weights from the cosine distance between each mask and the all-kept mask."""
    kept = masks.sum(axis=1).astype(np.float64)
    similarity = kept / (np.sqrt(np.maximum(kept, 1e-12)) * np.sqrt(masks.shape[1]))
    distance = 1.0 - np.where(kept > 0, similarity, 0.0)
    return np.sqrt(np.exp(-(distance ** 2) / width ** 2))


def weighted_ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float = LIME_RIDGE_ALPHA):
    """Weighted ridge with an unpenalised intercept: (coef [features, targets], intercept [targets], R^2 [targets])."""
    w = weights / weights.sum()
    x_mean, y_mean = w @ x, w @ y
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ (xc * weights[:, None]) + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, xc.T @ (yc * weights[:, None]))
    intercept = y_mean - x_mean @ coef
    residual = y - (x @ coef + intercept)
    total = (weights[:, None] * yc ** 2).sum(axis=0)
    r2 = 1.0 - (weights[:, None] * residual ** 2).sum(axis=0) / np.where(total > 0, total, 1.0)
    return coef, intercept, r2


def _lime(model: EmotionModel, encoded: _Encoded, label_indices: list[int], *, samples: int, seed: int,
          perturb: str, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, float]]]:
    """-> (contributions [labels, words], scores [labels], baseline scores [labels], diagnostics)."""
    active = [i for i, positions in enumerate(encoded.word_tokens) if positions]
    replacement = None if perturb == "remove" else (model.tokenizer.mask_token_id or model.tokenizer.unk_token_id)
    all_word_positions = {p for i in active for p in encoded.word_tokens[i]}
    masks = lime_masks(len(active), max(samples, 2), seed) if active else np.ones((1, 0), dtype=bool)
    sequences = []
    for mask in masks:
        dropped = {p for keep, i in zip(mask, active) if not keep for p in encoded.word_tokens[i]}
        sequences.append(_perturbed_ids(encoded, dropped, replacement))
    sequences.append(_perturbed_ids(encoded, all_word_positions, replacement))
    scores = label_probabilities(model, sequences, batch_size)[:, label_indices]
    contributions = np.zeros((len(label_indices), len(encoded.word_tokens)))
    diagnostics = [{"samples": float(len(masks))} for _ in label_indices]
    if active:
        coef, intercept, r2 = weighted_ridge(masks.astype(np.float64), scores[:-1], cosine_kernel(masks))
        contributions[:, active] = coef.T
        for j, diag in enumerate(diagnostics):
            diag.update(intercept=float(intercept[j]), fit_r2=float(r2[j]))
    return contributions, scores[0], scores[-1], diagnostics
