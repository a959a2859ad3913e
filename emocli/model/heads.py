"""Custom architectures from the research: task heads on an encoder, a small non-transformer model, stacking.

Entry points for training and inference code:
- `build_model(arch, head, base_dir, labels)` -> (tokenizer, module) ready to fine-tune;
- `save_custom(out_dir, module, tokenizer, info)` writes model.safetensors + config.json (the architecture,
  with the encoder's config inside, so it loads with no network) + tokenizer files + emocli.json;
- `load_custom(model_dir, info, device=, dtype=)` -> EmotionModel (the loader `emocli.model.io.LOADERS` names
  for each of HEAD_ARCHITECTURES): safetensors only, no pickle, no remote code;
- `loader_for(info)` names the loader a model needs ("transformers" or "emocli").

The modules are called like a transformers classifier: `module(input_ids=, attention_mask=,
token_type_ids=)` returns an output with `.logits` and `.pooled`. This module imports torch only inside
functions, so `models info` can ask `loader_for` cheaply.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from emocli.errors import InputError, ModelNotFoundError
from emocli.model.info import read_json, ready_model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HEADS = ("linear", "cnn-bilstm-attn", "label-attention")
ARCHS = ("transformer", "small")
HEAD_ARCHITECTURES = ("cnn-bilstm-attn", "label-attention", "small")  # what load_custom loads
SMALL_LEARNING_RATE = 2e-3  # the small model starts far from a solution: it wants a larger step than an encoder


class LabelledConfig:
    """What transformers-style code reads from `module.config`: num_labels, id2label, label2id, problem_type."""

    labels: tuple[str, ...]
    problem_type = "multi_label_classification"

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


@dataclass(frozen=True)
class ArchConfig(LabelledConfig):
    """Everything needed to rebuild a custom module before loading its weights (saved as config.json)."""

    architecture: str  # "cnn-bilstm-attn" | "label-attention" | "small"
    labels: tuple[str, ...]
    input_dim: int  # the encoder's hidden size, or the small model's embedding size
    kernel_sizes: tuple[int, ...] = (2, 3, 4)
    conv_channels: int = 128
    lstm_hidden: int = 128
    dropout: float = 0.1
    vocab_size: int = 0  # small model only
    pad_token_id: int = 0  # small model only
    encoder: dict[str, Any] = field(default_factory=dict)  # the encoder's transformers config (heads only)

    def to_json(self) -> dict[str, Any]:
        # no "model_type": plain transformers refuses this directory instead of loading it half-initialised
        return {"emocli_architecture": self.architecture, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArchConfig":
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["labels"] = tuple(data["labels"])
        data["kernel_sizes"] = tuple(data.get("kernel_sizes", (2, 3, 4)))
        return cls(**data)


@dataclass(frozen=True)
class SmallOptions:
    """Sizes of the small model; the embedding is the base encoder's, projected down to embedding_dim."""

    embedding_dim: int = 128
    conv_channels: int = 64  # 64/64: ~3x the CPU throughput of 128/128, -0.035 dev macro-F1 (benchmarks/results)
    lstm_hidden: int = 64
    kernel_sizes: tuple[int, ...] = (2, 3, 4)
    dropout: float = 0.1


@dataclass(frozen=True)
class ArchitectureConfig:
    """`finetune --arch/--head`: which model to build on the base (the default is the plain transformers one)."""

    arch: str = "transformer"
    head: str = "linear"
    small: SmallOptions = SmallOptions()

    def __post_init__(self):
        architecture_name(self.arch, self.head)  # one clear error for a bad combination

    @property
    def name(self) -> str:
        """The architecture emocli.json will record."""
        return architecture_name(self.arch, self.head)


def build_for(config: ArchitectureConfig, base_dir: Path, labels):
    """build_model for an ArchitectureConfig."""
    return build_model(config.arch, config.head, base_dir, labels, small=config.small)


def loader_for(info: Any) -> str:
    """Which loader a model needs: "transformers" (plain AutoModelForSequenceClassification) or "emocli"."""
    return "transformers" if getattr(info, "architecture", "transformers") == "transformers" else "emocli"


def architecture_name(arch: str, head: str | None) -> str:
    """The `architecture` recorded in emocli.json for a --arch/--head choice."""
    if arch not in ARCHS:
        raise InputError(f"unknown --arch {arch!r}", hint=f"choose one of: {', '.join(ARCHS)}")
    head = head or "linear"
    if head not in HEADS:
        raise InputError(f"unknown --head {head!r}", hint=f"choose one of: {', '.join(HEADS)}")
    if arch == "small":
        if head not in ("linear", "cnn-bilstm-attn"):
            raise InputError(f"--head {head} does not apply to --arch small",
                             hint="the small model has its own convolution/BiLSTM/attention head")
        return "small"
    return "transformers" if head == "linear" else head


def build_model(arch: str, head: str | None, base_dir: Path, labels, *, small: SmallOptions | None = None):
    """(tokenizer, module) for fine-tuning: a base encoder with the chosen head, or the small model."""
    from emocli.model.info import quiet_transformers
    from emocli.model.plain import load_for_finetune

    labels = tuple(labels)
    name = architecture_name(arch, head)
    if name == "transformers":
        return load_for_finetune(base_dir, labels)
    quiet_transformers()
    tokenizer, encoder = _load_base(Path(base_dir))
    if name == "small":
        return tokenizer, _build_small(encoder, tokenizer, labels, small or SmallOptions())
    config = ArchConfig(name, labels, int(encoder.config.hidden_size), encoder=encoder.config.to_dict())
    return tokenizer, _assemble(config, encoder)


def _load_base(base_dir: Path):
    from transformers import AutoModel, AutoTokenizer

    if (base_dir / CONFIG_FILE).exists() and "emocli_architecture" in read_json(base_dir / CONFIG_FILE):
        raise InputError(f"{base_dir}: an emocli custom model cannot be a base encoder",
                         hint="use a transformers encoder (e.g. all-minilm-l6-v2) as --base")
    tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=False)
    encoder = AutoModel.from_pretrained(base_dir, use_safetensors=True, trust_remote_code=False)
    return tokenizer, encoder


def _build_small(encoder, tokenizer, labels, options: SmallOptions):
    import torch

    from emocli.model.head_modules import reduce_embeddings

    matrix = encoder.get_input_embeddings().weight
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    dim = min(options.embedding_dim, matrix.shape[1])
    config = ArchConfig("small", labels, dim, options.kernel_sizes, options.conv_channels, options.lstm_hidden,
                        options.dropout, vocab_size=int(matrix.shape[0]), pad_token_id=int(pad_id))
    module = _assemble(config)
    with torch.no_grad():
        module.embeddings.weight.copy_(reduce_embeddings(matrix, dim))
    return module


def _assemble(config: ArchConfig, encoder=None):
    """The module for a config; the encoder is built from its saved config when not given (loading)."""
    from emocli.model.head_modules import ConvBiLstmAttention, EncoderWithHead, LabelAttention, SmallClassifier

    block = dict(kernel_sizes=config.kernel_sizes, conv_channels=config.conv_channels,
                 lstm_hidden=config.lstm_hidden, dropout=config.dropout)
    if config.architecture == "small":
        module = SmallClassifier(config.vocab_size, config.input_dim, config.num_labels, config.pad_token_id, **block)
    else:
        if encoder is None:
            encoder = _encoder_from_config(config.encoder)
        if config.architecture == "cnn-bilstm-attn":
            head = ConvBiLstmAttention(config.input_dim, config.num_labels, **block)
        elif config.architecture == "label-attention":
            head = LabelAttention(config.input_dim, config.num_labels, dropout=config.dropout)
        else:
            raise InputError(f"unknown architecture {config.architecture!r}",
                             hint=f"known: {', '.join(HEAD_ARCHITECTURES)}")
        module = EncoderWithHead(encoder, head)
    module.emocli_config = config
    module.config = config  # what transformers-style training code reads (num_labels, id2label, problem_type)
    return module


def _encoder_from_config(encoder_config: dict[str, Any]):
    from transformers import AutoConfig, AutoModel

    data = dict(encoder_config)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise InputError("the saved head model has no encoder config (model_type missing)")
    return AutoModel.from_config(AutoConfig.for_model(model_type, **data), trust_remote_code=False)


def is_custom_module(module: Any) -> bool:
    return getattr(module, "emocli_config", None) is not None


def save_weights(module, path: Path) -> None:
    """safetensors of a module's state, as standalone CPU copies: on CUDA, cuDNN packs an LSTM's weights into one
    shared buffer, which safetensors refuses to write as it stands."""
    from safetensors.torch import save_file

    save_file({name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in module.state_dict().items()},
              str(path), metadata={"format": "pt"})


def save_custom(out_dir: Path, module, tokenizer, info) -> Path:
    """Write a custom model directory: safetensors weights, architecture config, tokenizer, emocli.json."""
    from emocli.model.info import write_model_info

    config: ArchConfig = module.emocli_config
    if tuple(info.labels) != config.labels:
        raise InputError(f"the model has labels {list(config.labels)} but emocli.json would say {list(info.labels)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(module, out_dir / WEIGHTS_FILE)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(out_dir)
    write_model_info(out_dir, replace(info, architecture=config.architecture))
    return out_dir


def load_custom(model_dir: Path, info, *, device: str = "cpu", dtype: str | None = None):
    """Load a model of one of HEAD_ARCHITECTURES for inference -> EmotionModel."""
    model_dir = Path(model_dir)
    module = load_module(model_dir)
    if module.emocli_config.labels != tuple(info.labels):
        raise InputError(f"{model_dir}: config.json and emocli.json name different labels")
    return ready_model(model_dir, info, load_tokenizer(model_dir), module, device, dtype)


def load_module(model_dir: Path):
    """The module of a custom model directory with its weights (safetensors, strict key match)."""
    from safetensors.torch import load_model as load_safetensors

    from emocli.model.info import quiet_transformers

    quiet_transformers()
    weights = model_dir / WEIGHTS_FILE
    if not weights.exists():
        raise ModelNotFoundError(f"{model_dir}: no {WEIGHTS_FILE} (emocli loads safetensors weights only)")
    config = ArchConfig.from_json(read_json(model_dir / CONFIG_FILE))
    module = _assemble(config)
    load_safetensors(module, str(weights), strict=True)
    return module


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
