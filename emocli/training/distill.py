"""Distillation: a fine-tuned teacher's sigmoid scores on unlabeled texts as soft targets for a student.

`finetune --teacher MODEL --unlabeled FILE...` (and `finetune --folds K --distill`, whose teacher is the
cross-fitted ensemble and whose texts include the training texts) adds, at every optimizer step, a BCE-with-soft-targets term
on a batch of unlabeled texts to the labelled loss: loss = labelled + weight * BCE(student, teacher).
The teacher scores each unlabeled text once (before training); its labels are matched to the student's
by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emocli.errors import InputError
from emocli.training.config import DistillConfig


def read_texts(inputs: tuple[str, ...], text_col: str) -> list[str]:
    """Non-empty texts of the column `text_col` of every file (CSV/Parquet, globs, directories)."""
    from emocli.data import expand_inputs
    from emocli.training.labelled import _read_frame

    texts: list[str] = []
    for path in expand_inputs(list(inputs)):
        frame = _read_frame(path)
        if text_col not in frame.columns:
            raise InputError(f"{path}: no text column {text_col!r} (columns: {', '.join(frame.columns)})",
                             hint="name the text column with --text-col")
        texts += [t for t in frame.get_column(text_col).cast(str).to_list() if t is not None and t.strip()]
    if not texts:
        raise InputError(f"{', '.join(inputs)}: no non-empty text in column {text_col!r} to distil on")
    return texts


def teacher_targets(config: DistillConfig, texts: list[str], labels: tuple[str, ...], *,
                    device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """(n, len(labels)) teacher sigmoid scores, columns in the student's label order."""
    from emocli.hub.pull import resolve_model
    from emocli.model.io import load_model
    from emocli.inference.engine import score_texts, scorer_for

    resolved = resolve_model(config.teacher)
    teacher = load_model(resolved.path, resolved.spec, device=device)
    missing = [label for label in labels if label not in teacher.labels]
    if missing:
        raise InputError(f"teacher {config.teacher!r} has no label {missing[0]!r} (it has: {', '.join(teacher.labels)})",
                         hint="distil from a teacher trained on the same labels")
    scores = score_texts(scorer_for(teacher, max_batch_rows=batch_size), texts)
    return scores[:, [teacher.labels.index(label) for label in labels]]


class Distiller:
    """Serves one unlabeled batch per step and returns its soft-target BCE on the student."""

    def __init__(self, tokenizer, texts: list[str], targets: np.ndarray, *, max_length: int, batch_size: int,
                 weight: float, seed: int):
        self.tokenizer = tokenizer
        self.ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        self.targets = targets.astype(np.float32)
        self.batch_size = batch_size
        self.weight = weight
        self.rng = np.random.default_rng(seed)
        self.order: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def _next_index(self) -> list[int]:
        if len(self.order) < self.batch_size:
            self.order += self.rng.permutation(len(self.ids)).tolist()
        index, self.order = self.order[:self.batch_size], self.order[self.batch_size:]
        return index

    def loss(self, module):
        """weight * BCE(student logits, teacher scores) on the next unlabeled batch."""
        import torch
        import torch.nn.functional as F

        index = self._next_index()
        device = next(module.parameters()).device
        batch = self.tokenizer.pad({"input_ids": [self.ids[i] for i in index]}, return_tensors="pt").to(device)
        logits = module(**batch).logits.float()
        soft = torch.from_numpy(self.targets[index]).to(device)
        return self.weight * F.binary_cross_entropy_with_logits(logits, soft)


_CACHE: dict[tuple, tuple[list[str], np.ndarray]] = {}


def _distil_texts(config: DistillConfig, text_col: str, train_texts: list[str]) -> list[str]:
    """The unlabeled files' texts, then (with on_train_texts) the training texts."""
    texts = read_texts(config.unlabeled, text_col) if config.unlabeled else []
    return texts + (list(train_texts) if config.on_train_texts else [])


def prepare(config: DistillConfig, tokenizer, labels: tuple[str, ...], *, text_col: str, max_length: int,
            batch_size: int, seed: int, device: str = "cpu", train_texts: list[str] = ()) -> Distiller | None:
    """The Distiller for a fine-tune, or None without a teacher. Teacher scores are computed once per process."""
    if not config.enabled:
        return None
    train_key = hash(tuple(train_texts)) if config.on_train_texts else None
    key = (config.teacher, config.unlabeled, config.max_texts, text_col, tuple(labels), seed, train_key)
    if key not in _CACHE:
        texts = _distil_texts(config, text_col, train_texts)
        if len(texts) > config.max_texts:
            keep = np.sort(np.random.default_rng(seed).choice(len(texts), config.max_texts, replace=False))
            texts = [texts[i] for i in keep]
        _CACHE[key] = texts, teacher_targets(config, texts, tuple(labels), device=device)
    texts, targets = _CACHE[key]
    return Distiller(tokenizer, texts, targets, max_length=max_length, batch_size=config.batch_size or batch_size,
                     weight=config.weight, seed=seed)


def describe(config: DistillConfig) -> dict:
    """What emocli.json records about the distillation."""
    return {"teacher": config.teacher, "unlabeled": [str(Path(p)) for p in config.unlabeled],
            "on_train_texts": config.on_train_texts, "weight": config.weight,
            "max_texts": config.max_texts} if config.enabled else {}
