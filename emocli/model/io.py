"""The one loader: load or save any emocli model, choosing the architecture's loader by `emocli.json`.

`LOADERS` maps each `architecture` to the function that loads it: plain transformers (`plain`), the
custom heads and the small model (`heads`), a stack (`stack`), an ensemble (`ensemble`), an ONNX export
(`onnx_model`). The loaders import nothing above them; a stack or an ensemble gets `load_model` handed in to
load its members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from emocli.errors import InputError
from emocli.model import ensemble, heads, onnx_model, plain, stack
from emocli.model.device import resolve_device
from emocli.model.info import (META_FILE, PROBLEM_TO_TASK, TASK_TO_PROBLEM, EmotionModel, ModelInfo, quiet_transformers,
                               read_model_info, write_model_info)
from emocli.model.plain import load_for_finetune


def _load_stack(model_dir: Path, info: ModelInfo, *, device: str, dtype: str | None) -> EmotionModel:
    return stack.load_stack(model_dir, info, device=device, dtype=dtype, load_member=load_model)


def _load_ensemble(model_dir: Path, info: ModelInfo, *, device: str, dtype: str | None) -> EmotionModel:
    return ensemble.load_ensemble(model_dir, info, device=device, dtype=dtype, load_member=load_model)


LOADERS: dict[str, Callable[..., EmotionModel]] = {
    "transformers": plain.load_transformers,
    **dict.fromkeys(heads.HEAD_ARCHITECTURES, heads.load_custom),
    stack.ARCHITECTURE: _load_stack,
    onnx_model.ARCHITECTURE: onnx_model.load_onnx,
    ensemble.ARCHITECTURE: _load_ensemble,
}


def load_model(model_dir: Path, spec: Any = None, *, device: str = "cpu", dtype: str | None = None) -> EmotionModel:
    """Load a trained emotion model for inference (safetensors only, never remote code). device: auto, cpu, cuda
    or cuda:N; auto is a GPU where there is one, or for an ONNX export where onnxruntime can use it."""
    quiet_transformers()
    model_dir = Path(model_dir)
    info = read_model_info(model_dir, spec)
    loader = LOADERS.get(info.architecture)
    if loader is None:
        raise InputError(f"{model_dir}: unknown architecture {info.architecture!r} in emocli.json",
                         hint=f"this emocli knows: {', '.join(LOADERS)}")
    return loader(model_dir, info, device=load_device(info, device, model_dir), dtype=dtype)


def load_device(info: ModelInfo, requested: str, model_dir: Path) -> str:
    """The device `--device requested` (auto included) loads this model on: an ONNX export chooses by its weights and
    onnxruntime's providers (`onnx_model.onnx_device`), every torch model by `resolve_device`."""
    if info.architecture == onnx_model.ARCHITECTURE:
        return onnx_model.onnx_device(requested, info, Path(model_dir))
    return resolve_device(requested)


def save_model(out_dir: Path, module: Any, tokenizer: Any, info: ModelInfo) -> Path:
    """Write a model directory plus emocli.json: a custom module (built by `heads`) or a plain transformers one.

    A stack or an ensemble is saved by its trainer (`emocli.model.stack.save_stack`,
    `emocli.model.ensemble.save_ensemble`), which also places its members."""
    if heads.is_custom_module(module):
        return heads.save_custom(out_dir, module, tokenizer, info)
    return plain.save_transformers(out_dir, module, tokenizer, info)


__all__ = ["LOADERS", "META_FILE", "PROBLEM_TO_TASK", "TASK_TO_PROBLEM", "EmotionModel", "ModelInfo", "load_device",
           "load_for_finetune", "load_model", "quiet_transformers", "read_model_info", "save_model", "write_model_info"]
