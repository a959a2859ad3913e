"""Word-level explanations of emotion scores: LIME and integrated gradients, for one text or a corpus.

Words are regex spans of the text (runs of word characters, each punctuation mark on its own), mapped to
the model's tokens through the fast tokenizer's character offsets. Both methods work on token ids, so a
word's tokens are perturbed (LIME) or integrated over (IG) together and the text is tokenized once.

- LIME: random subsets of words are removed (or replaced by [MASK]); the perturbed inputs are scored
  in batches and a ridge regression weighted by an exponential kernel on the cosine distance to the
  full text gives each word's local linear contribution to the label's score.
- Integrated gradients: the label's score (sigmoid or softmax probability) is integrated along the
  straight line from a baseline (every word token replaced by [PAD] or [MASK], [CLS]/[SEP] kept) to
  the text in the input-embedding space; a token's attribution is sum_h (x - x')_h * mean gradient_h.
  Completeness: the attributions sum to score(text) - score(baseline) up to the quadrature error,
  reported per label as `completeness_gap`. With the default 64 Gauss-Legendre steps the gap is
  below 1e-2 of |score - baseline score| (the tests hold it to that; see IG_RELATIVE_TOLERANCE).

Nothing heavy is imported at module level: torch comes in with the model.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from emocli.errors import InputError, StoreError
from emocli.model.io import EmotionModel
from emocli.progress import Progress, chosen
from emocli.store.connect import open_read_only
from emocli.store.core import check_table_name, quote

METHODS = ("lime", "integrated-gradients")
METHOD_ALIASES = {"ig": "integrated-gradients", "integrated_gradients": "integrated-gradients"}
WORD_PATTERN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
LIME_KERNEL_WIDTH = 0.25  # on cosine distance in [0, 1]; LIME's text default of 25 on a 0-100 scale
LIME_RIDGE_ALPHA = 1.0
IG_RELATIVE_TOLERANCE = 1e-2  # stated completeness bound at the default steps (64, Gauss-Legendre)
DEFAULT_SAMPLES = 500
DEFAULT_STEPS = 64


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


# --------------------------------------------------------------------------------------------- LIME


def lime_masks(n_words: int, samples: int, seed: int) -> np.ndarray:
    """[samples, n_words] booleans, True = word kept. Row 0 is the whole text; each other row removes a
    uniformly drawn number (1..n) of uniformly drawn words, as LIME does for text."""
    rng = np.random.default_rng(seed)
    masks = np.ones((samples, n_words), dtype=bool)
    for row in range(1, samples):
        n_removed = int(rng.integers(1, n_words + 1))
        masks[row, rng.choice(n_words, size=n_removed, replace=False)] = False
    return masks


def _perturbed_ids(encoded: _Encoded, dropped_positions: set[int], replacement: int | None) -> list[int]:
    if replacement is None:
        return [t for i, t in enumerate(encoded.input_ids) if i not in dropped_positions]
    return [replacement if i in dropped_positions else t for i, t in enumerate(encoded.input_ids)]


def cosine_kernel(masks: np.ndarray, width: float = LIME_KERNEL_WIDTH) -> np.ndarray:
    """Sample weights from the cosine distance between each mask and the all-kept mask."""
    kept = masks.sum(axis=1).astype(np.float64)
    similarity = kept / (np.sqrt(np.maximum(kept, 1e-12)) * np.sqrt(masks.shape[1]))
    distance = 1.0 - np.where(kept > 0, similarity, 0.0)
    return np.sqrt(np.exp(-(distance ** 2) / width ** 2))


def weighted_ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float = LIME_RIDGE_ALPHA):
    """Weighted ridge with an unpenalised intercept: (coef [features, targets], intercept [targets], R^2 [targets])."""
    w = weights / weights.sum()
    x_mean, y_mean = w @ x, w @ y
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ (xc * weights[:, None]) + alpha * np.eye(x.shape[1])
    coef = np.linalg.solve(gram, xc.T @ (yc * weights[:, None]))
    intercept = y_mean - x_mean @ coef
    residual = y - (x @ coef + intercept)
    total = (weights[:, None] * yc ** 2).sum(axis=0)
    r2 = 1.0 - (weights[:, None] * residual ** 2).sum(axis=0) / np.where(total > 0, total, 1.0)
    return coef, intercept, r2


def _lime(model: EmotionModel, encoded: _Encoded, label_indices: list[int], *, samples: int, seed: int,
          perturb: str, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, float]]]:
    """-> (contributions [labels, words], scores [labels], baseline scores [labels], diagnostics)."""
    active = [i for i, positions in enumerate(encoded.word_tokens) if positions]
    replacement = None if perturb == "remove" else (model.tokenizer.mask_token_id or model.tokenizer.unk_token_id)
    all_word_positions = {p for i in active for p in encoded.word_tokens[i]}
    masks = lime_masks(len(active), max(samples, 2), seed) if active else np.ones((1, 0), dtype=bool)
    sequences = []
    for mask in masks:
        dropped = {p for keep, i in zip(mask, active) if not keep for p in encoded.word_tokens[i]}
        sequences.append(_perturbed_ids(encoded, dropped, replacement))
    sequences.append(_perturbed_ids(encoded, all_word_positions, replacement))
    scores = score_token_ids(model, sequences, batch_size)[:, label_indices]
    contributions = np.zeros((len(label_indices), len(encoded.word_tokens)))
    diagnostics = [{"samples": float(len(masks))} for _ in label_indices]
    if active:
        coef, intercept, r2 = weighted_ridge(masks.astype(np.float64), scores[:-1], cosine_kernel(masks))
        contributions[:, active] = coef.T
        for j, diag in enumerate(diagnostics):
            diag.update(intercept=float(intercept[j]), fit_r2=float(r2[j]))
    return contributions, scores[0], scores[-1], diagnostics


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
        endpoint_scores = _activate(model, _logits(module(input_ids=ids, attention_mask=mask)))[:, label_indices]
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
                probs = _activate(model, _logits(module(input_ids=ids[:1].expand(n, -1),
                                                        attention_mask=mask[:1].expand(n, -1))))
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
    full_scores = score_token_ids(model, [encoded.input_ids])[0]
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


# --------------------------------------------------------------------------------------------- HTML


def _cell_colour(value: float, scale: float) -> str:
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    rgb = "220, 38, 38" if value > 0 else "37, 99, 235"
    return f"rgba({rgb}, {0.85 * strength:.3f})"


def _html_label(explanation: Explanation, item: LabelExplanation) -> str:
    scale = max((abs(c) for c in item.contributions), default=0.0)
    parts, cursor = [], 0
    for word, value in zip(explanation.words, item.contributions):
        parts.append(html.escape(explanation.text[cursor: word.start]))
        parts.append(f'<span class="w" style="background:{_cell_colour(value, scale)}" '
                     f'title="{value:+.4f}">{html.escape(word.text)}</span>')
        cursor = word.end
    parts.append(html.escape(explanation.text[cursor:]))
    flag = "predicted" if item.predicted else "not predicted"
    return (f'<div class="label"><div class="head"><b>{html.escape(item.label)}</b> score {item.score:.3f} '
            f'(baseline {item.baseline_score:.3f}, threshold {item.threshold:.2f}, {flag})</div>'
            f'<p class="text">{"".join(parts)}</p></div>')


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #111; }
h1 { font-size: 1.3rem; } .meta { color: #555; font-size: .9rem; }
section { border-top: 1px solid #ddd; padding: .8rem 0; }
.text { line-height: 2; font-size: 1.05rem; } .w { padding: .1rem .15rem; border-radius: .2rem; }
.head { font-size: .9rem; color: #333; } .legend span { padding: 0 .4rem; border-radius: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; } td, th { padding: .2rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


def html_page(title: str, body: str, meta: str = "") -> str:
    legend = ('<p class="legend"><span style="background:rgba(220,38,38,.7)">raises the score</span> '
              '<span style="background:rgba(37,99,235,.7)">lowers it</span></p>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(meta)}</p>{legend}{body}</body></html>\n")


def explanations_html(explanations: Sequence[Explanation], model_name: str) -> str:
    """One self-contained page (inline CSS, no scripts or external assets) for several texts."""
    sections = []
    for number, explanation in enumerate(explanations, 1):
        name = html.escape(explanation.key) if explanation.key is not None else str(number)
        labels = "".join(_html_label(explanation, item) for item in explanation.labels)
        sections.append(f'<section><div class="meta">text {name}</div>{labels}</section>')
    method = explanations[0].method if explanations else ""
    return html_page("emocli explain", "".join(sections), f"model {model_name} · method {method}")


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


def _table_columns(con, table: str) -> dict[str, str]:
    rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
    return {name: kind for name, kind in rows}


def _require_column(columns: dict[str, str], name: str, db: Path, table: str, hint: str | None = None) -> None:
    if name not in columns:
        raise StoreError(f"{db}: table {table!r} has no column {name!r}", hint=hint)


def open_store(db: Path):
    return open_read_only(db, missing_hint="tag texts first: emocli tag FILE --keep-text")


def top_texts(db: Path, corpus: CorpusConfig) -> list[StoreText]:
    """The k highest-scoring texts for the label in each group of `by` (or overall), read from the store."""
    table, label, by, run = corpus.table, corpus.label, corpus.by, corpus.run
    with open_store(db) as con:
        columns = _table_columns(con, table)
        if not columns:
            raise StoreError(f"{db}: no table {table!r}", hint="pass --table, or tag texts first with `emocli tag`")
        _require_column(columns, label, db, table, hint="no run in this store scored that label")
        _require_column(columns, "text", db, table, hint="re-tag with `emocli tag --keep-text` to keep the texts")
        if by is not None:
            _require_column(columns, by, db, table)
        if run is not None:
            _require_column(columns, "run_id", db, table)
            if not con.execute(f"SELECT 1 FROM {quote(table)} WHERE run_id = ? LIMIT 1", [run]).fetchone():
                raise StoreError(f"{db}: no rows of run {run!r} in table {table!r}")
        key = quote(corpus.id_col) if corpus.id_col in columns else "NULL"
        group = quote(by) if by is not None else "NULL"
        score = quote(label)
        run_filter = "AND run_id = ?" if run is not None else ""
        sql = (f"SELECT {group} AS grp, CAST({key} AS VARCHAR) AS key, text, {score} AS score "
               f"FROM {quote(table)} WHERE {score} IS NOT NULL AND text IS NOT NULL {run_filter} "
               f"QUALIFY row_number() OVER (PARTITION BY {group} ORDER BY {score} DESC, key) <= ? "
               f"ORDER BY grp NULLS LAST, score DESC")
        rows = con.execute(sql, ([run] if run is not None else []) + [corpus.k]).fetchall()
    return [StoreText(grp, key, text, float(score)) for grp, key, text, score in rows]


def store_model_ref(db: Path, corpus: CorpusConfig) -> str | None:
    """The model of the latest run that wrote the label into the table (or of --run), from the `runs` table."""
    with open_store(db) as con:
        runs = _table_columns(con, "runs")
        if not {"run_id", "model", "labels", "table_name"} <= set(runs):
            return None
        sql = ("SELECT model FROM runs WHERE table_name = ? AND list_contains(labels, ?) "
               + ("AND run_id = ? " if corpus.run is not None else "")
               + ("ORDER BY started_at DESC NULLS LAST " if "started_at" in runs else "") + "LIMIT 1")
        params = [corpus.table, corpus.label] + ([corpus.run] if corpus.run is not None else [])
        row = con.execute(sql, params).fetchone()
    return row[0] if row and row[0] else None


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


def corpus_html(result: CorpusExplanation, model_name: str) -> str:
    corpus, sections = result.corpus, []
    for group in result.groups:
        title = "all texts" if corpus.by is None else f"{corpus.by} = {group.group}"
        rows = "".join(f"<tr><td>{html.escape(w.word)}</td><td>{w.mean_contribution:+.4f}</td>"
                       f"<td>{w.total_contribution:+.3f}</td><td>{w.occurrences}</td><td>{w.texts}</td></tr>"
                       for w in group.words)
        sections.append(f"<section><b>{html.escape(title)}</b> · {group.n_texts} texts, mean "
                        f"{html.escape(corpus.label)} score {group.mean_score:.3f}<table><tr><th>word</th>"
                        f"<th>mean contribution</th><th>total</th><th>occurrences</th><th>texts</th></tr>{rows}"
                        "</table></section>")
    return html_page(f"What drives {corpus.label}", "".join(sections),
                     f"model {model_name} · method {result.method} · top {corpus.k} texts per group")
