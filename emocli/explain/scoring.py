"""Label probabilities of token-id sequences (the model's forward pass as explanations use it).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from emocli.model.io import EmotionModel


# ------------------------------------------------------------------------------------------- scoring


def _device(model: EmotionModel):
    import torch

    try:
        return next(model.module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _logits(output: Any):
    return output.logits if hasattr(output, "logits") else (output[0] if isinstance(output, tuple) else output)


def _activate(model: EmotionModel, logits):
    import torch

    logits = logits.float()
    return torch.softmax(logits, dim=-1) if model.info.task == "single_label" else torch.sigmoid(logits)


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


def score_token_ids(model: EmotionModel, sequences: Sequence[Sequence[int]], batch_size: int = 64) -> np.ndarray:
    """Label probabilities [n, labels] for token id sequences, batched by length to pad little."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = np.zeros((len(sequences), len(model.labels)), dtype=np.float64)
    with torch.inference_mode():
        for begin in range(0, len(order), batch_size):
            chunk = order[begin: begin + batch_size]
            ids, mask = _pad_batch(model, [sequences[i] for i in chunk])
            probs = _activate(model, _logits(model.module(input_ids=ids, attention_mask=mask)))
            scores[chunk] = probs.cpu().numpy()
    return scores
