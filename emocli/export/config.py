"""The export configs, free of numpy and torch so the CLI builds its flags from them cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OPSET = 17  # LayerNormalization is one op from 17; onnxruntime 1.31 runs opsets up to 23
FP32_TOLERANCE = 1e-4  # max |score(onnx fp32) - score(torch fp32)|
F1_TOLERANCE = 0.005  # max |macro-F1(export) - macro-F1(torch fp32)| on the dev files


@dataclass(frozen=True)
class OnnxExportConfig:
    model: str  # a model directory, registry name or Hub id
    out: Path
    int8: bool = False
    dev: tuple[str, ...] = ()  # labelled files to verify on (texts the model did not train on); () = probe texts
    max_length: int | None = None  # tokens per text when verifying; None = the model's
    opset: int = OPSET
    threads: int | None = None  # CPU threads while verifying; None = all cores
    fuse: bool = True  # BERT-family encoders: onnxruntime's transformer fusions (Attention, SkipLayerNorm, ...)
