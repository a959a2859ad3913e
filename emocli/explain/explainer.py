"""Word-level explanations of emotion scores for one text: LIME (`lime`) or integrated gradients (`ig`).

Both methods work on token ids (`words` maps regex words to the model's tokens), so a word's tokens are
perturbed (LIME) or integrated over (IG) together and the text is tokenized once. Nothing heavy is imported
at module level: torch comes in with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from emocli.errors import InputError
from emocli.explain.ig import _integrated_gradients
from emocli.explain.lime import LIME_KERNEL_WIDTH, _lime
from emocli.explain.scoring import label_probabilities
from emocli.explain.words import Explanation, LabelExplanation, Word, _encode, word_spans
from emocli.model.io import EmotionModel

METHODS = ("lime", "integrated-gradients")
METHOD_ALIASES = {"ig": "integrated-gradients", "integrated_gradients": "integrated-gradients"}
DEFAULT_SAMPLES = 500
DEFAULT_STEPS = 64


# ------------------------------------------------------------------------------------------ one text


def normalize_method(method: str) -> str:
    method = METHOD_ALIASES.get(method.lower(), method.lower())
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose lime or integrated-gradients")
    return method


def check_labels(model: EmotionModel, labels: Iterable[str] | None) -> list[str] | None:
    if labels is None:
        return None
    labels = list(dict.fromkeys(labels))
    unknown = [label for label in labels if label not in model.labels]
    if unknown:
        raise InputError(f"unknown label {unknown[0]!r}: the model {model.path.name} has {', '.join(model.labels)}")
    return labels


def _chosen_labels(model: EmotionModel, scores: np.ndarray, labels: list[str] | None) -> list[int]:
    """The requested labels, else the predicted ones, else the single best one (so there is always one)."""
    if labels is not None:
        return [model.labels.index(label) for label in labels]
    predicted = [i for i, t in enumerate(model.info.thresholds) if scores[i] >= t]
    if model.info.task == "single_label" or not predicted:
        return [int(np.argmax(scores))]
    return predicted


@dataclass(frozen=True)
class ExplainConfig:
    """How to attribute: the method and its knobs (LIME: samples, seed, perturb; IG: steps, baseline, rule)."""

    method: str = "lime"
    samples: int = DEFAULT_SAMPLES
    steps: int = DEFAULT_STEPS
    seed: int = 0
    baseline: str = "pad"  # IG: word tokens become [PAD] ("pad") or [MASK] ("mask")
    perturb: str = "remove"  # LIME: a removed word's tokens are dropped ("remove") or become [MASK] ("mask")
    rule: str = "trapezoid"  # IG quadrature: trapezoid (steps + 1 points) or gauss-legendre (steps points)
    batch_size: int = 64

    def __post_init__(self):
        object.__setattr__(self, "method", normalize_method(self.method))
        if self.method == "lime" and self.samples < 2:
            raise InputError("--samples must be at least 2")
        if self.steps < 1:
            raise InputError("--steps must be at least 1")
        if self.baseline not in ("pad", "mask") or self.perturb not in ("remove", "mask"):
            raise InputError("baseline must be pad or mask, perturb remove or mask")

    def params(self) -> dict[str, Any]:
        if self.method == "lime":
            return {"samples": self.samples, "seed": self.seed, "perturb": self.perturb,
                    "kernel_width": LIME_KERNEL_WIDTH}
        return {"steps": self.steps, "baseline": self.baseline, "rule": self.rule}


def explain_text(model: EmotionModel, text: str, labels: Sequence[str] | None = None, *, method: str = "lime",
                 samples: int = DEFAULT_SAMPLES, seed: int = 0, steps: int = DEFAULT_STEPS, baseline: str = "pad",
                 perturb: str = "remove", rule: str = "trapezoid", batch_size: int = 64,
                 key: str | None = None) -> Explanation:
    """Each word's contribution to each chosen label's score (predicted labels unless `labels` is given)."""
    config = ExplainConfig(method, samples, steps, seed, baseline, perturb, rule, batch_size)
    return explain_with(model, text, labels, config, key=key)


def explain_with(model: EmotionModel, text: str, labels: Sequence[str] | None, config: ExplainConfig, *,
                 key: str | None = None) -> Explanation:
    label_names = check_labels(model, labels)
    spans = word_spans(text)
    encoded = _encode(model, text, spans)
    full_scores = label_probabilities(model, [encoded.input_ids])[0]
    label_indices = _chosen_labels(model, full_scores, label_names)
    if config.method == "lime":
        contributions, scores, base_scores, diagnostics = _lime(
            model, encoded, label_indices, samples=config.samples, seed=config.seed, perturb=config.perturb,
            batch_size=config.batch_size)
    else:
        contributions, scores, base_scores, diagnostics = _integrated_gradients(
            model, encoded, label_indices, steps=config.steps, baseline=config.baseline, rule=config.rule,
            batch_size=min(config.batch_size, 32))
    words = tuple(Word(text[s:e], s, e, len(p)) for (s, e), p in zip(spans, encoded.word_tokens))
    thresholds = model.info.thresholds
    if model.info.task == "single_label":
        predicted = [i == int(np.argmax(full_scores)) for i in range(len(model.labels))]
    else:
        predicted = [bool(full_scores[i] >= t) for i, t in enumerate(thresholds)]
    results = tuple(
        LabelExplanation(
            label=model.labels[index], score=float(scores[j]), baseline_score=float(base_scores[j]),
            threshold=float(thresholds[index]), predicted=predicted[index],
            contributions=tuple(float(c) for c in contributions[j]), diagnostics=diagnostics[j])
        for j, index in enumerate(label_indices))
    return Explanation(text, config.method, words, results, encoded.truncated, config.params(), key)
