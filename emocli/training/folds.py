"""Cross-fitting (`finetune --folds K`): K members, each trained on K-1 folds of the labelled rows and
early-stopped on its own held-out fold; their held-out predictions form the out-of-fold scores of every
row, on which the ensemble's per-class thresholds are tuned (about 25x the rows of BRIGHTER's English dev).

This module owns the folds and the bookkeeping; the training of one member is handed in by
`emocli.training.finetune` (`train_member`), so there is one training loop. The saved ensemble is
`emocli.model.ensemble`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from emocli.progress import Progress
from emocli.training.labelled import LabelledData

ENSEMBLE_DIR = "ensemble"  # with --distill the ensemble (the teacher) is kept here, inside the student's directory
OPTIMISTIC_OOF = ("out-of-fold: each row scored by the member that did not train on it, but its fold chose that "
                  "member's epoch and all of them tuned the thresholds: optimistic")


def fold_index(n: int, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint sorted row sets covering range(n), drawn with the seed."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


@dataclass
class Member:
    """What the loop keeps of one trained member (its weights are already saved in out_dir)."""

    out_dir: Path
    seed: int
    best_epoch: int
    fold_scores: np.ndarray  # on its held-out fold, at the kept epoch
    score_scores: np.ndarray | None  # on the headline rows, None without them
    history: list[dict] = field(default_factory=list)
    architecture: str = "transformers"


@dataclass
class CrossFit:
    folds: list[np.ndarray]
    members: list[Member]
    oof: np.ndarray  # (rows, labels): every row scored by the member that did not train on it
    seed: int

    def score_scores(self) -> np.ndarray | None:
        """The ensemble's scores on the headline rows: the mean of its members' probabilities."""
        parts = [m.score_scores for m in self.members]
        return None if any(p is None for p in parts) else np.mean(parts, axis=0)

    def record(self) -> dict:
        """What emocli.json says about the folds and seeds."""
        return {"folds": len(self.folds), "fold_seed": self.seed, "fold_rows": [len(f) for f in self.folds],
                "member_seeds": [m.seed for m in self.members],
                "member_best_epochs": [m.best_epoch for m in self.members]}

    def history(self) -> list[dict]:
        return [{"member": i, **record} for i, m in enumerate(self.members) for record in m.history]


TrainMember = Callable[[int, LabelledData, LabelledData], Member]


def cross_fit(rows: LabelledData, k: int, seed: int, train_member: TrainMember, progress: Progress) -> CrossFit:
    """Train member i on every fold but i (early-stopped on fold i); collect the out-of-fold scores."""
    folds = fold_index(len(rows), k, seed)
    oof = np.zeros(rows.targets.shape, dtype=np.float32)
    members = []
    for i, held in enumerate(folds):
        progress.log(f"member {i + 1}/{k}: {len(rows) - len(held)} rows train, {len(held)} stop it")
        rest = np.setdiff1d(np.arange(len(rows)), held)
        member = train_member(i, rows.subset(rest), rows.subset(held))
        oof[held] = member.fold_scores
        members.append(member)
    return CrossFit(folds, members, oof, seed)


def student_rows(rows: LabelledData, cross: CrossFit) -> tuple[LabelledData, LabelledData]:
    """The distilled student trains on every fold but the first and is stopped and tuned on that one, so its
    thresholds come from rows it did not train on."""
    held = cross.folds[0]
    return rows.subset(np.setdiff1d(np.arange(len(rows)), held)), rows.subset(held)


__all__ = ["ENSEMBLE_DIR", "OPTIMISTIC_OOF", "CrossFit", "Member", "cross_fit", "fold_index", "student_rows"]
