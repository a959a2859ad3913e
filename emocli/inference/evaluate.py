"""`emocli evaluate`: a saved model's metrics on labelled files, overall and per language.

    from emocli.inference.evaluate import EvalConfig, evaluate
    report = evaluate(EvalConfig("m", ("data/dev/eng.csv",)))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocli.training.labelled import LabelledData, load_labelled
from emocli.training.config import EvalConfig  # numpy-free, so the CLI reads its defaults cheaply
from emocli.training.metrics import compute_metrics



@dataclass
class LabelledScores:
    """A model's scores on labelled data, so metrics under several thresholds need one forward pass."""
    model: str
    path: Path
    data: LabelledData
    scores: np.ndarray  # (n, L) probabilities
    model_thresholds: np.ndarray  # (L,)
    max_length: int

    def report(self, threshold: float | None = None) -> dict:
        """Metrics overall and per language, under the model's thresholds or one `threshold` for every label."""
        data = self.data
        thresholds = (np.full(len(data.labels), threshold) if threshold is not None else self.model_thresholds)
        report = {"model": self.model, "path": str(self.path), "files": [str(f) for f in data.files],
                  "skipped_texts": data.skipped_texts, "max_length": self.max_length,
                  **compute_metrics(self.scores, data.targets, data.mask, thresholds, data.labels)}
        languages = data.language_set
        if len(languages) > 1:
            report["by_language"] = {}
            for language in languages:
                rows = np.array([lang == language for lang in data.languages])
                report["by_language"][language] = compute_metrics(self.scores[rows], data.targets[rows],
                                                                  data.mask[rows], thresholds, data.labels)
        return report


def score_labelled(config: EvalConfig) -> LabelledScores:
    """Load the model and the labelled files and score every text once."""
    from emocli.hub.pull import resolve_model
    from emocli.model.io import load_model
    from emocli.inference.engine import score_texts, scorer_for

    resolved = resolve_model(config.model)
    model = load_model(resolved.path, resolved.spec, device=config.device)
    data = load_labelled(config.data, config.spec, labels=model.labels)
    max_length = config.max_length or model.info.max_length
    scores = score_texts(scorer_for(model, max_length=max_length, max_batch_rows=config.batch_size), data.texts)
    return LabelledScores(resolved.name, Path(resolved.path), data, scores, np.array(model.info.thresholds),
                          max_length)


def evaluate(config: EvalConfig) -> dict:
    """Metrics of a saved model on labelled files, overall and per language; the model's thresholds by default."""
    return score_labelled(config).report(config.threshold)


__all__ = ["EvalConfig", "LabelledScores", "evaluate", "score_labelled"]
