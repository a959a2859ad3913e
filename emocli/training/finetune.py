"""Fine-tuning of multi-label emotion models (the library behind `finetune`; `evaluate` is emocli.inference.evaluate).

    from emocli.training.finetune import TrainConfig, finetune
    result = finetune(TrainConfig(train=("data/train/eng.csv",), dev=("data/dev/eng.csv",), out=Path("m")))

Training runs through `accelerate` (fp32 on CPU, bf16/fp16 on GPU, gradient accumulation, several GPUs
under `accelerate launch`): AdamW, linear warm-up then cosine decay, early stopping on dev macro-F1,
best checkpoint kept. torch and transformers are imported inside functions.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from emocli.errors import InputError
from emocli.progress import NullProgress, Progress, chosen
from emocli.training.config import (DistillConfig, EnsembleConfig, RegularizationConfig,  # the configs live
                                    ThresholdConfig, TrainConfig)  # there, numpy-free
from emocli.training.distill import describe as describe_distillation
from emocli.training.folds import ENSEMBLE_DIR, OPTIMISTIC_OOF, CrossFit, Member, cross_fit, fold_index, student_rows
from emocli.training.holdout import OPTIMISTIC_DEV, Rows, headline, plan_rows
from emocli.training.labelled import LabelledData, load_labelled
from emocli.training.losses import label_cooccurrence
from emocli.training.metrics import compute_metrics, macro_f1
from emocli.training.thresholds import choose_threshold_source, tune_thresholds

HISTORY_FILE = "history.jsonl"
CURVES_FILE = "training_curves.png"
TRAIN_GUESSES = ("train.csv", "train.parquet", "data/train*.csv", "data/train*.parquet", "data/train/*.csv",
                 "data/train/*.parquet")


@dataclass
class TrainResult:
    out_dir: Path
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    dev_metrics: dict | None
    best_epoch: int
    history: list[dict]
    threshold_source: str
    wall_s: float
    train_rows: int  # the rows that trained (after the headline's rows were held out)
    skipped_texts: int = 0
    headline: dict | None = None  # scored on rows that trained, stopped and tuned nothing (or a warning why none)
    extra: dict = field(default_factory=dict)  # the ensemble / distillation records
    notes: list[str] = field(default_factory=list)  # one-line hints about the recipe, for the caller to show


@dataclass
class _Fit:
    """A trained module plus what the loop saw."""

    module: Any
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    dev_scores: np.ndarray | None = None


def guess_train_files(cwd: Path | None = None) -> tuple[str, ...]:
    """./train.csv, ./train.parquet or ./data/train*: what `emocli finetune` with no --train uses."""
    import glob

    cwd = Path(cwd or Path.cwd())
    for pattern in TRAIN_GUESSES:
        matches = sorted(glob.glob(str(cwd / pattern)))
        if matches:
            return tuple(matches)
    return ()


def _mixed_precision(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _scores(module, tokenizer, labels, texts: list[str], config: TrainConfig, autocast) -> np.ndarray:
    """The engine's scores of a model being trained (dev epochs, out-of-fold rows)."""
    from emocli.inference.engine import score_texts, scorer_for_module

    scorer = scorer_for_module(module, tokenizer, labels, max_length=config.max_length,
                               max_batch_rows=config.eval_batch_size, autocast=autocast)
    return score_texts(scorer, texts)


def sample_weights(targets: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Label-balanced sampling: weight of a text = 1 / frequency of its rarest positive label.

    Texts with no positive label count as one more class ("none") with its own frequency.
    """
    known = np.maximum(mask.sum(axis=0), 1)
    freq = (targets * mask).sum(axis=0) / known
    positive = (targets * mask) > 0
    none = ~positive.any(axis=1)
    none_freq = max(none.mean(), 1.0 / len(targets))
    rarest = np.where(positive, freq[None, :], np.inf).min(axis=1)
    rarest = np.where(none, none_freq, rarest)
    weights = 1.0 / np.maximum(rarest, 1e-6)
    return weights / weights.sum()


class _Batches:
    """Pre-tokenised rows; the collate pads a batch and carries targets and the known-label mask."""

    def __init__(self, tokenizer, data: LabelledData, max_length: int):
        self.tokenizer = tokenizer
        self.encodings = tokenizer(data.texts, truncation=True, max_length=max_length)["input_ids"]
        self.targets = data.targets
        self.mask = data.mask

    def __len__(self) -> int:
        return len(self.encodings)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, index: list[int]):
        import torch

        batch = self.tokenizer.pad({"input_ids": [self.encodings[i] for i in index]}, return_tensors="pt")
        batch["labels_"] = torch.tensor(self.targets[index], dtype=torch.float32)
        batch["mask_"] = torch.tensor(self.mask[index], dtype=torch.bool)
        return batch


class LengthBucketBatches:
    """Batches of similar length (far less padding on CPU): draw an epoch's rows (shuffled, or weighted with
    replacement for the label-balanced sampler), sort chunks of 50 batches by length, shuffle the batches."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, weights: np.ndarray | None = None,
                 chunk_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.weights = weights
        self.chunk = batch_size * chunk_batches
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        n = len(self.lengths)
        rows = rng.choice(n, size=n, replace=True, p=self.weights) if self.weights is not None else rng.permutation(n)
        batches = []
        for start in range(0, n, self.chunk):
            chunk = rows[start:start + self.chunk]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        for i in rng.permutation(len(batches)):
            yield batches[i]


def _loader(batches: _Batches, data: LabelledData, config: TrainConfig):
    from torch.utils.data import DataLoader

    weights = sample_weights(data.targets, data.mask) if config.sampler == "label-balanced" else None
    sampler = LengthBucketBatches([len(ids) for ids in batches.encodings], config.batch_size, config.seed, weights)
    return DataLoader(batches, batch_sampler=sampler, collate_fn=batches.collate)


def _mean_pooled(hidden, attention_mask):
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _epoch_thresholds(scores, data: LabelledData, config: ThresholdConfig) -> np.ndarray:
    return tune_thresholds(scores, data.targets, data.mask, config)


def _parameter_groups(module, config: TrainConfig) -> list[dict]:
    """AdamW groups: no decay on biases and norms; the head (all but the pretrained encoder) at its own rate;
    with --llrd each encoder layer at lr x llrd^depth (emocli.training.regularizers.layer_scales)."""
    from emocli.training.regularizers import layer_scales, pretrained_encoder

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    encoder = pretrained_encoder(module)
    encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else None
    llrd = config.regularization.llrd
    scales = layer_scales(module, llrd) if llrd is not None else {}
    groups: dict[tuple[bool, float, bool], list] = {}
    for name, param in module.named_parameters():
        is_head = encoder_ids is not None and id(param) not in encoder_ids
        scale = 1.0 if is_head else scales.get(id(param), 1.0)
        groups.setdefault((is_head, scale, any(k in name for k in no_decay)), []).append(param)
    head_lr = config.head_learning_rate or config.learning_rate
    return [{"params": params, "weight_decay": 0.0 if decay_free else config.weight_decay,
             "lr": head_lr if is_head else config.learning_rate * scale}
            for (is_head, scale, decay_free), params in sorted(groups.items())]


@dataclass
class _Loop:
    """The prepared training objects and the counters that run across epochs."""

    accelerator: Any
    module: Any
    optimizer: Any
    scheduler: Any
    loader: Any
    loss_fn: Any
    distiller: Any
    config: TrainConfig
    ema: Any = None  # regularizers.WeightEMA with --ema-decay
    step: int = 0  # optimizer steps
    seen: int = 0  # rows, all processes
    started: float = field(default_factory=time.perf_counter)

    @property
    def out_of_steps(self) -> bool:
        return bool(self.config.max_steps) and self.step >= self.config.max_steps

    def averaged(self):
        """The weights that evaluate, tune and are saved: the EMA's with --ema-decay, else the live ones."""
        return self.ema.applied() if self.ema is not None else nullcontext()


@dataclass
class EarlyStopping:
    """Keep the weights of the epoch with the best dev macro-F1; stop after `patience` epochs without a gain."""

    patience: int
    best_f1: float = -1.0
    best_epoch: int = 0
    best_scores: np.ndarray | None = None
    best_state: dict | None = None
    bad_epochs: int = 0

    def update(self, epoch: int, macro_f1: float, scores: np.ndarray, module) -> None:
        if macro_f1 > self.best_f1:
            self.best_f1, self.bad_epochs, self.best_epoch, self.best_scores = macro_f1, 0, epoch, scores
            self.best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        else:
            self.bad_epochs += 1

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


class _History:
    """The per-epoch records, also appended to out_dir/history.jsonl as each epoch ends (main process only)."""

    def __init__(self, out_dir: Path | None, write: bool):
        self.records: list[dict] = []
        self.path = out_dir / HISTORY_FILE if out_dir is not None and write else None
        if self.path is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self.path.write_text("", encoding="utf-8")

    def append(self, record: dict) -> None:
        self.records.append(record)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


def _prepare_loop(config: TrainConfig, base_dir: Path, train: LabelledData) -> tuple[_Loop, Any, int]:
    """Seed, build the model, loader, optimizer, schedule and loss, and hand them to accelerate."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    from emocli.training.distill import prepare as prepare_distillation
    from emocli.model.heads import build_for
    from emocli.training.losses import MultiLabelLoss
    from emocli.training.regularizers import RDropLoss, WeightEMA

    accelerator = Accelerator(mixed_precision=_mixed_precision(config.mixed_precision),
                              gradient_accumulation_steps=config.gradient_accumulation)
    set_seed(config.seed)
    tokenizer, module = build_for(config.architecture, base_dir, train.labels)
    batches = _Batches(tokenizer, train, config.max_length)
    distiller = prepare_distillation(config.distill, tokenizer, train.labels, text_col=config.data.text_col,
                                     max_length=config.max_length, batch_size=config.batch_size, seed=config.seed,
                                     device=str(accelerator.device), train_texts=train.texts)
    loader = _loader(batches, train, config)
    optimizer = torch.optim.AdamW(_parameter_groups(module, config), lr=config.learning_rate)
    steps_per_epoch = math.ceil(len(loader) / config.gradient_accumulation)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    loss_fn = MultiLabelLoss(config.loss, train.positives(), train.known(),
                             label_cooccurrence(train.targets, train.mask))
    if config.regularization.rdrop > 0:
        loss_fn = RDropLoss(loss_fn, config.regularization.rdrop)
    module, optimizer, loader, scheduler = accelerator.prepare(module, optimizer, loader, scheduler)
    ema = (WeightEMA(accelerator.unwrap_model(module), config.regularization.ema_decay)
           if config.regularization.ema_decay is not None else None)
    loop = _Loop(accelerator, module, optimizer, scheduler, loader, loss_fn, distiller, config, ema)
    return loop, tokenizer, total_steps


def _batch_loss(loop: _Loop, batch: dict, targets, mask):
    """The loss of one batch: one forward pass, or with --rdrop one pass over the batch doubled (two dropout masks)."""
    from emocli.training.regularizers import doubled

    needs_embeddings = loop.config.loss.needs_embeddings
    rdrop = loop.config.regularization.rdrop > 0
    inputs = doubled(batch) if rdrop else batch
    output = loop.module(**inputs, output_hidden_states=needs_embeddings)
    embeddings = _mean_pooled(output.hidden_states[-1], inputs["attention_mask"]) if needs_embeddings else None
    if not rdrop:
        return loop.loss_fn(output.logits, targets, mask, embeddings)
    logits_a, logits_b = output.logits.chunk(2)
    embeddings_a, embeddings_b = embeddings.chunk(2) if embeddings is not None else (None, None)
    return loop.loss_fn(logits_a, logits_b, targets, mask, embeddings_a, embeddings_b)


def _train_epoch(loop: _Loop, labels: tuple[str, ...], progress: Progress) -> tuple[Any, Any]:
    """One pass over the loader (or up to max_steps); the summed per-class loss and known counts."""
    import torch

    accelerator, module = loop.accelerator, loop.module
    module.train()
    class_loss = torch.zeros(len(labels))
    class_known = torch.zeros(len(labels))
    running = 0.0
    for batch in loop.loader:
        targets, mask = batch.pop("labels_"), batch.pop("mask_")
        with accelerator.accumulate(module):
            loss = _batch_loss(loop, batch, targets, mask)
            accelerator.backward(loss.total + loop.distiller.loss(module) if loop.distiller else loss.total)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(module.parameters(), 1.0)
            loop.optimizer.step()
            loop.scheduler.step()
            loop.optimizer.zero_grad()
            if loop.ema is not None and accelerator.sync_gradients:
                loop.ema.update()
        class_loss += loss.per_class.float().cpu()
        class_known += loss.known.float().cpu()
        value = float(loss.total.detach())
        running = 0.9 * running + 0.1 * value if loop.seen else value
        loop.seen += len(targets) * accelerator.num_processes
        if accelerator.sync_gradients:
            loop.step += 1
            progress.advance(1, loss=running)
        if loop.out_of_steps:
            break
    return class_loss, class_known


def _epoch_record(epoch: int, loop: _Loop, labels: tuple[str, ...], class_loss, class_known) -> dict:
    elapsed = time.perf_counter() - loop.started
    return {
        "epoch": epoch, "step": loop.step, "train_loss": float(class_loss.sum() / class_known.sum().clamp(min=1)),
        "class_loss": {label: float(class_loss[j] / max(float(class_known[j]), 1.0)) for j, label in enumerate(labels)},
        "lr": float(loop.scheduler.get_last_lr()[0]), "rows_per_s": loop.seen / elapsed,
        "elapsed_s": time.perf_counter() - loop.started,
    }


def _evaluate_epoch(module, tokenizer, labels, dev: LabelledData, config: TrainConfig,
                    autocast) -> tuple[np.ndarray, dict]:
    """Dev scores and metrics at the thresholds tuned on them (what early stopping compares)."""
    scores = _scores(module, tokenizer, labels, dev.texts, config, autocast)
    thresholds = _epoch_thresholds(scores, dev, config.thresholds)
    return scores, compute_metrics(scores, dev.targets, dev.mask, thresholds, dev.labels)


def _fit(config: TrainConfig, base_dir: Path, train: LabelledData, dev: LabelledData | None,
         out_dir: Path | None, progress: Progress) -> tuple[_Fit, Any]:
    """Train one model; with dev, keep the epoch with the best dev macro-F1 and stop after `patience` worse."""
    loop, tokenizer, total_steps = _prepare_loop(config, base_dir, train)
    accelerator = loop.accelerator
    stopping = EarlyStopping(config.patience)
    history = _History(out_dir, write=accelerator.is_main_process)
    last_epoch = 0
    if not accelerator.is_main_process:
        progress = NullProgress()
    progress.start("train", total_steps, "steps")
    try:
        for epoch in range(1, config.epochs + 1):
            progress.advance(0, epoch=f"{epoch}/{config.epochs}")
            class_loss, class_known = _train_epoch(loop, train.labels, progress)
            record = _epoch_record(epoch, loop, train.labels, class_loss, class_known)
            last_epoch = epoch
            if dev is not None:
                unwrapped = accelerator.unwrap_model(loop.module)
                with loop.averaged():  # the EMA's weights are the ones compared, kept and saved
                    scores, metrics = _evaluate_epoch(unwrapped, tokenizer, train.labels, dev, config,
                                                      accelerator.autocast)
                    stopping.update(epoch, metrics["macro_f1"], scores, unwrapped)
                record["dev_macro_f1"] = metrics["macro_f1"]
                record["dev_micro_f1"] = metrics["micro_f1"]
                record["dev_f1"] = {label: m["f1"] for label, m in metrics["per_class"].items()}
                progress.advance(0, dev_macro_F1=f"{metrics['macro_f1']:.3f}")
            history.append(record)
            if (dev is not None and stopping.should_stop) or loop.out_of_steps:
                break
    finally:
        progress.finish()
    module = accelerator.unwrap_model(loop.module)
    if stopping.best_state is not None:
        module.load_state_dict(stopping.best_state)
    elif loop.ema is not None:
        loop.ema.copy_to_module()  # no dev to stop on: the last epoch's averaged weights
    module.eval()
    fit = _Fit(module, history.records, stopping.best_epoch if dev is not None else last_epoch, stopping.best_scores)
    accelerator.wait_for_everyone()
    return fit, (tokenizer, accelerator)


def out_of_fold_scores(config: TrainConfig, base_dir: Path, train: LabelledData) -> np.ndarray:
    """Scores for every train row from a model that did not see it (k folds, same recipe, no early stopping)."""
    if config.thresholds.cv_folds < 2:
        raise InputError("--cv-folds must be at least 2")
    scores = np.zeros(train.targets.shape, dtype=np.float32)
    fold_config = replace(config, progress=False)
    for held_out in fold_index(len(train), config.thresholds.cv_folds, config.seed):
        rest = np.setdiff1d(np.arange(len(train)), held_out)
        fit, (tokenizer, accelerator) = _fit(fold_config, base_dir, train.subset(rest), None, None, NullProgress())
        part = train.subset(held_out)
        scores[held_out] = _scores(fit.module, tokenizer, train.labels, part.texts, config, accelerator.autocast)
    return scores


def _base_info(base: str | None):
    from emocli.hub.pull import resolve_model

    resolved = resolve_model(base, role="base")
    commit = resolved.commit
    if commit is None and resolved.spec is not None and resolved.spec.package:
        from importlib.metadata import PackageNotFoundError, version

        try:
            commit = f"package {resolved.spec.package}=={version(resolved.spec.package.replace('_', '-'))}"
        except PackageNotFoundError:
            commit = None
    return resolved, {"name": resolved.name, "repo": resolved.repo, "commit": commit, "source": resolved.source,
                      "path": str(resolved.path)}


def load_training_data(config: TrainConfig) -> tuple[LabelledData, LabelledData | None]:
    if not config.train:
        raise InputError("no training data: pass --train FILE (CSV or Parquet with a text column and 0/1 label columns)")
    train = load_labelled(config.train, config.data)
    dev = load_labelled(config.dev, config.data, labels=train.labels) if config.dev else None
    return train, dev


def _config_record(config: TrainConfig) -> dict:
    record = asdict(config)
    record["out"] = str(config.out)
    return record


def _single_thresholds(config: TrainConfig, base_dir: Path, rows: Rows, fit: _Fit, source: str) -> np.ndarray:
    if source == "fixed":
        return np.full(len(rows.fit.labels), config.thresholds.fixed)
    if source == "dev":
        return tune_thresholds(fit.dev_scores, rows.tune.targets, rows.tune.mask, config.thresholds)
    return tune_thresholds(out_of_fold_scores(config, base_dir, rows.fit), rows.fit.targets, rows.fit.mask,
                           config.thresholds)


def _score_rows(module, tokenizer, rows: Rows, config: TrainConfig, accelerator) -> np.ndarray | None:
    """A trained module's scores on the headline rows (None without them)."""
    if rows.score is None:
        return None
    return _scores(module, tokenizer, rows.fit.labels, rows.score.texts, config, accelerator.autocast)


@dataclass
class _Outcome:
    """What one recipe (one model, an ensemble, a distilled student) hands back to be described and saved."""

    thresholds: np.ndarray
    source: str
    best_epoch: int
    history: list[dict]
    dev_metrics: dict | None  # scored on the rows that chose the epoch and the thresholds
    headline: dict
    extra: dict
    save: Any  # save(info): write the model to config.out
    is_main: bool = True
    curves: bool = True  # an ensemble's members draw their own


def _finetune_single(config: TrainConfig, base_dir: Path, rows: Rows, out_dir: Path, progress: Progress,
                     info_for=None) -> _Outcome:
    source = choose_threshold_source(config.thresholds, rows.tune)
    fit, (tokenizer, accelerator) = _fit(config, base_dir, rows.fit, rows.tune, out_dir, progress)
    thresholds = _single_thresholds(config, base_dir, rows, fit, source)
    dev_metrics = (compute_metrics(fit.dev_scores, rows.tune.targets, rows.tune.mask, thresholds, rows.tune.labels)
                   if rows.tune is not None and fit.dev_scores is not None else None)
    score = headline(rows, _score_rows(fit.module, tokenizer, rows, config, accelerator), thresholds,
                     config.score_fraction)

    def save(info) -> None:
        from emocli.model.io import save_model

        save_model(out_dir, fit.module, tokenizer, info)

    return _Outcome(thresholds, source, fit.best_epoch, fit.history, dev_metrics, score, {}, save,
                    accelerator.is_main_process)


def _member_trainer(config: TrainConfig, base_dir: Path, rows: Rows, ensemble_dir: Path, progress: Progress):
    """train_member(i, part, held) for folds.cross_fit: _fit on part, early-stopped on held, saved as member i."""
    from emocli.model.ensemble import member_dir
    from emocli.model.io import ModelInfo, save_model

    def train_member(i: int, part: LabelledData, held: LabelledData) -> Member:
        member_config = replace(config, seed=config.seed + i)
        out = member_dir(ensemble_dir, i)
        fit, (tokenizer, accelerator) = _fit(member_config, base_dir, part, held, out, progress)
        thresholds = (np.full(len(part.labels), config.thresholds.fixed) if config.thresholds.mode == "fixed" else
                      tune_thresholds(fit.dev_scores, held.targets, held.mask, config.thresholds))
        info = ModelInfo(labels=part.labels, thresholds=tuple(round(float(t), 4) for t in thresholds),
                         max_length=config.max_length,
                         extra={"ensemble_member": {"index": i, "seed": member_config.seed, "train_rows": len(part),
                                                    "fold_rows": len(held)}, "best_epoch": fit.best_epoch,
                                "regularization": asdict(config.regularization),
                                "threshold_source": "its own fold"})
        if accelerator.is_main_process:
            save_model(out, fit.module, tokenizer, info)
            _write_curves(fit.history, out)
        return Member(out, member_config.seed, fit.best_epoch, fit.dev_scores,
                      _score_rows(fit.module, tokenizer, rows, config, accelerator), fit.history,
                      config.architecture.name)

    return train_member
def _finetune_folds(config: TrainConfig, base_dir: Path, rows: Rows, out_dir: Path, progress: Progress,
                    info_for) -> _Outcome:
    """--folds K: the cross-fitted ensemble, thresholds on its out-of-fold scores; with --distill, its student.

    info_for(outcome) -> the ModelInfo that describes an outcome (the ensemble is saved before its student trains)."""
    from emocli.model.ensemble import member_dir, save_ensemble
    from emocli.model.heads import load_tokenizer

    ensemble_dir = out_dir / ENSEMBLE_DIR if config.ensemble.distill else out_dir
    cross = cross_fit(rows.fit, config.ensemble.folds, config.seed,
                      _member_trainer(config, base_dir, rows, ensemble_dir, progress), progress)
    thresholds = (np.full(len(rows.fit.labels), config.thresholds.fixed) if config.thresholds.mode == "fixed" else
                  tune_thresholds(cross.oof, rows.fit.targets, rows.fit.mask, config.thresholds))
    oof_metrics = {"note": OPTIMISTIC_OOF, **compute_metrics(cross.oof, rows.fit.targets, rows.fit.mask, thresholds,
                                                              rows.fit.labels)}
    score = headline(rows, cross.score_scores(), thresholds, config.score_fraction)
    source = "fixed" if config.thresholds.mode == "fixed" else "out-of-fold"
    extra = {"ensemble": {**cross.record(), "out_of_fold_metrics": oof_metrics}}
    best_epoch = int(np.median([m.best_epoch for m in cross.members]))

    def save(info) -> None:
        save_ensemble(ensemble_dir, load_tokenizer(member_dir(ensemble_dir, 0)), info,
                      [f"member {i + 1} (fold {i + 1} held out)" for i in range(len(cross.members))],
                      [m.architecture for m in cross.members])

    ensemble = _Outcome(thresholds, source, best_epoch, cross.history(), None, score, extra, save, curves=False)
    if not config.ensemble.distill:
        return ensemble
    ensemble.save(info_for(ensemble))  # the teacher must be on disk before the student's distiller loads it
    return _distil_student(config, base_dir, rows, out_dir, progress, cross, ensemble, ensemble_dir)


def _distil_student(config: TrainConfig, base_dir: Path, rows: Rows, out_dir: Path, progress: Progress,
                    cross: CrossFit, ensemble: _Outcome, ensemble_dir: Path) -> _Outcome:
    """One model of the base's size trained on the ensemble's scores (the distillation of --teacher, one code path)."""
    progress.log(f"student: distilling the {len(cross.members)}-member ensemble")
    thresholds = config.thresholds if config.thresholds.mode == "fixed" else replace(config.thresholds, source="dev")
    student_config = replace(config, ensemble=EnsembleConfig(), thresholds=thresholds, distill=DistillConfig(
        teacher=str(ensemble_dir), unlabeled=config.ensemble.unlabeled, on_train_texts=True,
        weight=config.distill.weight, max_texts=config.distill.max_texts))
    part, held = student_rows(rows.fit, cross)
    student = _finetune_single(student_config, base_dir, Rows(part, held, rows.score, rows.scored_on), out_dir,
                               progress)
    student.source = "the student's held-out fold" if student.source == "dev" else student.source
    student.dev_metrics = None  # that fold chose the student's epoch and thresholds: reported only in emocli.json
    student.extra = {"distilled_from": {"ensemble": ENSEMBLE_DIR, "headline": ensemble.headline, **cross.record(),
                                        "distill": describe_distillation(student_config.distill),
                                        "student_train_rows": len(part), "student_tune_rows": len(held)},
                     "ensemble": ensemble.extra["ensemble"]}
    return student


def _model_info(config: TrainConfig, train: LabelledData, dev: LabelledData | None, rows: Rows, base: dict,
                outcome: _Outcome):
    from emocli.languages import normalize_languages
    from emocli.model.io import ModelInfo

    return ModelInfo(
        labels=train.labels, thresholds=tuple(round(float(t), 4) for t in outcome.thresholds), task="multi_label",
        max_length=config.max_length,
        extra={
            "languages": normalize_languages(train.language_set),  # ISO 639-3; None: the data names none
            "base_model": base, "loss": asdict(config.loss), "sampler": config.sampler,
            "regularization": asdict(config.regularization),
            "threshold_config": asdict(config.thresholds), "threshold_source": outcome.source,
            "training": _config_record(config), "best_epoch": outcome.best_epoch,
            "data": {"train": train.fingerprints, "dev": dev.fingerprints if dev else {},
                     "train_rows": len(train), "dev_rows": len(dev) if dev else 0,
                     "fit_rows": len(rows.fit), "score_rows": len(rows.score) if rows.score is not None else 0,
                     "skipped_texts": train.skipped_texts + (dev.skipped_texts if dev else 0),
                     "dropped_labels": list(train.dropped_labels), "languages": train.language_set},
            "headline": outcome.headline,
            "dev_metrics": outcome.dev_metrics,
            "dev_metrics_note": OPTIMISTIC_DEV if outcome.dev_metrics else None,
            **outcome.extra,
        },
    )


MULTILINGUAL_RECIPE_NOTE = (
    "one model trained on {n} languages: `--recipe folds5-distill` scored +0.025 macro-F1 over it on four BRIGHTER "
    "languages (3 of 3 seeds), tagging at one model's speed for ~6x the training time "
    "(benchmarks/results/quality-folds-full-cpu-minilm-multi.md)")


def recipe_notes(config: TrainConfig, languages: list[str]) -> list[str]:
    """Where the default single model leaves measured quality behind: several languages, where the distilled
    cross-fitted recipe paid (in English it did not, so nothing is said there). Languages count as emocli.json
    records them: file names that are no language code (train.csv, extra.csv) name none."""
    from emocli.languages import normalize_languages

    known = normalize_languages(languages) or ()
    if config.ensemble.enabled or len(known) < 2:
        return []
    return [MULTILINGUAL_RECIPE_NOTE.format(n=len(known))]


def finetune(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Fine-tune a base encoder on labelled files and save a transformers dir + emocli.json in config.out
    (with config.ensemble: a cross-fitted ensemble, or its distilled student).

    The quality it reports first (`headline`) is scored on rows held out of everything (emocli.training.holdout).
    The loop reports to `progress` (default: emocli.progress.current()); none with config.progress False.
    """
    progress = chosen(progress) if config.progress else NullProgress()
    started = time.perf_counter()
    train, dev = load_training_data(config)
    resolved, base = _base_info(config.base)
    out_dir = Path(config.out)
    rows = plan_rows(config, train, dev)
    recipe = _finetune_folds if config.ensemble.enabled else _finetune_single
    outcome = recipe(config, resolved.path, rows, out_dir, progress,
                     lambda outcome: _model_info(config, train, dev, rows, base, outcome))
    info = _model_info(config, train, dev, rows, base, outcome)
    if outcome.is_main:
        outcome.save(info)
        if outcome.curves:
            _write_curves(outcome.history, out_dir)
        if config.register:
            register_finetuned(config.register, out_dir, info, base["name"])
    return TrainResult(out_dir, train.labels, info.thresholds, outcome.dev_metrics, outcome.best_epoch,
                       outcome.history, outcome.source, time.perf_counter() - started, len(rows.fit),
                       train.skipped_texts, outcome.headline, outcome.extra, recipe_notes(config, train.language_set))


def _write_curves(history: list[dict], out_dir: Path) -> None:
    from emocli.training.curves import plot_history

    if history:
        plot_history(history, out_dir / CURVES_FILE)


def register_finetuned(name: str, out_dir: Path, info, base_name: str) -> Path:
    """Add the model to the user registry as a `path` entry and make it the user's default for `tag`."""
    from emocli.hub.registry import ModelSpec, register_model

    spec = ModelSpec(name=name, path=str(Path(out_dir).resolve()), task=info.task, role="emotion",
                     labels=info.labels, thresholds=info.threshold_map(), max_length=info.max_length,
                     languages=info.languages or (), description=f"fine-tuned from {base_name} by emocli finetune")
    return register_model(spec, set_default=True)


__all__ = ["RegularizationConfig", "TrainConfig", "TrainResult", "finetune", "macro_f1"]
