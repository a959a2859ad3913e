"""The honest headline: which labelled rows train, which tune, and which are held out of everything to score.

`finetune` reports its quality on rows that chose nothing: not the weights, not the epoch, not the
thresholds. By default that is `score_fraction` of the training rows (per language, fixed by the seed),
held out before anything trains; with `dev_held_out` it is the dev set, then used for nothing else. The
dev-tuned figure (dev chose the epoch and the thresholds) is still reported, labelled as optimistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emocli.training.config import HEADLINE_MIN_ROWS, TrainConfig
from emocli.training.labelled import LabelledData
from emocli.training.metrics import compute_metrics

NO_HEADLINE = ("no held-out figure: {why}; every figure here was scored on rows that also chose the epoch or the "
               "thresholds (optimistic)")
OPTIMISTIC_DEV = "the same dev rows chose the epoch and the thresholds: optimistic"


@dataclass
class Rows:
    """The labelled rows of one fine-tune, by role."""

    fit: LabelledData  # trains (with --folds: what the folds split, dev included)
    tune: LabelledData | None  # one model's early stopping and thresholds (dev), None with --folds or no dev
    score: LabelledData | None  # held out of everything: the headline
    scored_on: str  # what `score` is, in words


def held_out_index(languages: list[str | None], fraction: float, seed: int) -> np.ndarray:
    """round(fraction * rows) of each language's rows, drawn with the seed; sorted row numbers."""
    rng = np.random.default_rng(seed)
    language = np.array([lang or "" for lang in languages], dtype=object)
    picked = []
    for lang in sorted(set(language)):
        rows = np.flatnonzero(language == lang)
        picked.append(rng.choice(rows, int(round(fraction * len(rows))), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=int)


def join(first: LabelledData, second: LabelledData) -> LabelledData:
    """Rows of both (same labels, in the same order: dev is loaded on train's labels)."""
    return LabelledData(first.texts + second.texts, np.concatenate([first.targets, second.targets]),
                        np.concatenate([first.mask, second.mask]), first.languages + second.languages, first.labels,
                        first.files + second.files, first.skipped_texts + second.skipped_texts, first.dropped_labels,
                        {**first.fingerprints, **second.fingerprints})


def plan_rows(config: TrainConfig, train: LabelledData, dev: LabelledData | None) -> Rows:
    """Split the labelled rows into what trains, what tunes one model and what only scores."""
    if config.dev_held_out:
        return Rows(train, None, dev, f"the {len(dev)} dev rows, declared held out (--dev-held-out)")
    pool, tune = (join(train, dev), None) if config.ensemble.enabled and dev is not None else (train, dev)
    held = held_out_index(pool.languages, config.score_fraction, config.seed)
    if len(held) < HEADLINE_MIN_ROWS:
        return Rows(pool, tune, None, "")
    rest = np.setdiff1d(np.arange(len(pool)), held)
    where = "train + dev" if pool is not train else "train"
    return Rows(pool.subset(rest), tune, pool.subset(held),
                f"{len(held)} rows held out of {where} ({config.score_fraction:.0%} per language, seed {config.seed})")


def headline(rows: Rows, scores: np.ndarray | None, thresholds: np.ndarray, score_fraction: float) -> dict:
    """The figure to print first: metrics on the held-out rows at the saved thresholds, or why there is none."""
    if rows.score is None or scores is None:
        why = ("--score-fraction 0" if score_fraction == 0 else
               f"{score_fraction:.0%} of the rows is under {HEADLINE_MIN_ROWS} rows")
        return {"scored_on": None, "warning": NO_HEADLINE.format(why=why)}
    metrics = compute_metrics(scores, rows.score.targets, rows.score.mask, thresholds, rows.score.labels)
    return {"scored_on": rows.scored_on, "note": "these rows trained, stopped and tuned nothing", **metrics}


__all__ = ["OPTIMISTIC_DEV", "Rows", "headline", "held_out_index", "join", "plan_rows"]
