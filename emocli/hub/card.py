"""The model card (README.md) `emocli push` writes: the Hub's YAML metadata plus a body that explains the model.

The metadata is built with huggingface_hub's `ModelCardData` / `EvalResult` (model-index) and emitted by
its own YAML writer; the body is Markdown: labels and thresholds, usage with plain transformers and with
emocli, dev metrics per language as `finetune` measured them (and on what), the training recipe, the data
fingerprints, intended use and limitations. Everything comes from `emocli.json`; no network, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emocli.data import language_from_filename
from emocli.model.info import ModelInfo

TASK_TYPE = "text-classification"
TASK_NAME = "Multi-label emotion classification"
BASE_TAGS = ("multi-label-classification", "emotion", "emocli")
BRIGHTER_DATASET = "brighter-dataset/BRIGHTER-emotion-categories"
# BRIGHTER's own file codes that are not ISO 639-3; every other BRIGHTER code already is one.
BRIGHTER_TO_ISO = {"chn": "zho", "esp": "spa", "ptbr": "por", "ptmz": "por"}
EXAMPLE_TEXTS = ["I can't believe they cancelled the trip again.", "What a wonderful surprise, thank you!"]


@dataclass(frozen=True)
class CardOptions:
    repo_id: str
    license: str | None = None  # None: the base model's license from the registry, else "other"
    datasets: tuple[str, ...] = ()  # Hub dataset ids; (): derived from the training files
    files: tuple[str, ...] = ()  # what the push uploads next to the card


@dataclass(frozen=True)
class DevResult:
    """Dev figures for one language (or for all dev rows pooled, language None)."""

    language: str | None
    rows: int | None
    macro_f1: float
    micro_f1: float


# ---- what emocli.json says -----------------------------------------------------------------------------------

def training_languages(info: ModelInfo) -> list[str]:
    """ISO 639-3 codes of the training data: emocli.json's `languages` when finetune recorded them, else the
    language codes it recorded for the training rows (BRIGHTER's file codes mapped to ISO 639-3)."""
    recorded = info.extra.get("languages")
    if recorded:
        return sorted(dict.fromkeys(str(code) for code in recorded))
    codes = (info.extra.get("data") or {}).get("languages") or []
    return sorted(dict.fromkeys(BRIGHTER_TO_ISO.get(code, code) for code in codes))


def _data(info: ModelInfo) -> dict[str, Any]:
    return info.extra.get("data") or {}


def _fingerprints(info: ModelInfo, split: str) -> dict[str, str]:
    return dict(_data(info).get(split) or {})


def training_datasets(info: ModelInfo) -> list[str]:
    """Hub dataset ids the training files come from, as far as their paths tell (BRIGHTER only)."""
    paths = [*_fingerprints(info, "train"), *_fingerprints(info, "dev")]
    return [BRIGHTER_DATASET] if any("brighter" in path.lower() for path in paths) else []


def base_model_repo(info: ModelInfo) -> str | None:
    base = info.extra.get("base_model") or {}
    return base.get("repo") if isinstance(base, dict) else None


def base_license(info: ModelInfo) -> str | None:
    """The base model's license as the registry records it (a fine-tune inherits its terms)."""
    from emocli.hub.registry import load_registry

    base = info.extra.get("base_model") or {}
    if not isinstance(base, dict):
        return None
    registry = load_registry()
    spec = registry.find(base.get("name") or "") or (registry.find_by_repo(base["repo"]) if base.get("repo") else None)
    return spec.license if spec is not None else None


def dev_results(info: ModelInfo) -> list[DevResult]:
    """The dev figures finetune recorded: per language when it recorded them (`dev_metrics.by_language`),
    else the overall figures, which belong to one language when every dev file names the same one."""
    metrics = info.extra.get("dev_metrics")
    if not metrics:
        return []
    by_language = metrics.get("by_language") or {}
    if by_language:
        return [DevResult(language, m.get("rows"), float(m["macro_f1"]), float(m["micro_f1"]))
                for language, m in sorted(by_language.items())]
    languages = {language_from_filename(Path(path)) for path in _fingerprints(info, "dev")}
    language = languages.pop() if len(languages) == 1 else None
    return [DevResult(language, metrics.get("rows"), float(metrics["macro_f1"]), float(metrics["micro_f1"]))]


def held_out_result(info: ModelInfo) -> DevResult | None:
    """finetune's headline: the saved model on training rows held out of everything (none chose the epoch or
    the thresholds); None for models trained without it."""
    headline = info.extra.get("headline") or {}
    if not headline.get("scored_on") or headline.get("macro_f1") is None:
        return None
    return DevResult(None, headline.get("rows"), float(headline["macro_f1"]), float(headline["micro_f1"]))


def emocli_only(info: ModelInfo) -> bool:
    """Custom heads, the small model and stacks are no transformers class: only emocli loads them."""
    return info.architecture != "transformers"


# ---- metadata ------------------------------------------------------------------------------------------------

def _eval_results(info: ModelInfo, dataset: str | None) -> list:
    from huggingface_hub import EvalResult

    results = []
    held_out = held_out_result(info)
    if held_out is not None:
        for name, average, value in (("macro-F1", "macro", held_out.macro_f1), ("micro-F1", "micro", held_out.micro_f1)):
            results.append(EvalResult(
                task_type=TASK_TYPE, task_name=TASK_NAME, dataset_type=dataset or "local",
                dataset_name=f"{'BRIGHTER' if dataset == BRIGHTER_DATASET else 'training data'} (held-out rows)",
                dataset_split="held-out train rows", metric_type="f1", metric_name=name,
                metric_args={"average": average}, metric_value=round(value, 4),
            ))
    for result in dev_results(info):
        where = result.language or "all dev languages pooled"
        for name, average, value in (("macro-F1", "macro", result.macro_f1), ("micro-F1", "micro", result.micro_f1)):
            results.append(EvalResult(
                task_type=TASK_TYPE, task_name=TASK_NAME, dataset_type=dataset or "local",
                dataset_name=f"{'BRIGHTER' if dataset == BRIGHTER_DATASET else 'dev data'} ({where}, dev)",
                dataset_config=result.language, dataset_split="dev", metric_type="f1", metric_name=name,
                metric_args={"average": average}, metric_value=round(value, 4),
            ))
    return results


def card_data(info: ModelInfo, options: CardOptions):
    """The YAML metadata, as huggingface_hub's ModelCardData (model-index from EvalResults)."""
    from huggingface_hub import ModelCardData

    datasets = list(options.datasets) or training_datasets(info)
    results = _eval_results(info, datasets[0] if datasets else None)
    only_emocli = emocli_only(info)
    tags = [*BASE_TAGS, *((f"emocli-{info.architecture}", "emocli-only") if only_emocli else ())]
    return ModelCardData(
        library_name="emocli" if only_emocli else "transformers", pipeline_tag=TASK_TYPE,
        base_model=base_model_repo(info), language=training_languages(info) or None,
        license=options.license or base_license(info) or "other", datasets=datasets or None, tags=tags,
        metrics=["f1"] if results else None, model_name=options.repo_id.split("/")[-1] if results else None,
        eval_results=results or None,
    )


# ---- body ----------------------------------------------------------------------------------------------------

def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _labels_section(info: ModelInfo) -> str:
    per_class = (info.extra.get("dev_metrics") or {}).get("per_class") or {}
    rows = [[f"`{label}`", f"{threshold:.2f}", _fmt((per_class.get(label) or {}).get("f1")),
             _fmt((per_class.get(label) or {}).get("support"))] for label, threshold in info.threshold_map().items()]
    return "\n".join([
        "## Labels and thresholds", "",
        f"{len(info.labels)} labels, multi-label: every label gets its own score, the **sigmoid** of its logit "
        "(the scores do not sum to 1, and a text can have none, one or several labels). A label is predicted "
        "when its score is **at or above its threshold**:", "",
        _table(["label", "threshold", "dev F1", "dev support"], rows), "",
        f"Thresholds: {_threshold_origin(info)}.",
    ])


def _threshold_origin(info: ModelInfo) -> str:
    source = info.extra.get("threshold_source")
    mode = (info.extra.get("threshold_config") or {}).get("mode")
    return {"dev": f"{mode or 'per-class'}, tuned on the dev set",
            "cv": f"{mode or 'per-class'}, tuned on out-of-fold predictions over the training set",
            "fixed": "one fixed value for every label"}.get(source, "as saved in `emocli.json`")


def _usage_section(info: ModelInfo, repo_id: str) -> str:
    thresholds = ", ".join(f'"{label}": {threshold:.2f}' for label, threshold in info.threshold_map().items())
    transformers_part = [
        "### With transformers", "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("text-classification", model="{repo_id}", top_k=None, function_to_apply="sigmoid")',
        f"THRESHOLDS = {{{thresholds}}}",
        "",
        f"for scores in classifier({EXAMPLE_TEXTS!r}):",
        '    print([s["label"] for s in scores if s["score"] >= THRESHOLDS[s["label"]]])',
        "```", "",
        f"`top_k=None` returns every label's score; `function_to_apply=\"sigmoid\"` makes them independent "
        f"probabilities. Inputs longer than {info.max_length} tokens were truncated in training; pass "
        f"`truncation=True, max_length={info.max_length}` to match.",
    ]
    if emocli_only(info):
        transformers_part = [
            "### With transformers", "",
            f"Not possible: this is an emocli `{info.architecture}` model (no transformers class exists for it), "
            "so `transformers.pipeline` and `AutoModel*` cannot load it. Use emocli.",
        ]
    return "\n".join([
        "## How to use", "", *transformers_part, "",
        "### With emocli", "",
        "```bash",
        f"emocli models pull {repo_id}",
        f"emocli tag posts.csv --model {repo_id} --db emotions.duckdb   # scores + labels at the thresholds above",
        "emocli summarize --db emotions.duckdb --by language",
        "```",
    ])


def _held_out_lines(info: ModelInfo) -> list[str]:
    held_out = held_out_result(info)
    if held_out is None:
        return []
    scored_on = (info.extra.get("headline") or {}).get("scored_on")
    return [f"**Held-out figure** ({scored_on}; these rows trained, stopped and tuned nothing): macro-F1 "
            f"{held_out.macro_f1:.3f}, micro-F1 {held_out.micro_f1:.3f} over {_fmt(held_out.rows)} rows.", ""]


def _evaluation_section(info: ModelInfo) -> str:
    results = dev_results(info)
    if not results:
        held_out = _held_out_lines(info)
        return "\n".join(["## Evaluation", "", *(held_out or
                           ["No dev set was given to `emocli finetune`: there are no quality figures for this model."])])
    rows = [[r.language or "all (pooled)", _fmt(r.rows), _fmt(r.macro_f1), _fmt(r.micro_f1)] for r in results]
    caveats = ["the dev set chose the best epoch (early stopping)"]
    if info.extra.get("threshold_source") == "dev":
        caveats.append("the thresholds were tuned on it")
    lines = [
        "## Evaluation", "", *_held_out_lines(info),
        "Measured by `emocli finetune` on the dev files listed under *Training data*, at the thresholds above:", "",
        _table(["dev language", "rows", "macro-F1", "micro-F1"], rows), "",
        f"**These figures are optimistic**: {' and '.join(caveats)}, so they overstate how the model does on "
        "new data. For an unbiased figure, score held-out data: `emocli evaluate --data test.csv --model <this repo>`.",
    ]
    if results[0].language is None:
        lines += ["", "Per-language dev figures were not recorded for this model; `emocli evaluate` reports them."]
    return "\n".join(lines)


def _training_section(info: ModelInfo) -> str:
    training = info.extra.get("training") or {}
    loss = info.extra.get("loss") or {}
    base = info.extra.get("base_model") or {}
    base_text = base.get("repo") or base.get("name") or "unknown"
    if base.get("commit"):
        base_text += f" (commit {base['commit']})"
    loss_text = loss.get("name", "-")
    if loss.get("class_weights") and loss.get("name") in ("weighted-bce", "focal", "hybrid"):
        loss_text += f", class weights {loss['class_weights']}"
    rows = [
        ["base model", base_text],
        ["architecture", info.architecture],
        ["loss", loss_text],
        ["sampler", info.extra.get("sampler", "-")],
        ["epochs", f"{training.get('epochs', '-')} (best: {info.extra.get('best_epoch', '-')})"
                   + (f", at most {training['max_steps']} steps" if training.get("max_steps") else "")],
        ["learning rate", f"{training['learning_rate']:g}" if training.get("learning_rate") else "-"],
        ["batch size", _fmt(training.get("batch_size"))],
        ["max length", f"{info.max_length} tokens"],
        ["thresholds", _threshold_origin(info)],
        ["seed", _fmt(training.get("seed"))],
    ]
    return "\n".join(["## Training", "", "Trained with `emocli finetune`:", "",
                      _table(["setting", "value"], [[name, str(value)] for name, value in rows]), "",
                      "The full configuration is in `emocli.json` (key `training`)."])


def _data_section(info: ModelInfo) -> str:
    data = _data(info)
    rows = [[split, f"`{Path(path).name}`", f"`{sha}`"]
            for split in ("train", "dev") for path, sha in _fingerprints(info, split).items()]
    languages = training_languages(info)
    lines = ["## Training data", ""]
    if rows:
        lines += [_table(["split", "file", "sha256"], rows), ""]
    lines.append(f"{_fmt(data.get('train_rows'))} training rows, {_fmt(data.get('dev_rows'))} dev rows"
                 + (f"; languages: {', '.join(languages)}" if languages else "") + ".")
    if data.get("dropped_labels"):
        lines.append(f"Label columns without positives, dropped: {', '.join(data['dropped_labels'])}.")
    return "\n".join(lines)


def _use_section(info: ModelInfo) -> str:
    languages = training_languages(info)
    trained_on = ", ".join(languages) if languages else "the languages of its training data"
    return "\n".join([
        "## Intended use", "",
        "Analytics of **perceived emotion**: the emotions most readers would perceive in a text, aggregated "
        "over many texts (e.g. `emocli summarize`). It does not tell what the author actually felt, and it is "
        "not meant for decisions about individuals, clinical or psychological assessment, or surveillance.", "",
        "## Limitations", "",
        f"- Trained on {trained_on} only: on any other language the scores are untested and likely poor.",
        f"- It knows these labels only: {', '.join(info.labels)}; other emotions are not detected.",
        f"- Texts are truncated to {info.max_length} tokens.",
        "- Annotated emotion is subjective; the labels reflect the annotators of the training data, and the "
        "scores shift with domain (social media vs. news vs. reviews).",
    ])


def _files_section(files: tuple[str, ...]) -> str:
    return "## Files\n\n" + "\n".join(f"- `{name}`" for name in files) if files else ""


def card_body(info: ModelInfo, options: CardOptions) -> str:
    name = options.repo_id.split("/")[-1]
    intro = (f"A multi-label emotion classifier ({len(info.labels)} labels) fine-tuned with "
             f"emocli from "
             f"{base_model_repo(info) or (info.extra.get('base_model') or {}).get('name') or 'a base encoder'}.")
    parts = [f"# {name}", "", intro]
    if emocli_only(info):
        parts += ["", f"> **Loads with emocli only.** This is an emocli `{info.architecture}` model: "
                      "plain transformers cannot load it (`emocli tag --model " + options.repo_id + "` can)."]
    if "training_curves.png" in options.files:
        parts += ["", "![training curves](training_curves.png)"]
    sections = [_labels_section(info), _usage_section(info, options.repo_id), _evaluation_section(info),
                _training_section(info), _data_section(info), _use_section(info), _files_section(options.files)]
    return "\n".join(parts) + "\n\n" + "\n\n".join(s for s in sections if s) + "\n"


def model_card(info: ModelInfo, options: CardOptions):
    """The README.md as a huggingface_hub ModelCard: `str(card)` is the file's text."""
    from huggingface_hub import ModelCard

    return ModelCard(f"---\n{card_data(info, options).to_yaml()}\n---\n\n{card_body(info, options)}")
