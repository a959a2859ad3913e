"""The model as explanations call it: label probabilities of token-id sequences through the engine's one scoring
path (`emocli.inference.engine.score_token_ids`), and the padded batch integrated gradients differentiate."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from emocli.model.io import EmotionModel


def _device(model: EmotionModel):
    import torch

    try:
        return next(model.module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _logits(output: Any):
    return output.logits if hasattr(output, "logits") else (output[0] if isinstance(output, tuple) else output)


def _pad_batch(model: EmotionModel, sequences: Sequence[Sequence[int]]):
    import torch

    pad_id = model.tokenizer.pad_token_id or 0
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    device = _device(model)
    return ids.to(device), mask.to(device)


def label_probabilities(model: EmotionModel, sequences: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
    """Label probabilities [n, labels] (float64, for the regressions) for token id sequences: the engine's
    length-sorted, token-budget batches of at most batch_size rows."""
    from emocli.inference.engine import score_token_ids, scorer_for

    return score_token_ids(scorer_for(model, max_batch_rows=batch_size), sequences).astype(np.float64)
