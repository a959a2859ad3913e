"""What a model directory says about itself, and the helpers every loader shares.

`emocli.json` adds what transformers has no place for: decision thresholds, training flags, base commit,
data fingerprints, metrics; `read_model_info` falls back to the transformers config (and a registry spec).
Nothing heavy is imported at module level.
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

    @property
    def languages(self) -> tuple[str, ...] | None:
        """The training languages as ISO 639-3 codes (emocli.json `languages`, else its data record); None: unknown."""
        from emocli.languages import normalize_languages

        if self.extra.get("languages") is not None:
            return normalize_languages(self.extra["languages"])
        return normalize_languages((self.extra.get("data") or {}).get("languages"))


def model_languages(info: "ModelInfo | None", spec: Any = None) -> tuple[str, ...] | None:
    """What a model was trained on: its own emocli.json first, then the registry entry; None when neither says."""
    from emocli.languages import normalize_languages

    if info is not None and info.languages is not None:
        return info.languages
    return normalize_languages(spec.languages) if spec is not None and spec.languages else None


@dataclass
class EmotionModel:
    path: Path
    info: ModelInfo
    tokenizer: Any
    module: Any  # torch.nn.Module

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels


def read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ModelNotFoundError(f"{path.parent}: not a model directory (no {path.name})")
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
        meta = read_json(meta_path)
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
    config = read_json(config_path)
    labels = _labels_from_config(config) or (tuple(spec.labels) if spec is not None and spec.labels else None)
    if labels is None:
        raise InputError(f"{model_dir}: the model names no labels (config.json has no id2label)",
                         hint="is this a base encoder? fine-tune it first with `emocli finetune --base ...`")
    task = PROBLEM_TO_TASK.get(config.get("problem_type"), spec.task if spec is not None else "multi_label")
    thresholds = tuple(spec.threshold_for(label) if spec is not None else 0.5 for label in labels)
    max_length = (spec.max_length if spec is not None and spec.max_length else None) or min(
        int(config.get("max_position_embeddings", 512)), 128)
    return ModelInfo(labels, thresholds, task, max_length)


def write_model_info(out_dir: Path, info: ModelInfo) -> None:
    meta = asdict(info)
    extra = meta.pop("extra")
    meta["labels"] = list(info.labels)
    meta["thresholds"] = list(info.thresholds)
    meta.update(extra)
    (Path(out_dir) / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")


def quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars off our stderr (we draw our own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def torch_dtype(dtype: str | None, device: str):
    import torch

    if dtype in (None, "auto"):
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def ready_model(model_dir: Path, info, tokenizer, module, device: str, dtype: str | None):
    module.to(device=device, dtype=torch_dtype(dtype, device)).eval()
    return EmotionModel(model_dir, info, tokenizer, module)
