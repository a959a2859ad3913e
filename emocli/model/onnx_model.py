"""The "onnx" architecture: a model exported by `emocli export onnx`, run by ONNX Runtime (CPU, or CUDA with
onnxruntime-gpu).

The directory holds `model.onnx` (fp32 or dynamic-int8 weights), the tokenizer files and `emocli.json` (labels,
thresholds, `architecture: "onnx"`, and an `onnx` entry: precision, opset, the model it came from and how it
verified). `OnnxSession` is the engine's backend for it: `logits(batch)` on one length-sorted batch, the same
interface the engine wraps a torch module in. onnxruntime is imported lazily; without it, one line names the extra.
On a GPU the session runs on onnxruntime's CUDA execution provider, which only the onnxruntime-gpu build has; an
int8 export stays on the CPU (its dynamic-quantization kernels are CPU ones).
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
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
GPU_INSTALL_HINT = "install onnxruntime-gpu in place of onnxruntime, or pass --device cpu"
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


def cuda_provider_available() -> bool:
    """Whether this onnxruntime can run a session on a GPU (the onnxruntime-gpu build)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return CUDA_PROVIDER in onnxruntime.get_available_providers()


def providers_for(device: str) -> list:
    """onnxruntime's execution providers for an engine device: cpu, cuda or cuda:N (the CPU as the fallback for
    any node CUDA has no kernel for)."""
    from emocli.model.device import cuda_index

    if not device.startswith("cuda"):
        return [CPU_PROVIDER]
    return [(CUDA_PROVIDER, {"device_id": cuda_index(device)}), CPU_PROVIDER]


def onnx_device(requested: str | None, info: ModelInfo, model_dir: Path) -> str:
    """The device an export runs on. auto: a GPU where there is one, onnxruntime has its CUDA provider and the
    weights are not int8; else the CPU (so `--backend onnx` on a GPU machine without onnxruntime-gpu still runs).
    An explicit GPU that the export cannot use is one line saying why."""
    from emocli.model.device import resolve_device

    entry = onnx_entry(info)
    if requested in (None, "", "auto"):
        if entry.get("precision") == "int8" or not cuda_provider_available():
            return "cpu"
        return resolve_device("auto")
    if requested.startswith("cuda"):
        _check_runs_on_gpu(model_dir, entry, requested)
    return resolve_device(requested)


class OnnxSession:
    """One ONNX Runtime session, built on first use: on the CPU intra-op threads = the cores (or `threads`), on a
    GPU the CUDA provider; every graph optimization on but the layer-norm fusion (DISABLED_FUSIONS). The engine
    calls `logits(batch)` exactly where it would call a torch module."""

    # padded tokens per run on the CPU: ONNX Runtime's int8 and fp32 MiniLM ran fastest at 1024 on 2 cores, ~1.15x
    # its speed at the engine's former CPU default of 4096 (benchmarks/results/onnx-cpu-minilm.md); torch keeps its
    # own default, and so does a GPU (None: the engine's per-device default)
    CPU_BATCH_TOKENS = 1024

    def __init__(self, path: Path, precision: str, max_positions: int | None = None, model_type: str = "",
                 device: str = "cpu"):
        self.path = Path(path)
        self.precision = precision
        self.device = device
        self.batch_tokens = None if device.startswith("cuda") else self.CPU_BATCH_TOKENS
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
            if self.device.startswith("cuda") and hasattr(ort, "preload_dlls"):
                ort.preload_dlls()  # CUDA and cuDNN from the libraries torch (imported by then) loaded, or pip's nvidia-*
            self._session = ort.InferenceSession(str(self.path), options, providers=providers_for(self.device),
                                                 disabled_optimizers=list(DISABLED_FUSIONS))
        return self._session

    def logits(self, batch):
        """Logits of one engine batch (torch tensors on the host), as a host torch tensor sharing ORT's output (on a
        GPU onnxruntime copies the inputs in and the logits out itself)."""
        import torch

        feeds = {INPUT_NAMES[0]: batch.input_ids.numpy(), INPUT_NAMES[1]: batch.attention_mask.numpy()}
        return torch.from_numpy(self.session.run([OUTPUT_NAME], feeds)[0])

    def evaluating(self):
        return contextlib.nullcontext()  # an exported graph has no training mode

    def get_input_embeddings(self):
        return None  # no gradients through ONNX Runtime: explanations use LIME (integrated gradients say so)


def load_onnx(model_dir: Path, info: ModelInfo, *, device: str = "cpu", dtype: str | None = None) -> EmotionModel:
    """The loader of architecture "onnx", on a device `onnx_device` chose (load_model resolves it)."""
    model_dir = Path(model_dir)
    entry = onnx_entry(info)
    if dtype not in (None, "auto", "fp32"):
        raise InputError(f"{model_dir}: an ONNX export has fixed weights; --dtype {dtype} does not apply")
    path = model_dir / MODEL_FILE
    if not path.exists():
        raise ModelNotFoundError(f"{model_dir}: an ONNX export without {MODEL_FILE}")
    require_onnxruntime()
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    session = OnnxSession(path, entry.get("precision", "fp32"), entry.get("max_positions"), entry.get("model_type", ""),
                          device=device)
    return EmotionModel(model_dir, info, tokenizer, session)


def _check_runs_on_gpu(model_dir: Path, entry: dict[str, Any], device: str) -> None:
    if entry.get("precision") == "int8":
        raise InputError(f"{model_dir}: --device {device}: an int8 ONNX export is a CPU model (onnxruntime's dynamic "
                         "int8 kernels run on the CPU only)",
                         hint="pass --device cpu, or export it without --int8 for the GPU")
    available = require_onnxruntime().get_available_providers()
    if CUDA_PROVIDER not in available:
        raise InputError(f"{model_dir}: --device {device}: this onnxruntime has no CUDA execution provider (it has "
                         f"{', '.join(available)})", hint=GPU_INSTALL_HINT)


def is_onnx_session(module: Any) -> bool:
    return isinstance(module, OnnxSession)


__all__ = ["ARCHITECTURE", "CUDA_PROVIDER", "INPUT_NAMES", "INSTALL_HINT", "MODEL_FILE", "OUTPUT_NAME", "PRECISIONS",
           "OnnxSession", "cuda_provider_available", "is_onnx_session", "load_onnx", "onnx_device", "onnx_entry",
           "providers_for", "require_onnxruntime"]
