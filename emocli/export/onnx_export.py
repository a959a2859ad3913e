"""`emocli export onnx`: a trained model -> an ONNX directory that `tag --model` runs with ONNX Runtime.

    result = export_onnx(OnnxExportConfig("my-model", Path("my-model-onnx"), int8=True, dev=("dev/eng.csv",)))

The graph comes from `torch.onnx.export` on the TorchScript path (`dynamo=False`) with dynamic batch and
sequence axes: on torch 2.13 the dynamo exporter's graph breaks onnxruntime's int8 quantizer (its shape
inference rejects the exported value shapes) and ran ~15% slower in fp32 here. int8 is onnxruntime's dynamic
quantization of the MatMul weights (int8 per output channel, activations quantized per batch at run time; the
embedding tables stay fp32: quantizing them too cost 0.008 eng dev macro-F1 for a 2x smaller file). On an x86
CPU without VNNI the weights use 7 bits (`int8_weight_bits`, recorded in emocli.json), as onnxruntime advises.
A BERT-family encoder is traced with eager attention and its graph fused by onnxruntime's transformer optimizer
(one Attention op per layer, BiasGelu, EmbedLayerNormalization) before int8, which then also quantizes the fused
attention's QKV weights (QAttention): the SDPA trace leaves attention as ~20 small ops the optimizer cannot match.
Its SkipLayerNormalization ops are split back into Add + LayerNormalization, which onnxruntime's CPU kernels run
faster (benchmarks/results/onnx-cpu-minilm.md has the speed of each step). Every export is
then verified through the engine, on texts it never saw, against the torch fp32 model: fp32 must stay within 1e-4
of it (max |score difference|). int8 must stay within the tolerance `tag --quantize` states (0.03) or, where the
torch int8 model (today's `--quantize`) itself moves further on the same texts, within that: on a fine-tuned
MiniLM both move a few scores by more than 0.03 (benchmarks/results/onnx-cpu-minilm.json), so 0.03 alone would
refuse every int8 model, and the question a user has is whether the export is at least as faithful as the int8
path they have. Given labelled dev files, macro-F1 must also lose no more than 0.005.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emocli.errors import InputError
from emocli.export.config import F1_TOLERANCE, FP32_TOLERANCE, OPSET, OnnxExportConfig
from emocli.inference.engine import QUANTIZE_TOLERANCE, EngineConfig, load_scorer, score_texts, scorer_for
from emocli.model import onnx_model, stack
from emocli.model.info import write_model_info
from emocli.progress import Progress, chosen

if TYPE_CHECKING:
    from emocli.model.info import EmotionModel

EXPORTER = "torch.onnx.export (TorchScript, dynamo=False)"
# model types whose encoder layers onnxruntime's "bert" fusions match (transformers' BERT-style attention)
FUSABLE_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
# Texts for the score check when no dev files are given: never seen by the export (it traces two dummy texts).
PROBE_TEXTS = (
    "I can't believe they cancelled the concert, I waited months for this!",
    "What a lovely surprise to find you here.",
    "The house was silent and something moved in the dark hallway.",
    "ok",
    "My grandmother passed away last night. I miss her so much already.",
    "We won!!! Best day of my life, thank you all",
    "Why would anyone leave a dog in a hot car? This makes me furious.",
    "The meeting is at three; bring the quarterly report.",
    "Honestly I'm terrified of the exam tomorrow and I haven't slept.",
    "Nobody told me the shop had closed, so I stood there like an idiot in the rain for an hour, which, to be "
    "fair, is exactly how the rest of this week has gone: one small disappointment after another.",
    "Wow. Just wow. Did not see that ending coming at all.",
    "¡Qué alegría verte otra vez, amigo!",
)


@dataclass
class Verification:
    """How the export scores against the torch fp32 model it came from, through the same engine."""

    scored_on: str  # what the texts were
    texts: int
    max_abs_diff: float
    p99_abs_diff: float
    tolerance: float  # the stated one: 1e-4 (fp32) or the --quantize tolerance (int8)
    torch_int8_max_abs_diff: float | None = None  # int8: torch's own int8 on the same texts
    macro_f1_torch: float | None = None
    macro_f1_onnx: float | None = None
    f1_tolerance: float = F1_TOLERANCE

    @property
    def f1_delta(self) -> float | None:
        if self.macro_f1_torch is None or self.macro_f1_onnx is None:
            return None
        return self.macro_f1_onnx - self.macro_f1_torch

    @property
    def max_ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    @property
    def allowed(self) -> float:
        """The stated tolerance, or for int8 torch int8's own difference where that is larger (see the module doc)."""
        return max(self.tolerance, self.torch_int8_max_abs_diff or 0.0)

    @property
    def scores_ok(self) -> bool:
        return self.max_abs_diff <= self.allowed

    @property
    def f1_ok(self) -> bool | None:
        """No more than f1_tolerance lost (a gain is no fault of the export)."""
        return None if self.f1_delta is None else self.f1_delta >= -self.f1_tolerance

    @property
    def passed(self) -> bool:
        return self.scores_ok and self.f1_ok is not False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(max_abs_diff=float(f"{self.max_abs_diff:.3g}"), p99_abs_diff=float(f"{self.p99_abs_diff:.3g}"),
                    torch_int8_max_abs_diff=_rounded(self.torch_int8_max_abs_diff), allowed=round(self.allowed, 5),
                    max_ok=self.max_ok, f1_delta=_rounded(self.f1_delta),
                    macro_f1_torch=_rounded(self.macro_f1_torch), macro_f1_onnx=_rounded(self.macro_f1_onnx),
                    scores_ok=self.scores_ok, f1_ok=self.f1_ok, passed=self.passed)
        return data


@dataclass
class OnnxExportResult:
    out_dir: Path
    source: str
    architecture: str  # the source model's
    precision: str
    opset: int
    seconds: float
    size_mb: float
    verification: Verification
    notes: list[str] = field(default_factory=list)
    fused: dict[str, int] | None = None  # the fused operators and their counts; None: not fused
    int8_weight_bits: int | None = None  # int8: 8, or 7 on a CPU without VNNI (int8_weight_bits); fp32: None

    def as_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "source": self.source, "architecture": self.architecture,
                "precision": self.precision, "opset": self.opset, "exporter": EXPORTER, "seconds": round(self.seconds, 2),
                "size_mb": round(self.size_mb, 1), "fused": self.fused, "int8_weight_bits": self.int8_weight_bits,
                "verification": self.verification.as_dict(),
                "notes": self.notes}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def export_onnx(config: OnnxExportConfig, progress: Progress | None = None) -> OnnxExportResult:
    """Export, optionally quantize, write the directory, verify; the verification is also kept in emocli.json."""
    from emocli.hub.pull import resolve_model
    from emocli.model.io import load_model

    progress = chosen(progress)
    onnx_model.require_onnxruntime()
    resolved = resolve_model(config.model)
    started = time.perf_counter()
    model = load_model(resolved.path, resolved.spec, device="cpu", dtype="fp32")
    check_exportable(model)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    progress.start("exporting to ONNX", 3 if config.int8 else 2, "steps")
    fusable = config.fuse and fusable_encoder(model)
    traced = out / "model.traced.onnx"
    trace_to_onnx(model, traced, config.opset, eager_attention=fusable)
    fusion = fuse_transformer_graph(traced, fusable_shape(model)) if fusable else None
    progress.advance(1)
    weight_bits = int8_weight_bits() if config.int8 else None
    if config.int8:
        quantize_int8(traced, out / onnx_model.MODEL_FILE, weight_bits)
        traced.unlink()
        progress.advance(1)
    else:
        traced.replace(out / onnx_model.MODEL_FILE)
    precision = "int8" if config.int8 else "fp32"
    entry = {**_onnx_entry(model, resolved.name, precision, config.opset), "fused": fusion,
             "int8_weight_bits": weight_bits}
    _write_directory(out, model, resolved.path, entry)
    verification = verify_export(model, out, config)
    progress.advance(1)
    progress.finish()
    _write_directory(out, model, resolved.path, {**entry, "verification": verification.as_dict()})
    notes = [] if verification.macro_f1_torch is not None else [
        "no --dev files: scores checked on built-in probe texts only, macro-F1 not checked"]
    return OnnxExportResult(out, resolved.name, model.info.architecture, precision, config.opset,
                            time.perf_counter() - started, (out / onnx_model.MODEL_FILE).stat().st_size / 2**20,
                            verification, notes, fusion, weight_bits)


def cached_export(model_dir: Path, key: str, *, int8: bool) -> Path:
    """The ONNX export of a model for `tag --backend onnx`, made once per model and precision under the user
    config dir (verified on the probe texts; a failed verification is an error, nothing is cached)."""
    from emocli.config import user_config_dir

    precision = "int8" if int8 else "fp32"
    # "fused-addln": exports cached before the fused graphs (~1.05x slower in int8) or before the layer norms were
    # split back out of their fused op (~1.35x slower) are not reused; "w7": 7-bit weights (a CPU without VNNI)
    flavour = f"{precision}w7" if int8 and int8_weight_bits() == 7 else precision
    out = user_config_dir() / "onnx" / f"{''.join(c if c.isalnum() else '-' for c in key)}-fused-addln-{flavour}"
    if (out / onnx_model.MODEL_FILE).exists() and (out / "emocli.json").exists():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    result = export_onnx(OnnxExportConfig(model=str(model_dir), out=partial, int8=int8))
    if not result.verification.passed:
        shutil.rmtree(partial, ignore_errors=True)
        raise InputError(f"{model_dir}: its ONNX {precision} export failed verification "
                         f"(max |score diff| {result.verification.max_abs_diff:.2g} > {result.verification.tolerance:g})",
                         hint="tag it with --backend torch")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def check_exportable(model: "EmotionModel") -> None:
    """One line for what cannot become a single ONNX graph."""
    architecture = model.info.architecture
    if architecture == onnx_model.ARCHITECTURE:
        raise InputError(f"{model.path}: already an ONNX export")
    if architecture == stack.ARCHITECTURE:
        raise InputError(f"{model.path}: ONNX export does not support stacks (a stack re-tokenizes the text for "
                         "members with other tokenizers inside its forward pass)",
                         hint="tag the stack with the torch backend, or export its members one by one")


def fusable_encoder(model: "EmotionModel") -> bool:
    """A plain transformers classifier over a BERT-family encoder: the graphs onnxruntime's fusions match."""
    config = getattr(model.module, "config", None)
    return (model.info.architecture == "transformers" and getattr(config, "model_type", None) in FUSABLE_MODEL_TYPES
            and hasattr(model.module, "set_attn_implementation"))


def fusable_shape(model: "EmotionModel") -> tuple[int, int]:
    config = model.module.config
    return config.num_attention_heads, config.hidden_size


def fuse_transformer_graph(path: Path, shape: tuple[int, int]) -> dict[str, int]:
    """onnxruntime's transformer fusions applied to the graph in place; the fused operators and their counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_root_logger(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads, hidden = shape
        # opt_level 0: the Python fusions only; the session applies onnxruntime's own graph optimizations at load
        fused = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
        statistics = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
        split_skip_layer_norms(fused.model)
        fused.save_model_to_file(str(path))
    return statistics


def split_skip_layer_norms(graph_model) -> int:
    """Each fused SkipLayerNormalization back into Add(x, bias), Add(skip), LayerNormalization, in place; how
    many. onnxruntime 1.31's CPU SkipLayerNormalization kernel ran ~4x slower than those three ops on MiniLM's
    shapes, which made the int8 forward ~1.35x slower (benchmarks/results/onnx-cpu-minilm.md); the session keeps
    them apart (`onnx_model.DISABLED_FUSIONS`)."""
    from onnx import helper

    nodes, split = [], 0
    for node in graph_model.graph.node:
        if node.op_type != "SkipLayerNormalization":
            nodes.append(node)
            continue
        x, skip, gamma, beta, bias = (list(node.input) + [""] * 5)[:5]
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        name = node.name or f"SkipLayerNormalization_{split}"
        if bias:
            nodes.append(helper.make_node("Add", [x, bias], [name + "_biased"], name=name + "_add_bias"))
            x = name + "_biased"
        nodes.append(helper.make_node("Add", [x, skip], [name + "_sum"], name=name + "_add_skip"))
        nodes.append(helper.make_node("LayerNormalization", [name + "_sum", gamma, *([beta] if beta else [])],
                                      [node.output[0]], name=name + "_layer_norm", axis=-1, epsilon=epsilon))
        split += 1
    del graph_model.graph.node[:]
    graph_model.graph.node.extend(nodes)
    return split


def trace_to_onnx(model: "EmotionModel", path: Path, opset: int = OPSET, *, eager_attention: bool = False) -> None:
    """The module's logits as an ONNX graph with dynamic batch and sequence axes (fp32, CPU). eager_attention:
    trace transformers' eager attention (matmul, softmax, matmul) instead of SDPA, the form the fusions match."""
    import torch

    module = _logits_module(model.module)
    encoded = model.tokenizer(["a probe", "a longer probe text, padded less"], padding=True, return_tensors="pt")
    inputs = (encoded["input_ids"], encoded["attention_mask"])
    axes = {"batch": 0, "sequence": 1}
    dynamic = {name: {i: axis for axis, i in axes.items()} for name in onnx_model.INPUT_NAMES}
    dynamic[onnx_model.OUTPUT_NAME] = {0: "batch"}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), \
                _attention(model.module, "eager" if eager_attention else None):
            warnings.simplefilter("ignore")  # the TorchScript path's deprecation and tracer notes
            torch.onnx.export(module, inputs, str(path), dynamo=False, opset_version=opset,
                              input_names=list(onnx_model.INPUT_NAMES), output_names=[onnx_model.OUTPUT_NAME],
                              dynamic_axes=dynamic, do_constant_folding=True)
    except Exception as exc:  # noqa: BLE001 - the exporter's many failure types become one line
        path.unlink(missing_ok=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{model.path}: architecture {model.info.architecture!r} does not export to ONNX: {first}",
                         hint="tag it with the torch backend") from None


@contextlib.contextmanager
def _attention(module, implementation: str | None):
    """The module with this attention implementation while tracing, its own again afterwards."""
    if implementation is None:
        yield
        return
    own = module.config._attn_implementation
    module.set_attn_implementation(implementation)
    try:
        yield
    finally:
        module.set_attn_implementation(own)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer and optimizer log advice on the root logger, which would reach our stderr."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _logits_module(module):
    """The module as a function of (input_ids, attention_mask) -> logits, the graph's one output."""
    import torch

    class LogitsOf(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    return LogitsOf(module).eval()


# CPU flags of the int8 dot-product instructions that onnxruntime's u8s8 kernels use where present
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_has_vnni(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this x86 CPU has VNNI (or AMX); True where it cannot be read (not Linux, not x86), as onnxruntime's
    saturation caveat is about x86 AVX2/AVX-512 without VNNI."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return True
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    return flags is None or bool(VNNI_FLAGS.intersection(flags))


def int8_weight_bits(has_vnni: bool | None = None) -> int:
    """8, or 7 on an x86 CPU without VNNI: there onnxruntime's u8s8 kernel (vpmaddubsw) can saturate its 16-bit
    pair sums, and onnxruntime's advice is 7-bit weights (`reduce_range`). On this project's AVX2-only EPYC that
    moved eng + pcm dev macro-F1 vs fp32 from -0.0061 to +0.0051 and the max score difference from 0.012 to 0.009
    at the same speed (benchmarks/results/onnx-cpu-epyc-minilm.md)."""
    return 8 if (cpu_has_vnni() if has_vnni is None else has_vnni) else 7


def quantize_int8(src: Path, dst: Path, weight_bits: int = 8) -> None:
    """onnxruntime's dynamic int8 quantization of the MatMuls and fused Attentions (QAttention): int8 weights per
    output channel (7 of their bits used when weight_bits is 7), activations per batch. The fused ops' outputs
    carry no shape-inferred type, hence the default."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=weight_bits == 7, op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})


def _onnx_entry(model: "EmotionModel", source: str, precision: str, opset: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    config = getattr(model.module, "config", None)
    return {"precision": precision, "opset": opset, "exporter": EXPORTER, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "source": source, "source_architecture": model.info.architecture,
            "max_positions": getattr(config, "max_position_embeddings", None),
            "model_type": getattr(config, "model_type", "") or ""}


def _write_directory(out: Path, model: "EmotionModel", source_dir: Path, entry: dict[str, Any]) -> None:
    """Tokenizer, the source's config.json (what the encoder was, for `models info`) and emocli.json."""
    model.tokenizer.save_pretrained(out)
    if (Path(source_dir) / "config.json").exists():
        shutil.copyfile(Path(source_dir) / "config.json", out / "config.json")
    extra = {k: v for k, v in model.info.extra.items() if k != "onnx"}
    write_model_info(out, replace(model.info, architecture=onnx_model.ARCHITECTURE, extra={**extra, "onnx": entry}))


def verify_export(model: "EmotionModel", out: Path, config: OnnxExportConfig) -> Verification:
    """Score the same unseen texts with the torch fp32 model and the export, through the engine."""
    from emocli.model.io import load_model

    texts, labelled, scored_on = _verification_texts(model, config.dev)
    max_length = config.max_length or model.info.max_length
    engine = EngineConfig(max_length=max_length, threads=config.threads)
    reference = score_texts(load_scorer(model, engine), texts)
    exported = score_texts(load_scorer(load_model(out), engine), texts)
    valid = ~np.isnan(reference).any(axis=1)
    diff = np.abs(exported[valid] - reference[valid]) if valid.any() else np.zeros(1)
    tolerance = QUANTIZE_TOLERANCE if config.int8 else FP32_TOLERANCE
    verification = Verification(scored_on, len(texts), float(diff.max()), float(np.quantile(diff, 0.99)), tolerance)
    if config.int8:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notice that its quantized tensors are deprecated
            torch_int8 = score_texts(load_scorer(load_model(model.path), replace(engine, quantize=True)), texts)
        verification.torch_int8_max_abs_diff = _max_diff(torch_int8, reference, valid)
    if labelled is not None:
        from emocli.training.metrics import macro_f1

        thresholds = np.asarray(model.info.thresholds, dtype=np.float32)
        verification.macro_f1_torch = macro_f1(reference, labelled.targets, labelled.mask, thresholds)
        verification.macro_f1_onnx = macro_f1(exported, labelled.targets, labelled.mask, thresholds)
    return verification


def _max_diff(scores: np.ndarray, reference: np.ndarray, valid: np.ndarray) -> float:
    return float(np.abs(scores[valid] - reference[valid]).max()) if valid.any() else 0.0


def _verification_texts(model: "EmotionModel", dev: tuple[str, ...]):
    if not dev:
        return list(PROBE_TEXTS), None, f"{len(PROBE_TEXTS)} built-in probe texts"
    from emocli.training.labelled import load_labelled

    labelled = load_labelled(list(dev), labels=model.labels)
    return labelled.texts, labelled, "dev: " + ", ".join(str(p) for p in labelled.files)


__all__ = ["F1_TOLERANCE", "FP32_TOLERANCE", "OPSET", "OnnxExportConfig", "OnnxExportResult", "Verification",
           "cached_export", "check_exportable", "cpu_has_vnni", "export_onnx", "fuse_transformer_graph",
           "fusable_encoder", "int8_weight_bits", "quantize_int8", "split_skip_layer_norms", "trace_to_onnx",
           "verify_export"]
