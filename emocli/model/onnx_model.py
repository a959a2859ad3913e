"""The "onnx" architecture: a model exported by `emocli export onnx`, run by ONNX Runtime on the CPU.

The directory holds `model.onnx` (fp32 or dynamic-int8 weights), the tokenizer files and `emocli.json` (labels,
thresholds, `architecture: "onnx"`, and an `onnx` entry: precision, opset, the model it came from and how it
verified). `OnnxSession` is the engine's backend for it: `logits(batch)` on one length-sorted batch, the same
interface the engine wraps a torch module in. onnxruntime is imported lazily; without it, one line names the extra.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from emocli.errors import ConfigError, InputError, ModelNotFoundError
from emocli.model.info import EmotionModel, ModelInfo, quiet_transformers

ARCHITECTURE = "onnx"
MODEL_FILE = "model.onnx"
PRECISIONS = ("fp32", "int8")
INSTALL_HINT = 'pip install "emocli[onnx]"'
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
# onnxruntime would fuse Add + LayerNormalization into SkipLayerNormalization at load, whose CPU kernel ran ~4x
# slower than the two apart (emocli/export/onnx_export.py `split_skip_layer_norms`)
DISABLED_FUSIONS = ("SkipLayerNormFusion",)


def require_onnxruntime():
    """The onnxruntime module, or one line naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"the ONNX backend needs onnxruntime, which is not installed: {INSTALL_HINT}") from None
    return onnxruntime


def onnx_entry(info: ModelInfo) -> dict[str, Any]:
    """The `onnx` entry of an export's emocli.json (precision, opset, source, verification)."""
    return dict(info.extra.get("onnx") or {})


class OnnxSession:
    """One ONNX Runtime session on the CPU, built on first use: intra-op threads = the cores (or `threads`), every
    graph optimization on but the layer-norm fusion (DISABLED_FUSIONS). The engine calls `logits(batch)` exactly
    where it would call a torch module."""

    device = "cpu"
    # padded tokens per run: ONNX Runtime's int8 and fp32 MiniLM ran fastest at 1024 on 2 cores, ~1.15x its speed
    # at the engine's former CPU default of 4096 (benchmarks/results/onnx-cpu-minilm.md); torch keeps its own default
    batch_tokens = 1024

    def __init__(self, path: Path, precision: str, max_positions: int | None = None, model_type: str = ""):
        self.path = Path(path)
        self.precision = precision
        self.threads: int | None = None
        # what the engine's max-length check reads from a torch module's config
        self.config = SimpleNamespace(max_position_embeddings=max_positions, model_type=model_type)
        self._session = None

    def configure(self, threads: int | None) -> None:
        """Set the intra-op threads (None: every core) before the first batch."""
        if threads != self.threads:
            self.threads, self._session = threads, None

    @property
    def session(self):
        if self._session is None:
            ort = require_onnxruntime()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads or os.cpu_count() or 1
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3  # errors only: no optimizer chatter on our stderr
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"],
                                                 disabled_optimizers=list(DISABLED_FUSIONS))
        return self._session

    def logits(self, batch):
        """Logits of one engine batch (torch tensors on the host), as a torch tensor sharing ORT's output."""
        import torch

        feeds = {INPUT_NAMES[0]: batch.input_ids.numpy(), INPUT_NAMES[1]: batch.attention_mask.numpy()}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feeds)[0])

    def evaluating(self):
        return contextlib.nullcontext()  # an exported graph has no training mode

    def get_input_embeddings(self):
        return None  # no gradients through ONNX Runtime: explanations use LIME (integrated gradients say so)


def load_onnx(model_dir: Path, info: ModelInfo, *, device: str = "cpu", dtype: str | None = None) -> EmotionModel:
    """The loader of architecture "onnx"."""
    model_dir = Path(model_dir)
    if device != "cpu":
        raise InputError(f"{model_dir}: an ONNX export runs on the CPU (ONNX Runtime), not on {device}",
                         hint="pass --device cpu, or tag the torch model it was exported from on the GPU")
    if dtype not in (None, "auto", "fp32"):
        raise InputError(f"{model_dir}: an ONNX export has fixed weights; --dtype {dtype} does not apply")
    entry = onnx_entry(info)
    path = model_dir / MODEL_FILE
    if not path.exists():
        raise ModelNotFoundError(f"{model_dir}: an ONNX export without {MODEL_FILE}")
    require_onnxruntime()
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    session = OnnxSession(path, entry.get("precision", "fp32"), entry.get("max_positions"), entry.get("model_type", ""))
    return EmotionModel(model_dir, info, tokenizer, session)


def is_onnx_session(module: Any) -> bool:
    return isinstance(module, OnnxSession)


__all__ = ["ARCHITECTURE", "INPUT_NAMES", "INSTALL_HINT", "MODEL_FILE", "OUTPUT_NAME", "PRECISIONS", "OnnxSession",
           "is_onnx_session", "load_onnx", "onnx_entry", "require_onnxruntime"]
