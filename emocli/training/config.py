"""The training configs and their choices, free of numpy and torch so the CLI builds its flags from them.

`emocli --help` imports this module: the defaults and choices shown there are these, never restated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emocli.errors import InputError
from emocli.model.heads import ArchitectureConfig


LOSSES = ("bce", "weighted-bce", "focal", "asymmetric", "hybrid")
CLASS_WEIGHTS = ("inverse", "sqrt-inverse", "effective-number")


@dataclass(frozen=True)
class LossConfig:
    name: str = "asymmetric"  # the best measured at full scale (benchmarks/results/quality-search-h100-minilm.md)
    class_weights: str = "sqrt-inverse"
    effective_beta: float = 0.999
    focal_gamma: float = 2.0
    asl_gamma_pos: float = 0.0
    asl_gamma_neg: float = 4.0
    asl_margin: float = 0.05
    lambda_corr: float = 0.1
    lambda_con: float = 0.1
    contrastive_temperature: float = 0.1

    def __post_init__(self):
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSSES)}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"unknown class weights {self.class_weights!r}; choose one of {', '.join(CLASS_WEIGHTS)}")

    @property
    def uses_class_weights(self) -> bool:
        return self.name in ("weighted-bce", "focal", "hybrid")

    @property
    def needs_embeddings(self) -> bool:
        return self.name == "hybrid" and self.lambda_con > 0


THRESHOLD_MODES = ("per-class", "fixed")
THRESHOLD_SOURCES = ("auto", "dev", "cv")


@dataclass(frozen=True)
class ThresholdConfig:
    mode: str = "per-class"
    fixed: float = 0.5
    source: str = "auto"  # auto: dev when it has enough positives of every label, else cv over train
    cv_folds: int = 3
    min_positives: int = 5
    low: float = 0.05
    high: float = 0.95
    few_low: float = 0.3
    few_high: float = 0.7
    step: float = 0.01

    def __post_init__(self):
        if self.mode not in THRESHOLD_MODES:
            raise ValueError(f"unknown threshold mode {self.mode!r}; choose one of {', '.join(THRESHOLD_MODES)}")
        if self.source not in THRESHOLD_SOURCES:
            raise ValueError(f"unknown threshold source {self.source!r}; choose one of {', '.join(THRESHOLD_SOURCES)}")
        if not 0.0 < self.fixed < 1.0:
            raise ValueError(f"threshold {self.fixed} must lie strictly between 0 and 1")


@dataclass(frozen=True)
class DistillConfig:
    teacher: str | None = None  # registry name, Hub id or directory of a fine-tuned emocli model
    unlabeled: tuple[str, ...] = ()  # CSV/Parquet files, globs or directories with a text column
    weight: float = 1.0  # of the distillation term next to the labelled loss
    max_texts: int = 20000  # a random sample of the unlabeled texts when there are more
    batch_size: int | None = None  # default: the labelled batch size
    on_train_texts: bool = False  # distil on the training texts too (what `finetune --folds K --distill` does)

    def __post_init__(self):
        if self.teacher and not (self.unlabeled or self.on_train_texts):
            raise InputError("--teacher needs unlabeled texts to distil on", hint="pass --unlabeled FILE (repeatable)")
        if self.unlabeled and not self.teacher:
            raise InputError("--unlabeled is only used for distillation", hint="pass --teacher MODEL as well")
        if self.weight < 0 or self.max_texts < 1:
            raise InputError("--distill-weight must be >= 0 and the unlabeled sample at least 1 text")

    @property
    def enabled(self) -> bool:
        return bool(self.teacher)


@dataclass(frozen=True)
class RegularizationConfig:
    """Regularizers of the training loop (emocli.training.regularizers); all off by default: none has beaten seed
    noise yet (benchmarks/results/quality-regularizers-cpu-minilm.md)."""

    ema_decay: float | None = None  # exponential moving average of the weights; they evaluate, tune and are saved
    llrd: float | None = None  # layer-wise LR decay: top encoder layer at lr, each layer below x llrd, embeddings last
    rdrop: float = 0.0  # R-Drop alpha: two dropout passes, + alpha * their symmetric KL; 0: one pass

    def __post_init__(self):
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay {self.ema_decay} must lie strictly between 0 and 1 (e.g. 0.99)")
        if self.llrd is not None and not 0.0 < self.llrd <= 1.0:
            raise ValueError(f"--llrd {self.llrd} must lie in (0, 1] (e.g. 0.8)")
        if not self.rdrop >= 0.0:
            raise ValueError(f"--rdrop {self.rdrop} must be >= 0 (0: off)")


@dataclass(frozen=True)
class DataSpec:
    """How to read labelled files: which column holds the text and which columns are labels."""

    text_col: str = "text"
    id_col: str = "id"
    labels: tuple[str, ...] | None = None  # None: detect from the columns
    drop_empty_labels: bool = False


@dataclass(frozen=True)
class EnsembleConfig:
    """`--folds K`: K cross-fitted members saved as one ensemble; `--distill`: then one student trained on its scores."""

    folds: int = 1  # 1: one model
    distill: bool = False
    unlabeled: tuple[str, ...] = ()  # more texts for the student (CSV/Parquet with the text column)

    def __post_init__(self):
        if self.folds < 1:
            raise InputError(f"--folds {self.folds} must be at least 2 (or 1 for a single model)")
        if self.distill and self.folds < 2:
            raise InputError("--distill distils a cross-fitted ensemble", hint="pass --folds K (K >= 2) as well")

    @property
    def enabled(self) -> bool:
        return self.folds > 1


# --recipe NAME: EnsembleConfig fields. Named for what they do: none is called "best" until the full protocol
# (benchmarks/gpu/folds.sh) shows it wins (benchmarks/results/quality-folds-cpu-minilm.md has the CPU rows so far)
RECIPES = {"default": {}, "folds5-distill": {"folds": 5, "distill": True}}
SAMPLERS = ("shuffle", "label-balanced")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
DEFAULT_OUT = Path("emocli-model")
HEADLINE_MIN_ROWS = 30


@dataclass(frozen=True)
class TrainConfig:
    """Everything one fine-tune needs; the CLI builds it from flags, notebooks build it directly."""

    train: tuple[str, ...]
    dev: tuple[str, ...] = ()
    out: Path = DEFAULT_OUT
    base: str | None = None  # registry name, Hub id or directory; None: the registry's default_base
    data: DataSpec = DataSpec()
    loss: LossConfig = LossConfig()
    thresholds: ThresholdConfig = ThresholdConfig()  # per-class: with the asymmetric loss, the best measured
    architecture: ArchitectureConfig = ArchitectureConfig()  # --arch / --head (emocli.model.heads)
    distill: DistillConfig = DistillConfig()  # --teacher / --unlabeled (emocli.training.distill)
    sampler: str = "shuffle"
    epochs: int = 5
    batch_size: int = 16
    learning_rate: float = 1e-4
    head_learning_rate: float | None = None  # None: learning_rate; a fresh head often wants more than the encoder
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 64
    gradient_accumulation: int = 1
    patience: int = 2
    seed: int = 42
    mixed_precision: str = "auto"
    max_steps: int | None = None  # cap on optimizer steps (smoke runs)
    eval_batch_size: int = 64
    register: str | None = None
    progress: bool = True
    # the headline: rows held out of everything (training, early stopping, thresholds), per language, unless
    # dev_held_out declares --dev that part; 0 (or too few rows, < HEADLINE_MIN_ROWS): no honest figure, a warning
    score_fraction: float = 0.1
    dev_held_out: bool = False
    ensemble: EnsembleConfig = EnsembleConfig()  # --folds / --distill (emocli.training.folds)
    regularization: RegularizationConfig = RegularizationConfig()  # --ema-decay / --llrd / --rdrop

    def __post_init__(self):
        if not 0.0 <= self.score_fraction < 0.5:
            raise ValueError(f"score fraction {self.score_fraction} must lie in [0, 0.5)")
        if self.dev_held_out and not self.dev:
            raise InputError("--dev-held-out needs dev data", hint="pass --dev FILE")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"unknown mixed precision {self.mixed_precision!r}")
        for name in ("epochs", "batch_size", "max_length", "gradient_accumulation", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True)
class EvalConfig:
    model: str | None
    data: tuple[str, ...]
    spec: DataSpec = DataSpec()
    threshold: float | None = None  # one threshold for every label, overriding the model's
    batch_size: int = 64  # at most this many rows per forward pass (the engine's token budget also applies)
    device: str = "auto"
    max_length: int | None = None
