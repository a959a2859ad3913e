"""The words of a text and their model tokens; the explanation result types.

Words are regex spans of the text (runs of word characters, each punctuation mark on its own), mapped to
the model's tokens through the fast tokenizer's character offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from emocli.errors import InputError
from emocli.model.io import EmotionModel

WORD_PATTERN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Word:
    """One word of the text: its characters [start, end) and how many model tokens it became (0 = truncated)."""

    text: str
    start: int
    end: int
    n_tokens: int


@dataclass(frozen=True)
class LabelExplanation:
    """Each word's contribution to one label's score (aligned with Explanation.words)."""

    label: str
    score: float
    baseline_score: float
    threshold: float
    predicted: bool
    contributions: tuple[float, ...]
    diagnostics: dict[str, float] = field(default_factory=dict)

    def ranked(self, words: Sequence[Word]) -> list[tuple[Word, float]]:
        """Words with their contributions, largest first."""
        return sorted(zip(words, self.contributions), key=lambda pair: -pair[1])


@dataclass(frozen=True)
class Explanation:
    text: str
    method: str
    words: tuple[Word, ...]
    labels: tuple[LabelExplanation, ...]
    truncated: bool
    params: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # the row id when the text came from a file or the store

    def label(self, name: str) -> LabelExplanation:
        for item in self.labels:
            if item.label == name:
                return item
        raise KeyError(name)

    def top_word(self, name: str) -> str:
        return self.label(name).ranked(self.words)[0][0].text

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "text": self.text,
            "method": self.method,
            "params": self.params,
            "truncated": self.truncated,
            "words": [{"word": w.text, "start": w.start, "end": w.end, "n_tokens": w.n_tokens} for w in self.words],
            "labels": [
                {
                    "label": item.label,
                    "score": item.score,
                    "baseline_score": item.baseline_score,
                    "threshold": item.threshold,
                    "predicted": item.predicted,
                    "contributions": list(item.contributions),
                    **item.diagnostics,
                }
                for item in self.labels
            ],
        }


# ----------------------------------------------------------------------------------- words and tokens


def word_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in WORD_PATTERN.finditer(text)]


@dataclass(frozen=True)
class _Encoded:
    input_ids: tuple[int, ...]
    special: tuple[bool, ...]
    word_tokens: tuple[tuple[int, ...], ...]  # token positions of each word
    truncated: bool


def _token_word(spans: list[tuple[int, int]], starts: np.ndarray, start: int, end: int) -> int | None:
    """The word a token's characters overlap most (None for a token covering no word)."""
    best, best_overlap = None, 0
    lo = int(np.searchsorted(starts, start, side="right")) - 1
    for index in range(max(lo, 0), len(spans)):
        w_start, w_end = spans[index]
        if w_start >= end:
            break
        overlap = min(end, w_end) - max(start, w_start)
        if overlap > best_overlap:
            best, best_overlap = index, overlap
    return best


def _encode(model: EmotionModel, text: str, spans: list[tuple[int, int]]) -> _Encoded:
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"{model.path}: explanations need a fast tokenizer (tokenizer.json) for character offsets")
    encoding = tokenizer(text, truncation=True, max_length=model.info.max_length,
                         return_offsets_mapping=True, return_special_tokens_mask=True)
    ids = list(encoding["input_ids"])
    special = [bool(flag) for flag in encoding["special_tokens_mask"]]
    positions: list[list[int]] = [[] for _ in spans]
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    orphans: list[int] = []  # tokens covering no word (a lone '▁' of sentencepiece): they go with the next word
    last = None
    for position, ((start, end), is_special) in enumerate(zip(encoding["offset_mapping"], special)):
        if is_special:
            continue
        index = _token_word(spans, starts, start, end) if end > start else None
        if index is None:
            orphans.append(position)
            continue
        positions[index] += orphans + [position]
        orphans, last = [], index
    if orphans and last is not None:
        positions[last] += orphans
    full = tokenizer(text, truncation=False, add_special_tokens=True)["input_ids"]
    return _Encoded(tuple(ids), tuple(special), tuple(tuple(p) for p in positions), len(full) > len(ids))
