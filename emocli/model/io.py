"""Load and save emotion models: a plain transformers directory plus `emocli.json`.

A saved model loads in plain transformers (`AutoModelForSequenceClassification`, `problem_type`
multi-label, `id2label`) and gives sigmoid scores there; `emocli.json` adds what transformers has no
place for: decision thresholds, training flags, base commit, data fingerprints, metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emocli.errors import InputError, ModelNotFoundError

META_FILE = "emocli.json"
TASK_TO_PROBLEM = {"multi_label": "multi_label_classification", "single_label": "single_label_classification"}
PROBLEM_TO_TASK = {v: k for k, v in TASK_TO_PROBLEM.items()}


@dataclass(frozen=True)
class ModelInfo:
    """What inference needs to know about a model, whatever produced it."""

    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    task: str = "multi_label"
    max_length: int = 128
    architecture: str = "transformers"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.labels) != len(self.thresholds):
            raise ValueError(f"{len(self.labels)} labels but {len(self.thresholds)} thresholds")

    def threshold_map(self) -> dict[str, float]:
        return dict(zip(self.labels, self.thresholds))


@dataclass
class EmotionModel:
    path: Path
    info: ModelInfo
    tokenizer: Any
    module: Any  # torch.nn.Module

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON: {exc}") from None


def _labels_from_config(config: dict[str, Any]) -> tuple[str, ...] | None:
    id2label = config.get("id2label")
    if not id2label:
        return None
    labels = tuple(str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k)))
    if all(label.startswith("LABEL_") for label in labels):
        return None
    return labels


def read_model_info(model_dir: Path, spec: Any = None) -> ModelInfo:
    """emocli.json if present, else the transformers config, with a registry spec filling gaps."""
    model_dir = Path(model_dir)
    meta_path = model_dir / META_FILE
    if meta_path.exists():
        meta = _read_json(meta_path)
        labels = tuple(meta["labels"])
        thresholds = meta.get("thresholds", [0.5] * len(labels))
        if isinstance(thresholds, dict):
            thresholds = [thresholds.get(label, 0.5) for label in labels]
        extra = {k: v for k, v in meta.items() if k not in {"labels", "thresholds", "task", "max_length", "architecture"}}
        return ModelInfo(labels, tuple(float(t) for t in thresholds), meta.get("task", "multi_label"),
                         int(meta.get("max_length", 128)), meta.get("architecture", "transformers"), extra)
    config_path = model_dir / "config.json"
    if not config_path.exists():
        raise ModelNotFoundError(f"{model_dir}: not a model directory (no config.json)")
    config = _read_json(config_path)
    labels = _labels_from_config(config) or (tuple(spec.labels) if spec is not None and spec.labels else None)
    if labels is None:
        raise InputError(f"{model_dir}: the model names no labels (config.json has no id2label)",
                         hint="is this a base encoder? fine-tune it first with `emocli finetune --base ...`")
    task = PROBLEM_TO_TASK.get(config.get("problem_type"), spec.task if spec is not None else "multi_label")
    thresholds = tuple(spec.threshold_for(label) if spec is not None else 0.5 for label in labels)
    max_length = (spec.max_length if spec is not None and spec.max_length else None) or min(
        int(config.get("max_position_embeddings", 512)), 128)
    return ModelInfo(labels, thresholds, task, max_length)


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars off our stderr (we draw our own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _torch_dtype(dtype: str | None, device: str):
    import torch

    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def load_model(model_dir: Path, spec: Any = None, *, device: str = "cpu", dtype: str | None = None) -> EmotionModel:
    """Load a trained emotion model for inference (safetensors only, never remote code)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_transformers()
    model_dir = Path(model_dir)
    info = read_model_info(model_dir, spec)
    if info.architecture != "transformers":
        from emocli.model import heads

        return heads.load_custom(model_dir, info, device=device, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    module = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True, trust_remote_code=False, dtype=_torch_dtype(dtype, device)
    )
    if module.config.num_labels != len(info.labels):
        raise InputError(f"{model_dir}: config has {module.config.num_labels} outputs but {len(info.labels)} labels")
    module.to(device).eval()
    return EmotionModel(model_dir, info, tokenizer, module)


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


def save_model(out_dir: Path, module: Any, tokenizer: Any, info: ModelInfo) -> Path:
    """Write a plain transformers directory (safetensors) plus emocli.json."""
    if getattr(module, "emocli_config", None) is not None:  # a custom architecture built by emocli.model.heads
        from emocli.model import heads

        return heads.save_custom(out_dir, module, tokenizer, info)
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


def write_model_info(out_dir: Path, info: ModelInfo) -> None:
    meta = asdict(info)
    extra = meta.pop("extra")
    meta["labels"] = list(info.labels)
    meta["thresholds"] = list(info.thresholds)
    meta.update(extra)
    (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
