"""The inference engine: texts in, one probability per label out, as Arrow.

At its core is one scoring path: a `Scorer` tokenizes, sorts rows by length, cuts them into batches by a
token budget and runs the forward passes. `score_texts(scorer, texts)` (texts -> probabilities) is the
prediction function of evaluate, distillation, the training loop's dev scores and the benchmarks;
`score_token_ids` is the same for token ids (explanations); `score_batch(texts, scorer) -> pa.RecordBatch`
is the pure function any engine (a thread, a process pool, a distributed map over record batches) can call.
The forward pass itself goes through a backend: `TorchBackend` for every torch module, or the model's own
(`emocli.model.onnx_model.OnnxSession` for an ONNX export): `logits(batch)`, `device`, `evaluating()`.
Around it, `score_windows` pipelines a stream of row windows: while the model computes on one window, a
background thread reads and tokenizes the next (fast tokenizers release the GIL). Within a window the texts
are sorted by length and cut into batches by a token budget, so almost no compute is spent on padding.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from emocli.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

    from emocli.model.io import EmotionModel

W = TypeVar("W")

# cuda: the fastest measured on an H100 (benchmarks/results/sweep-h100.json): MiniLM 28.6k texts/s end to end
# at 131072 tokens / 65536-row windows vs 20.0k at 65536 / 32768; cpu: 2048 ran 1.04x (fp32) and 1.14x (int8) the
# texts/s of 4096 on 2 cores, 1024 1.05x / 1.07x (benchmarks/results/batch-tokens-cpu-minilm.json)
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 131072}
MAX_BATCH_ROWS = {"cpu": 256, "cuda": 8192}  # on a GPU the token budget is what binds
# rows sorted together and committed together: on CPU a window is ~4k rows so a crash loses seconds, not minutes
DEFAULT_WINDOW_ROWS = {"cpu": 4096, "cuda": 65536}
# max |score(int8) - score(fp32)| measured on BRIGHTER texts with a seeded untrained head (benchmarks/README); a
# fine-tuned MiniLM moves some scores further (torch int8 0.25-0.38, ONNX int8 0.07-0.14:
# benchmarks/results/onnx-cpu-minilm.json), which is why the ONNX export checks against torch int8 as well
QUANTIZE_TOLERANCE = 0.03


@dataclass(frozen=True)
class EngineConfig:
    """How to run the model; every field has a default that suits the machine."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16/fp16 on GPU, fp32 on CPU)
    max_length: int | None = None  # tokens per text; None = the model's own max_length
    batch_tokens: int | None = None  # padded tokens per forward pass; None = a per-device default
    window_rows: int | None = None  # rows sorted by length (and committed) together; None = a per-device default
    quantize: bool = False  # int8: torch dynamic int8 Linear layers, or the int8 ONNX export (CPU only)
    threads: int | None = None  # CPU threads for torch / ONNX Runtime's intra-op pool; None = all cores
    backend: str = "auto"  # auto (the model's own) | torch | onnx (an ONNX export, run by ONNX Runtime)


BACKENDS = ("auto", "torch", "onnx")


@dataclass
class Tokenized:
    """Token ids of one window, with per-row flags. Rows with no text have valid=False and no ids."""

    ids: list[list[int]]  # one list per row (empty for invalid rows)
    lengths: np.ndarray  # int32, 0 for invalid rows
    truncated: np.ndarray  # bool
    valid: np.ndarray  # bool

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    @classmethod
    def from_ids(cls, sequences: Sequence[Sequence[int]]) -> "Tokenized":
        """Sequences already tokenized (with their special tokens); an empty one is a row without text."""
        ids = [list(seq) for seq in sequences]
        lengths = np.fromiter((len(seq) for seq in ids), dtype=np.int32, count=len(ids))
        return cls(ids, lengths, np.zeros(len(ids), dtype=bool), lengths > 0)


@dataclass
class Batch:
    """One forward pass: the window rows it covers and their padded ids (torch tensors, on host)."""

    rows: np.ndarray  # int64 indices into the window
    input_ids: Any
    attention_mask: Any


class TorchBackend:
    """The forward pass of a torch module on its device (every torch architecture: plain, heads, small, stack)."""

    def __init__(self, module):
        self.module = module
        self.device = str(next(module.parameters()).device)

    def logits(self, batch: Batch):
        non_blocking = self.device.startswith("cuda")
        return self.module(
            input_ids=batch.input_ids.to(self.device, non_blocking=non_blocking),
            attention_mask=batch.attention_mask.to(self.device, non_blocking=non_blocking),
        ).logits

    @contextlib.contextmanager
    def evaluating(self):
        """Eval mode for the call, then the mode it was in (the training loop's dev scores)."""
        was_training = self.module.training
        self.module.eval()
        try:
            yield
        finally:
            self.module.train(was_training)


def backend_for(module):
    """A model's forward: its own backend where it brings one (an ONNX session), else its torch module wrapped."""
    return module if callable(getattr(module, "logits", None)) else TorchBackend(module)


class Scorer:
    """A loaded model ready for inference: tokenizer, backend (the forward pass), labels, thresholds, activation."""

    def __init__(self, model: "EmotionModel", *, device: str, max_length: int, batch_tokens: int,
                 max_batch_rows: int, window_rows: int, quantized: bool = False, autocast: Callable | None = None):
        self.model = model
        self.info = model.info
        self.labels = tuple(model.info.labels)
        self.thresholds = np.asarray(model.info.thresholds, dtype=np.float32)
        self.task = model.info.task
        self.device = device
        self.max_length = max_length
        self.batch_tokens = max(batch_tokens, max_length)
        self.max_batch_rows = max_batch_rows
        self.window_rows = window_rows
        self.quantized = quantized
        self.module = model.module  # sets self.backend
        self.autocast = autocast  # e.g. accelerate's autocast while training in mixed precision
        self._rust_tokenizer = getattr(model.tokenizer, "backend_tokenizer", None)
        if self._rust_tokenizer is None:
            raise InputError(f"{model.path}: the model's tokenizer has no fast (Rust) version; emocli needs one")
        self._own_tokenizer = None
        self.pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
        self._lock = threading.Lock()

    @property
    def module(self):
        return self._module

    @module.setter
    def module(self, module) -> None:
        """Swapping the module (e.g. a compiled one) swaps the forward pass with it."""
        self._module = module
        self.backend = backend_for(module)

    @property
    def _tokenizer(self):
        """Our own copy of the fast tokenizer, made on first use (scoring token ids needs none): truncation on,
        padding off (we pad per batch after sorting by length)."""
        with self._lock:
            if self._own_tokenizer is None:
                import tokenizers

                tokenizer = tokenizers.Tokenizer.from_str(self._rust_tokenizer.to_str())
                tokenizer.no_padding()
                tokenizer.enable_truncation(self.max_length)
                self._own_tokenizer = tokenizer
            return self._own_tokenizer

    # -- tokenization (any thread) ---------------------------------------------------------------------------
    def tokenize(self, texts: "pa.Array") -> Tokenized:
        values = texts.to_pylist()
        valid = np.fromiter((isinstance(t, str) and not t.isspace() and t != "" for t in values), dtype=bool,
                            count=len(values))
        ids: list[list[int]] = [[] for _ in values]
        lengths = np.zeros(len(values), dtype=np.int32)
        truncated = np.zeros(len(values), dtype=bool)
        positions = np.flatnonzero(valid)
        if len(positions):
            encodings = self._tokenizer.encode_batch_fast([values[i] for i in positions])
            for i, enc in zip(positions, encodings):
                ids[i] = enc.ids
                lengths[i] = len(enc.ids)
                truncated[i] = bool(enc.overflowing)
        return Tokenized(ids, lengths, truncated, valid)

    def plan_batches(self, tokenized: Tokenized) -> list[Batch]:
        """Length-sorted rows cut into batches of at most batch_tokens padded tokens."""
        import torch

        rows = np.flatnonzero(tokenized.valid)
        rows = rows[np.argsort(tokenized.lengths[rows], kind="stable")]
        batches = []
        pin = self.device.startswith("cuda")
        start = 0
        while start < len(rows):
            end = start + 1
            while (end < len(rows) and end - start < self.max_batch_rows
                   and (end - start + 1) * int(tokenized.lengths[rows[end]]) <= self.batch_tokens):
                end += 1
            batch_rows = rows[start:end]
            width = int(tokenized.lengths[batch_rows[-1]])
            ids = np.full((len(batch_rows), width), self.pad_id, dtype=np.int64)
            for r, i in enumerate(batch_rows):
                ids[r, : tokenized.lengths[i]] = tokenized.ids[i]
            mask = (np.arange(width)[None, :] < tokenized.lengths[batch_rows][:, None]).astype(np.int64)
            input_ids, attention_mask = torch.from_numpy(ids), torch.from_numpy(mask)
            if pin:
                input_ids, attention_mask = input_ids.pin_memory(), attention_mask.pin_memory()
            batches.append(Batch(batch_rows, input_ids, attention_mask))
            start = end
        return batches

    # -- model (the main thread) -----------------------------------------------------------------------------
    def forward(self, batch: Batch):
        """Probabilities for one batch, left on the device (the caller copies a window's worth at once)."""
        import torch

        with torch.inference_mode():
            with self.autocast() if self.autocast is not None else contextlib.nullcontext():
                logits = self.backend.logits(batch)
            return activate(logits, self.task)

    def launch(self, tokenized: Tokenized, batches: list[Batch],
               on_batch: Callable[[int, int], None] | None = None) -> "_Pending":
        """Queue a window's forward passes and its copy back to the host; on a GPU this returns before they finish.

        on_batch(rows, tokens) is called as each forward pass is queued (progress between commits).
        """
        import torch

        if not batches:
            return _Pending(tokenized, batches, None, None, len(self.labels))
        outputs = []
        for batch in batches:
            outputs.append(self.forward(batch))
            if on_batch is not None:
                on_batch(len(batch.rows), int(tokenized.lengths[batch.rows].sum()))
        flat = torch.cat(outputs)
        if not flat.is_cuda:
            return _Pending(tokenized, batches, flat.numpy(), None, len(self.labels))
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)  # one device-to-host copy per window
        done = torch.cuda.Event()
        done.record()
        return _Pending(tokenized, batches, host, done, len(self.labels))

    def score_tokenized(self, tokenized: Tokenized, batches: list[Batch],
                        on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(rows, labels) float32 probabilities in window order; NaN for rows without text."""
        return self.launch(tokenized, batches, on_batch).collect()

    # -- assembling Arrow ------------------------------------------------------------------------------------
    def to_record_batch(self, probs: np.ndarray, tokenized: Tokenized, *, with_predictions: bool = True):
        import pyarrow as pa

        invalid = ~tokenized.valid
        arrays, names = [], []
        for j, label in enumerate(self.labels):
            arrays.append(pa.array(probs[:, j], type=pa.float32(), mask=invalid))
            names.append(label)
        if with_predictions:
            arrays.append(self.predicted_labels(probs, tokenized.valid))
            names.append("labels")
        arrays.append(pa.array(tokenized.lengths, type=pa.int32()))
        names.append("n_tokens")
        arrays.append(pa.array(tokenized.truncated, type=pa.bool_()))
        names.append("truncated")
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def predicted_labels(self, probs: np.ndarray, valid: np.ndarray) -> "pa.Array":
        """Labels at or above their threshold (multi-label), or the argmax (single-label); NULL without text."""
        import pyarrow as pa

        if self.task == "single_label":
            chosen = np.zeros_like(probs, dtype=bool)
            chosen[np.arange(len(probs)), np.nan_to_num(probs, nan=-1.0).argmax(axis=1)] = True
        else:
            chosen = np.nan_to_num(probs, nan=-1.0) >= self.thresholds[None, :]
        chosen &= valid[:, None]
        rows, cols = np.nonzero(chosen)
        offsets = np.zeros(len(probs) + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=len(probs)), out=offsets[1:])
        values = pa.array(np.asarray(self.labels, dtype=object)[cols], type=pa.string())
        return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(~valid))


def load_scorer(model: "EmotionModel", config: EngineConfig = EngineConfig()) -> Scorer:
    """Wrap a loaded model for inference: threads, quantization and batch sizes per device."""
    import torch

    if config.backend not in BACKENDS:
        raise InputError(f"--backend {config.backend}: expected one of {', '.join(BACKENDS)}")
    backend = backend_for(model.module)
    kind = "cuda" if backend.device.startswith("cuda") else "cpu"
    if kind == "cpu":
        torch.set_num_threads(config.threads or os.cpu_count() or 1)
    if not isinstance(backend, TorchBackend):  # an ONNX session: its own intra-op pool, its exported precision
        backend.configure(config.threads)
        quantized = _check_onnx_precision(model, config)
    else:
        quantized = config.quantize
        if config.quantize:
            if kind != "cpu":
                raise InputError("--quantize is for CPU inference; on a GPU use --dtype bf16 or fp16")
            model.module = torch.ao.quantization.quantize_dynamic(model.module, {torch.nn.Linear}, dtype=torch.qint8)
    max_length = config.max_length or model.info.max_length
    _check_max_length(model, max_length)
    return scorer_for(model, max_length=max_length, batch_tokens=config.batch_tokens, window_rows=config.window_rows,
                      quantized=quantized)


def bf16_note(config: EngineConfig, scorer: Scorer, has_bf16_unit: bool) -> str | None:
    """A one-line hint when fp32 was chosen for a CPU that runs bf16 natively. fp32 stays the CPU default so that
    scores are the same on every CPU; bf16 moves them by up to ~1e-2, onnx int8 by up to ~0.1 and ran faster still on
    the second AMX Xeon measured (benchmarks/results/onnx-cpu-xeon-amx-minilm.md)."""
    runs_torch_fp32_on_cpu = (isinstance(scorer.backend, TorchBackend) and scorer.device == "cpu"
                              and config.dtype == "auto" and not config.quantize)
    if not (has_bf16_unit and runs_torch_fp32_on_cpu):
        return None
    return ("this CPU multiplies bf16 in hardware (AMX): `--dtype bf16` tags ~2x faster than fp32 here with scores "
            "within ~0.01, `--backend onnx --quantize` ~2.3x within ~0.1 (fp32 is kept by default: the same scores "
            "on every CPU)")


def _check_onnx_precision(model: "EmotionModel", config: EngineConfig) -> bool:
    """An ONNX export runs at the precision it was exported in; --quantize asks for the int8 one."""
    precision = model.module.precision
    if config.quantize and precision != "int8":
        raise InputError(f"{model.path}: --quantize: this ONNX export has {precision} weights",
                         hint="export it with `emocli export onnx MODEL --int8`, or tag without --quantize")
    return precision == "int8"


def scorer_for(model: "EmotionModel", *, max_length: int | None = None, batch_tokens: int | None = None,
               max_batch_rows: int | None = None, window_rows: int | None = None, quantized: bool = False,
               autocast: Callable | None = None) -> Scorer:
    """A Scorer with the engine's per-device batch sizes for a loaded model (no process-wide settings changed:
    `load_scorer` adds threads and quantization for `tag`)."""
    backend = backend_for(model.module)
    kind = "cuda" if backend.device.startswith("cuda") else "cpu"
    return Scorer(model, device=backend.device, max_length=max_length or model.info.max_length,
                  batch_tokens=batch_tokens or getattr(backend, "batch_tokens", None) or DEFAULT_BATCH_TOKENS[kind],
                  max_batch_rows=max_batch_rows or MAX_BATCH_ROWS[kind],
                  window_rows=window_rows or DEFAULT_WINDOW_ROWS[kind], quantized=quantized, autocast=autocast)


def scorer_for_module(module, tokenizer, labels: Sequence[str], *, max_length: int, task: str = "multi_label",
                      **options) -> Scorer:
    """`scorer_for` a bare (module, tokenizer) that is not a saved model yet, e.g. inside a training loop."""
    from pathlib import Path

    from emocli.model.info import EmotionModel, ModelInfo

    info = ModelInfo(tuple(labels), (0.5,) * len(labels), task, max_length)
    return scorer_for(EmotionModel(Path("."), info, tokenizer, module), **options)


def _check_max_length(model: "EmotionModel", max_length: int) -> None:
    config = getattr(model.module, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if limit and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # RoBERTa-style position ids start after the padding index
    if limit and max_length > limit:
        raise InputError(f"--max-length {max_length}: the model takes at most {limit} tokens")


def activate(logits, task: str):
    """Logits -> probabilities: softmax for a single-label model, sigmoid per label otherwise (in fp32)."""
    import torch

    logits = logits.float()
    if task == "single_label":
        return torch.softmax(logits, dim=-1)
    return torch.sigmoid(logits)


def _text_array(texts: "pa.Array | pa.RecordBatch | pa.ChunkedArray", text_col: str = "text") -> "pa.Array":
    import pyarrow as pa

    if isinstance(texts, pa.RecordBatch):
        texts = texts.column(text_col) if text_col in texts.schema.names else texts.column(0)
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type) or pa.types.is_null(texts.type)):
        raise InputError(f"the text column holds {texts.type}, not text")
    return texts


def score_texts(scorer: Scorer, texts: "Sequence[str | None] | pa.Array") -> np.ndarray:
    """The prediction function: texts -> (n, labels) float32 probabilities, row i for text i (NaN without text).

    Tokenized with the model's fast tokenizer, sorted by length, cut into batches by the token budget. The
    module is put in eval mode for the call and given back in the mode it was in (the training loop's dev scores).
    """
    import pyarrow as pa

    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), type=pa.string())
    return _score_tokenized(scorer, scorer.tokenize(_text_array(array)))


def score_token_ids(scorer: Scorer, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """`score_texts` for sequences already tokenized (with special tokens), e.g. an explanation's perturbations."""
    return _score_tokenized(scorer, Tokenized.from_ids(sequences))


def _score_tokenized(scorer: Scorer, tokenized: Tokenized) -> np.ndarray:
    with scorer.backend.evaluating():
        return scorer.score_tokenized(tokenized, scorer.plan_batches(tokenized))


def score_batch(texts: "pa.Array | pa.RecordBatch", scorer: Scorer, *, with_predictions: bool = True):
    """Pure: texts -> RecordBatch of one float32 column per label, `labels`, `n_tokens`, `truncated`.

    Row i of the output scores text i. Null, empty or blank texts get NULL scores and labels.
    """
    tokenized = scorer.tokenize(_text_array(texts))
    probs = scorer.score_tokenized(tokenized, scorer.plan_batches(tokenized))
    return scorer.to_record_batch(probs, tokenized, with_predictions=with_predictions)


class _Pending:
    """A window whose scores may still be on their way from the GPU; collect() waits for this window only."""

    def __init__(self, tokenized: Tokenized, batches: list[Batch], scores, done, n_labels: int):
        self.tokenized, self.batches, self._scores, self._done, self._n_labels = tokenized, batches, scores, done, n_labels

    def collect(self) -> np.ndarray:
        probs = np.full((len(self.tokenized.valid), self._n_labels), np.nan, dtype=np.float32)
        if self._scores is None:
            return probs
        if self._done is not None:
            self._done.synchronize()
            self._scores = self._scores.numpy()
        probs[np.concatenate([b.rows for b in self.batches])] = self._scores
        return probs


@dataclass
class ScoredWindow:
    scores: "pa.RecordBatch"  # rows in window order
    n_tokens: int
    n_skipped: int
    n_truncated: int


_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def score_windows(windows: Iterable[W], texts_of: Callable[[W], "pa.Array | None"], scorer: Scorer, *,
                  prefetch: int = 2, on_batch: Callable[[int, int], None] | None = None,
                  ) -> Iterator[tuple[W, ScoredWindow | None]]:
    """Pipelined scoring: a background thread reads and tokenizes window k+1 while the model runs on window k.

    `texts_of(window)` returns the window's texts, or None for a marker window that carries no rows (it is
    passed through in order, unscored). Errors raised while reading or tokenizing surface here, in order.
    on_batch(rows, tokens) reports each forward pass as it finishes.
    """
    pending: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for window in windows:
                texts = texts_of(window)
                if texts is None:
                    item = (window, None, None)
                else:
                    tokenized = scorer.tokenize(_text_array(texts))
                    item = (window, tokenized, scorer.plan_batches(tokenized))
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failed(exc))

    def finish(window, launched: _Pending) -> tuple[W, ScoredWindow]:
        tokenized = launched.tokenized
        record = scorer.to_record_batch(launched.collect(), tokenized)
        return window, ScoredWindow(record, tokenized.n_tokens, int((~tokenized.valid).sum()),
                                    int(tokenized.truncated.sum()))

    worker = threading.Thread(target=produce, name="emocli-tokenize", daemon=True)
    worker.start()
    # On a GPU one window stays in flight: window k+1's forward passes are queued before window k's scores are
    # collected and handed on, so the device computes while the caller writes window k.
    in_flight = None
    try:
        while True:
            item = pending.get()
            if item is _DONE:
                if in_flight is not None:
                    yield finish(*in_flight)
                return
            if isinstance(item, _Failed):
                if in_flight is not None:
                    yield finish(*in_flight)
                raise item.exc
            window, tokenized, batches = item
            launched = scorer.launch(tokenized, batches, on_batch) if tokenized is not None else None
            if in_flight is not None:
                yield finish(*in_flight)
                in_flight = None
            if launched is None:
                yield window, None
            elif scorer.device.startswith("cuda"):
                in_flight = (window, launched)
            else:
                yield finish(window, launched)
    finally:
        stop.set()
        worker.join(timeout=5)
