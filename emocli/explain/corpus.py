"""Corpus-level explanations: the label explained on the top stored texts of each group, words aggregated.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from emocli.errors import InputError
from emocli.explain.explainer import ExplainConfig, check_labels, explain_with
from emocli.explain.words import Explanation
from emocli.model.io import EmotionModel
from emocli.progress import Progress, chosen
from emocli.store.core import check_table_name


# --------------------------------------------------------------------------------------- corpus level


@dataclass(frozen=True)
class CorpusConfig:
    """Which stored texts to explain and how to aggregate their words."""

    label: str
    by: str | None = None
    k: int = 200
    table: str = "scores"
    run: str | None = None
    id_col: str = "id"
    min_count: int = 3
    top: int = 15
    rank: str = "mean"  # mean: mean contribution per occurrence; total: summed over occurrences

    def __post_init__(self):
        if self.k < 1:
            raise InputError("-k must be at least 1")
        if self.rank not in RANKINGS:
            raise InputError(f"unknown --rank {self.rank!r}: choose mean or total")
        check_table_name(self.table)


RANKINGS = ("mean", "total")


@dataclass(frozen=True)
class StoreText:
    group: Any
    key: str
    text: str
    score: float


@dataclass(frozen=True)
class WordDriver:
    word: str
    mean_contribution: float
    total_contribution: float
    occurrences: int
    texts: int


@dataclass(frozen=True)
class GroupDrivers:
    group: Any
    n_texts: int
    mean_score: float
    words: tuple[WordDriver, ...]


@dataclass(frozen=True)
class CorpusExplanation:
    corpus: CorpusConfig
    method: str
    groups: tuple[GroupDrivers, ...]

    def to_dict(self) -> dict[str, Any]:
        c = self.corpus
        return {
            "label": c.label, "method": self.method, "by": c.by, "k": c.k, "table": c.table, "run": c.run,
            "min_count": c.min_count, "rank": c.rank,
            "groups": [{"group": g.group, "n_texts": g.n_texts, "mean_score": g.mean_score,
                        "words": [vars(w) for w in g.words]} for g in self.groups],
        }



def aggregate_drivers(explanations: Sequence[Explanation], label: str, *, min_count: int = 3, top: int = 15,
                      rank: str = "mean") -> tuple[WordDriver, ...]:
    """Contribution per (lower-cased) word over its occurrences; punctuation and rarer words left out."""
    values: dict[str, list[float]] = defaultdict(list)
    texts: dict[str, int] = defaultdict(int)
    for explanation in explanations:
        item = explanation.label(label)
        seen = set()
        for word, value in zip(explanation.words, item.contributions):
            if word.n_tokens == 0 or not any(ch.isalnum() for ch in word.text):
                continue
            name = word.text.lower()
            values[name].append(value)
            seen.add(name)
        for name in seen:
            texts[name] += 1
    drivers = [WordDriver(name, float(np.mean(vals)), float(np.sum(vals)), len(vals), texts[name])
               for name, vals in values.items() if len(vals) >= min_count]
    by_total = rank == "total"
    drivers.sort(key=lambda d: (-(d.total_contribution if by_total else d.mean_contribution), d.word))
    return tuple(drivers[:top])


def explain_corpus(model: EmotionModel, rows: Sequence[StoreText], corpus: CorpusConfig, config: ExplainConfig,
                   progress: Progress | None = None) -> CorpusExplanation:
    """Explain the label on each stored text and aggregate word contributions per group."""
    check_labels(model, [corpus.label])
    progress = chosen(progress)
    progress.start(f"explaining {corpus.label}", len(rows), "texts")
    try:
        groups = [_group_drivers(model, group, members, corpus, config, progress)
                  for group, members in _by_group(rows).items()]
    finally:
        progress.finish()
    return CorpusExplanation(corpus, config.method, tuple(groups))


def _by_group(rows: Sequence[StoreText]) -> dict[Any, list[StoreText]]:
    grouped: dict[Any, list[StoreText]] = {}
    for row in rows:
        grouped.setdefault(row.group, []).append(row)
    return grouped


def _group_drivers(model: EmotionModel, group: Any, members: list[StoreText], corpus: CorpusConfig,
                   config: ExplainConfig, progress: Progress) -> GroupDrivers:
    explanations = []
    for row in members:
        explanations.append(explain_with(model, row.text, [corpus.label], config, key=row.key))
        progress.advance(1)
    drivers = aggregate_drivers(explanations, corpus.label, min_count=corpus.min_count, top=corpus.top,
                                rank=corpus.rank)
    return GroupDrivers(group, len(members), float(np.mean([r.score for r in members])), drivers)
