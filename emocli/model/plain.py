"""The plain transformers architecture: `AutoModelForSequenceClassification` directories plus `emocli.json`.

A saved model loads in plain transformers (`problem_type` multi-label, `id2label`) and gives sigmoid scores
there. Safetensors only, never remote code; transformers is imported inside functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emocli.errors import InputError
from emocli.model.info import TASK_TO_PROBLEM, EmotionModel, ModelInfo, quiet_transformers, torch_dtype, write_model_info


def load_transformers(model_dir: Path, info: ModelInfo, *, device: str = "cpu", dtype: str | None = None) -> EmotionModel:
    """The loader of architecture "transformers"."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    module = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True, trust_remote_code=False, dtype=torch_dtype(dtype, device)
    )
    if module.config.num_labels != len(info.labels):
        raise InputError(f"{model_dir}: config has {module.config.num_labels} outputs but {len(info.labels)} labels")
    module.to(device).eval()
    return EmotionModel(model_dir, info, tokenizer, module)


def save_transformers(out_dir: Path, module: Any, tokenizer: Any, info: ModelInfo) -> Path:
    """Write a plain transformers directory (safetensors) plus emocli.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = module.config
    config.id2label = dict(enumerate(info.labels))
    config.label2id = {label: i for i, label in enumerate(info.labels)}
    config.problem_type = TASK_TO_PROBLEM[info.task]
    module.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_model_info(out_dir, info)
    return out_dir


def load_for_finetune(base_dir: Path, labels: list[str] | tuple[str, ...], *, task: str = "multi_label"):
    """A base encoder with a fresh classification head of len(labels) outputs: (tokenizer, module)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_transformers()
    labels = list(labels)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=False)
    module = AutoModelForSequenceClassification.from_pretrained(
        base_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=TASK_TO_PROBLEM[task],
        use_safetensors=True,
        trust_remote_code=False,
        ignore_mismatched_sizes=True,
    )
    return tokenizer, module
