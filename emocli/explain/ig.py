"""Integrated gradients.

The label's score (sigmoid or softmax probability) is integrated along the straight line from a baseline
(every word token replaced by [PAD] or [MASK], [CLS]/[SEP] kept) to the text in the input-embedding space;
a token's attribution is sum_h (x - x')_h * mean gradient_h. Completeness: the attributions sum to
score(text) - score(baseline) up to the quadrature error, reported per label as `completeness_gap`. With
the default 64 Gauss-Legendre steps the gap is below 1e-2 of |score - baseline score| (the tests hold it
to that; see IG_RELATIVE_TOLERANCE).
"""

from __future__ import annotations

import numpy as np

from emocli.errors import InputError
from emocli.explain.scoring import _logits, _pad_batch
from emocli.inference.engine import activate
from emocli.explain.words import _Encoded
from emocli.model.io import EmotionModel

IG_RELATIVE_TOLERANCE = 1e-2  # stated completeness bound at the default steps (64, Gauss-Legendre)


# ------------------------------------------------------------------------------ integrated gradients


def path_points(steps: int, rule: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
    """Points alpha in [0, 1] and quadrature weights for integrating along the path (weights sum to 1)."""
    if steps < 1:
        raise InputError("--steps must be at least 1")
    if rule == "gauss-legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2.0
        return alphas, weights
    raise InputError(f"unknown integration rule {rule!r} (gauss-legendre or trapezoid)")


def _baseline_ids(model: EmotionModel, encoded: _Encoded, baseline: str) -> list[int]:
    tokenizer = model.tokenizer
    token = tokenizer.pad_token_id if baseline == "pad" else tokenizer.mask_token_id
    if token is None:
        raise InputError(f"{model.path}: the tokenizer has no [{baseline.upper()}] token for the IG baseline")
    return [t if is_special else token for t, is_special in zip(encoded.input_ids, encoded.special)]


def _integrated_gradients(model: EmotionModel, encoded: _Encoded, label_indices: list[int], *, steps: int,
                          baseline: str, rule: str, batch_size: int):
    """-> (contributions [labels, words], scores [labels], baseline scores [labels], diagnostics)."""
    import torch

    module = model.module
    embeddings = module.get_input_embeddings()
    if embeddings is None:
        raise InputError(f"{model.path}: the model exposes no input embeddings; use --method lime")
    base_ids = _baseline_ids(model, encoded, baseline)
    ids, mask = _pad_batch(model, [list(encoded.input_ids), base_ids])
    with torch.no_grad():
        endpoints = embeddings(ids).float()
        logits = _logits(module(input_ids=ids, attention_mask=mask))
        endpoint_scores = activate(logits, model.info.task)[:, label_indices]
    x, x_base = endpoints[0], endpoints[1]
    delta = x - x_base
    alphas, weights = path_points(steps, rule)
    grad_sums = torch.zeros((len(label_indices), *x.shape), device=x.device)
    dtype = next(module.parameters()).dtype
    for begin in range(0, len(alphas), batch_size):
        alpha = torch.tensor(alphas[begin: begin + batch_size], dtype=torch.float32, device=x.device)
        weight = torch.tensor(weights[begin: begin + batch_size], dtype=torch.float32, device=x.device)
        path = (x_base + alpha[:, None, None] * delta).requires_grad_(True)
        handle = embeddings.register_forward_hook(lambda _module, _inputs, _output: path.to(dtype))
        try:
            with torch.enable_grad():
                n = len(alpha)
                logits = _logits(module(input_ids=ids[:1].expand(n, -1), attention_mask=mask[:1].expand(n, -1)))
                probs = activate(logits, model.info.task)
                for j, label_index in enumerate(label_indices):
                    (grad,) = torch.autograd.grad(probs[:, label_index].sum(), path,
                                                  retain_graph=j < len(label_indices) - 1)
                    grad_sums[j] += (weight[:, None, None] * grad.float()).sum(dim=0)
        finally:
            handle.remove()
    token_attributions = (grad_sums * delta[None]).sum(dim=-1).cpu().numpy().astype(np.float64)
    contributions = np.array([[row[list(positions)].sum() if positions else 0.0
                               for positions in encoded.word_tokens] for row in token_attributions])
    scores = endpoint_scores[0].cpu().numpy().astype(np.float64)
    baseline_scores = endpoint_scores[1].cpu().numpy().astype(np.float64)
    diagnostics = []
    for j in range(len(label_indices)):
        total = float(token_attributions[j].sum())
        expected = float(scores[j] - baseline_scores[j])
        gap = abs(total - expected)
        diagnostics.append({"steps": float(steps), "attribution_sum": total, "completeness_gap": gap,
                            "completeness_relative_gap": gap / max(abs(expected), 1e-6)})
    return contributions, scores, baseline_scores, diagnostics
