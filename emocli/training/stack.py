"""Stacking, the trainer: frozen fine-tuned emocli models ("members") under a BiLSTM meta-learner.

The meta-learner trains on precomputed member features with any emocli loss (hybrid by default) and gets
per-class thresholds like any fine-tune; the result is saved as a stack model directory
(`emocli.model.stack`, which documents the format).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from emocli.errors import InputError
from emocli.model.stack import ARCHITECTURE, MemberRef, StackSpec, new_meta, save_stack, weights_fingerprint
from emocli.model.stack_modules import StackMeta, StackModel
from emocli.progress import NullProgress, Progress, chosen
from emocli.training.labelled import DataSpec, LabelledData, load_labelled
from emocli.training.losses import LossConfig, MultiLabelLoss, label_cooccurrence
from emocli.training.metrics import compute_metrics
from emocli.training.thresholds import ThresholdConfig, choose_threshold_source, tune_thresholds

DEFAULT_OUT = Path("emocli-stack")


@dataclass(frozen=True)
class StackConfig:
    """One `emocli stack` run."""

    members: tuple[str, ...]
    train: tuple[str, ...]
    dev: tuple[str, ...] = ()
    out: Path = DEFAULT_OUT
    data: DataSpec = DataSpec()
    loss: LossConfig = LossConfig(name="hybrid")
    thresholds: ThresholdConfig = ThresholdConfig()
    bundle: bool = False
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    project_dim: int = 128
    lstm_hidden: int = 64
    dropout: float = 0.2
    patience: int = 6
    seed: int = 42
    feature_batch_size: int = 64
    device: str = "cpu"
    register: str | None = None  # registry name; the stack becomes the user's default model for `tag`
    progress: bool = True

    def __post_init__(self):
        if len(self.members) < 2:
            raise InputError("a stack needs at least two members", hint="pass --member M1 --member M2 [--member M3]")
        if not self.train:
            raise InputError("no training data for the meta-learner", hint="pass --train FILE (labelled CSV/Parquet)")
        for name in ("epochs", "batch_size", "project_dim", "lstm_hidden", "feature_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")



@dataclass
class StackResult:
    out_dir: Path
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    dev_metrics: dict | None
    best_epoch: int
    history: list[dict]
    threshold_source: str
    wall_s: float
    train_rows: int



def _load_members(refs: tuple[str, ...], device: str) -> tuple[list, list[Path]]:
    from emocli.hub.pull import resolve_model
    from emocli.model.io import load_model

    members, paths = [], []
    for ref in refs:
        resolved = resolve_model(ref)
        member = load_model(resolved.path, resolved.spec, device=device)
        if member.info.architecture == ARCHITECTURE:
            raise InputError(f"member {ref!r} is itself a stack; stack fine-tuned models, not stacks")
        members.append(member)
        paths.append(Path(resolved.path))
    return members, paths



# -- training ----------------------------------------------------------------------------------------------------

def extract_features(module: StackModel, texts: list[str], *, max_length: int, batch_size: int,
                     progress: Progress | None = None) -> list[np.ndarray]:
    """Every member's vector for every text (n, d_i), computed exactly as the stack computes them when tagging."""
    device = next(module.members.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[np.ndarray] | None = None
    module.eval()
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = module.tokenizer([texts[i] for i in index], truncation=True, max_length=max_length, padding=True,
                                 return_tensors="pt").to(device)
        with torch.inference_mode():
            features = module.member_features(batch["input_ids"], batch["attention_mask"])
        if out is None:
            out = [np.zeros((len(texts), f.shape[1]), dtype=np.float32) for f in features]
        for array, f in zip(out, features):
            array[index] = f.cpu().numpy()
        if progress is not None:
            progress.advance(len(index))
    return out


def _meta_scores(meta: StackMeta, features: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
    meta.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(features[0]), batch_size):
            logits, _ = meta([torch.from_numpy(f[start:start + batch_size]) for f in features])
            parts.append(torch.sigmoid(logits).numpy())
    return np.concatenate(parts)


@dataclass
class _MetaFit:
    meta: StackMeta
    best_epoch: int = 0
    dev_scores: np.ndarray | None = None
    history: list[dict] = field(default_factory=list)


def train_meta(spec: StackSpec, config: StackConfig, train_x: list[np.ndarray], train: LabelledData,
               dev_x: list[np.ndarray] | None = None, dev: LabelledData | None = None,
               epochs: int | None = None) -> _MetaFit:
    """Train the meta-learner on member features; with dev, keep the epoch with the best dev macro-F1."""
    torch.manual_seed(config.seed)
    meta = new_meta(spec)
    loss_fn = MultiLabelLoss(config.loss, train.positives(), train.known(),
                             label_cooccurrence(train.targets, train.mask))
    optimizer = torch.optim.AdamW(meta.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    x = [torch.from_numpy(f) for f in train_x]
    targets = torch.from_numpy(train.targets.astype(np.float32))
    mask = torch.from_numpy(train.mask)
    generator = torch.Generator().manual_seed(config.seed)
    fit = _MetaFit(meta)
    best_f1, best_state, bad = -1.0, None, 0
    for epoch in range(1, (epochs or config.epochs) + 1):
        meta.train()
        total, batches = 0.0, 0
        for index in torch.randperm(len(train), generator=generator).split(config.batch_size):
            logits, pooled = meta([f[index] for f in x])
            loss = loss_fn(logits, targets[index], mask[index], pooled).total
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        record = {"epoch": epoch, "train_loss": total / max(batches, 1)}
        if dev is not None:
            scores = _meta_scores(meta, dev_x)
            thresholds = tune_thresholds(scores, dev.targets, dev.mask, config.thresholds)
            f1 = compute_metrics(scores, dev.targets, dev.mask, thresholds, dev.labels)["macro_f1"]
            record["dev_macro_f1"] = f1
            if f1 > best_f1:
                best_f1, bad, fit.best_epoch, fit.dev_scores = f1, 0, epoch, scores
                best_state = {k: v.detach().clone() for k, v in meta.state_dict().items()}
            else:
                bad += 1
        else:
            fit.best_epoch = epoch
        fit.history.append(record)
        if dev is not None and bad >= config.patience:
            break
    if best_state is not None:
        meta.load_state_dict(best_state)
    meta.eval()
    return fit


def _cv_scores(spec: StackSpec, config: StackConfig, train_x: list[np.ndarray], train: LabelledData,
               epochs: int) -> np.ndarray:
    """Out-of-fold meta-learner scores on train (cheap: the member features are already computed)."""
    folds = max(2, config.thresholds.cv_folds)
    order = np.random.default_rng(config.seed).permutation(len(train))
    scores = np.zeros(train.targets.shape, dtype=np.float32)
    for held_out in np.array_split(order, folds):
        rest = np.setdiff1d(np.arange(len(train)), held_out)
        fit = train_meta(spec, config, [f[rest] for f in train_x], train.subset(rest), epochs=epochs)
        scores[held_out] = _meta_scores(fit.meta, [f[held_out] for f in train_x])
    return scores


def _thresholds(source: str, fit: _MetaFit, spec: StackSpec, config: StackConfig, train_x, train, dev):
    if source == "fixed":
        return np.full(spec.num_labels, config.thresholds.fixed)
    if source == "dev":
        return tune_thresholds(fit.dev_scores, dev.targets, dev.mask, config.thresholds)
    scores = _cv_scores(spec, config, train_x, train, max(fit.best_epoch, 1))
    return tune_thresholds(scores, train.targets, train.mask, config.thresholds)


def build_stack(config: StackConfig, progress: Progress | None = None) -> StackResult:
    """Load the members, compute their features on train/dev, train the meta-learner, tune thresholds, save.

    Feature extraction reports to `progress` (default: emocli.progress.current()); none with config.progress False.
    """
    from emocli.model.device import resolve_device
    from emocli.model.io import ModelInfo

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    train = load_labelled(config.train, config.data)
    dev = load_labelled(config.dev, config.data, labels=train.labels) if config.dev else None
    source = choose_threshold_source(config.thresholds, dev)
    members, member_dirs = _load_members(config.members, resolve_device(config.device))  # auto: a GPU if any
    primary = members[0]
    max_length = primary.info.max_length
    module = StackModel(members, None, primary.tokenizer, None)
    dims = _feature_dims(module, max_length)
    refs = tuple(MemberRef(ref, str(path), weights_fingerprint(path), m.info.architecture, dim)
                 for ref, path, m, dim in zip(config.members, member_dirs, members, dims))
    spec = StackSpec(train.labels, refs, config.project_dim, config.lstm_hidden, config.dropout)
    module.config = spec
    progress = chosen(progress) if config.progress else NullProgress()
    progress.start(f"member features ({len(members)} members)", len(train) + (len(dev) if dev is not None else 0))
    try:
        train_x = extract_features(module, train.texts, max_length=max_length,
                                   batch_size=config.feature_batch_size, progress=progress)
        dev_x = (extract_features(module, dev.texts, max_length=max_length, batch_size=config.feature_batch_size,
                                  progress=progress) if dev is not None else None)
    finally:
        progress.finish()
    fit = train_meta(spec, config, train_x, train, dev_x, dev)
    module.meta = fit.meta
    thresholds = _thresholds(source, fit, spec, config, train_x, train, dev)
    dev_metrics = (compute_metrics(fit.dev_scores, dev.targets, dev.mask, thresholds, dev.labels)
                   if dev is not None and fit.dev_scores is not None else None)
    info = ModelInfo(
        labels=train.labels, thresholds=tuple(round(float(t), 4) for t in thresholds), task="multi_label",
        max_length=max_length, architecture=ARCHITECTURE,
        extra={"members": [asdict(r) for r in refs], "loss": asdict(config.loss), "threshold_source": source,
               "threshold_config": asdict(config.thresholds), "best_epoch": fit.best_epoch, "bundled": config.bundle,
               "training": {k: v for k, v in asdict(config).items() if k not in ("data", "loss", "thresholds")}
               | {"out": str(config.out)},
               "data": {"train": train.fingerprints, "dev": dev.fingerprints if dev else {},
                        "train_rows": len(train), "dev_rows": len(dev) if dev else 0},
               "dev_metrics": dev_metrics, "history": fit.history},
    )
    save_stack(config.out, module, info, member_dirs, config.bundle)
    if config.register:
        register_stack(config.register, Path(config.out), info, config.members)
    return StackResult(Path(config.out), train.labels, info.thresholds, dev_metrics, fit.best_epoch, fit.history,
                       source, time.perf_counter() - started, len(train))


def register_stack(name: str, out_dir: Path, info, members: tuple[str, ...]) -> Path:
    """Add the stack to the user registry as a `path` entry and make it the user's default for `tag`."""
    from emocli.hub.registry import ModelSpec, register_model

    spec = ModelSpec(name=name, path=str(out_dir.resolve()), task=info.task, role="emotion", labels=info.labels,
                     thresholds=info.threshold_map(), max_length=info.max_length,
                     description=f"emocli stack of {', '.join(members)}")
    return register_model(spec, set_default=True)


def _feature_dims(module: StackModel, max_length: int) -> list[int]:
    batch = module.tokenizer(["probe"], truncation=True, max_length=max_length, return_tensors="pt")
    device = next(module.members.parameters()).device
    features = module.member_features(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    return [int(f.shape[1]) for f in features]


__all__ = ["StackConfig", "StackResult", "build_stack", "extract_features", "train_meta", "register_stack"]
