"""`tag --engine ray`: the same scoring on a Ray cluster, with Ray Data doing the reading and the actor pool.

    ray.data.read_parquet / read_csv  ->  map_batches(BatchScorer, ActorPoolStrategy)  ->  driver  ->  DuckDB

Each actor loads the model once and calls the engine's pure `score_batch` on its batches (no second copy of
tokenizing, batching or scoring). The dataset runs with `preserve_order`, so the driver receives every file's
rows in file order and hands them to the same store writer as the local engine: each window is appended in one
transaction with its file's checkpoint (rows done), which is what makes a killed driver resume with no row lost
or written twice. The hand-off is described in docs/ray-engine.md. Ray is imported lazily; without it the
engine fails with one line naming `pip install "emocli[ray]"`.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator

from emocli.errors import ConfigError, EmocliError, InputError

if TYPE_CHECKING:  # FilePlan (emocli.inference.tagger) is named in annotations only: tagger imports this module
    import pyarrow as pa

    from emocli.hub.pull import ResolvedModel
    from emocli.inference.engine import EngineConfig, ScoredWindow
    from emocli.store.core import FileProgress

ENGINES = ("local", "ray")
SCORE_PREFIX = "__emocli__"  # score columns travel next to the input columns under this prefix (no clash)
PATH_COLUMN = "path"  # Ray Data's include_paths column
LOCAL_OBJECT_STORE_SHARE = 0.25  # of the machine's memory, capped at LOCAL_OBJECT_STORE_MAX
LOCAL_OBJECT_STORE_MAX = 4 << 30
CONNECT_TIMEOUT_S = 5.0
BLOCK_BYTES = 2 << 20


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide to run; None picks a default from the cluster's resources."""

    address: str | None = None  # None: start a local Ray; "auto" or HOST:PORT: join that cluster
    workers: int | None = None  # scoring actors; None: as many as the cluster's CPUs (or GPUs) allow
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    object_store_mb: int | None = None  # local Ray only; None: a quarter of the memory, at most 4 GiB


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError('--engine ray needs Ray: pip install "emocli[ray]"') from None
    return ray


# -- connecting ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cluster:
    address: str | None  # what the run records: None for a local Ray started by us
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float


@contextmanager
def connected(config: RayConfig) -> Iterator[Cluster]:
    """Start a local Ray (capped object store) or join config.address; disconnect at the end."""
    ray = require_ray()
    _check_widths(config)
    if config.address not in (None, "auto"):
        _check_reachable(config.address)
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, config)
    _configure_data(ray)
    try:
        yield Cluster(config.address, _workers(ray, config), config.cpus_per_worker, config.gpus_per_worker)
    finally:
        if started_here:
            ray.shutdown()


def _check_widths(config: RayConfig) -> None:
    if config.workers is not None and config.workers < 1:
        raise InputError(f"--workers {config.workers}: must be 1 or more")
    if config.cpus_per_worker <= 0 or config.gpus_per_worker < 0:
        raise InputError("--cpus-per-worker must be > 0 and --gpus-per-worker >= 0")


def _check_reachable(address: str) -> None:
    """A HOST:PORT that refuses a TCP connection fails in seconds, not after Ray's minute of retries."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address {address!r}: expected auto or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise InputError(f"--address {address}: no Ray cluster reachable there ({exc.strerror or exc})",
                         hint="start one with `ray start --head`, or leave --address out for a local Ray") from None


def _init(ray, config: RayConfig) -> None:
    import logging

    options = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                   configure_logging=True)
    try:
        if config.address is None:
            workers = config.workers or max(1, int((os.cpu_count() or 1) // config.cpus_per_worker))
            # one CPU more than the actors take, for Ray Data's listing and read tasks
            # Ray renices its workers by +15 by default: on a shared box they would then lose the cores to any
            # other job (and to their own driver), so the actors run at the driver's priority
            ray.init(num_cpus=int(workers * config.cpus_per_worker) + 1,
                     object_store_memory=_object_store_bytes(config),
                     _system_config={"worker_niceness": 0}, **options)
        else:
            ray.init(address=config.address, **options)
    except ConnectionError as exc:
        raise InputError(f"--address {config.address}: {_first_line(exc)}",
                         hint="start a cluster with `ray start --head`, or leave --address out") from None


def _configure_data(ray) -> None:
    import logging

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes (progress bars off, ...) are not ours to show
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the driver's checkpoints need each file's rows in order
    context.enable_progress_bars = False  # emocli's own progress reports rows as they land in the store
    context.print_on_execution_start = False
    # blocks of a few MB: one file is cut into many blocks, so every actor gets work (128 MB would be one block)
    context.target_max_block_size = BLOCK_BYTES


def _object_store_bytes(config: RayConfig) -> int:
    if config.object_store_mb is not None:
        return config.object_store_mb << 20
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(total * LOCAL_OBJECT_STORE_SHARE, LOCAL_OBJECT_STORE_MAX))


def _workers(ray, config: RayConfig) -> int:
    resources = ray.cluster_resources()
    if config.gpus_per_worker > 0:
        gpus = resources.get("GPU", 0)
        if gpus < config.gpus_per_worker:  # else the actor pool would wait for GPUs forever
            raise InputError(f"--gpus-per-worker {config.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)",
                             hint="leave --gpus-per-worker out to score on CPUs")
        return config.workers or max(1, int(gpus // config.gpus_per_worker))
    # one CPU kept for reading
    return config.workers or max(1, int((resources.get("CPU", 1) - 1) // config.cpus_per_worker))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- what each actor gets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActorPlan:
    """Resources one scoring actor asks Ray for, and the engine settings it scores with."""

    num_cpus: float
    num_gpus: float | None  # None: no GPU (Ray's map_batches wants None, not 0)
    engine: "EngineConfig"  # device, dtype, batch_tokens, window_rows and threads filled in


def actor_plan(engine: "EngineConfig", cpus_per_worker: float, gpus_per_worker: float) -> ActorPlan:
    """Pure: a GPU actor (gpus_per_worker > 0) runs on the GPU Ray gives it with the local engine's GPU batching
    (131072-token batches, 65536-row windows, bf16 unless --dtype says otherwise); a CPU actor uses the CPU
    defaults with one torch thread per CPU it holds. --device must agree with --gpus-per-worker, since Ray only
    hands an actor a GPU it asked for."""
    from emocli.inference.engine import DEFAULT_BATCH_TOKENS, DEFAULT_WINDOW_ROWS

    on_gpu = gpus_per_worker > 0
    if engine.device.startswith("cuda") and not on_gpu:
        raise InputError(f"--device {engine.device} with --engine ray needs --gpus-per-worker (e.g. 1): Ray gives "
                         "an actor a GPU only when it asks for one")
    if engine.device == "cpu" and on_gpu:
        raise InputError("--device cpu with --gpus-per-worker: leave --gpus-per-worker out to score on CPUs")
    if engine.device.startswith("cuda:"):
        raise InputError(f"--device {engine.device}: with --engine ray each actor uses the GPU Ray assigns it; "
                         "say --device cuda (or auto)")
    if on_gpu and engine.quantize:
        raise InputError("--quantize is for CPU inference; on a GPU use --dtype bf16 or fp16")
    kind = "cuda" if on_gpu else "cpu"
    dtype = engine.dtype if engine.dtype != "auto" else ("bf16" if on_gpu else "fp32")
    threads = engine.threads or max(1, int(cpus_per_worker))  # its own CPUs, not every core of its node
    planned = replace(engine, device=kind, dtype=dtype, threads=threads,
                      # None on a CPU: the backend's own budget (ONNX keeps 1,024, torch 2,048)
                      batch_tokens=engine.batch_tokens or (DEFAULT_BATCH_TOKENS[kind] if on_gpu else None),
                      window_rows=engine.window_rows or DEFAULT_WINDOW_ROWS[kind])
    return ActorPlan(cpus_per_worker, gpus_per_worker if on_gpu else None, planned)


# -- the actor -----------------------------------------------------------------------------------------------
class BatchScorer:
    """One per actor: loads the model once, then scores each Arrow batch with the engine's `score_batch`."""

    def __init__(self, model_path: str, spec, engine: "EngineConfig", text_col: str, text_back: bool = True):
        from emocli.inference.engine import load_scorer
        from emocli.model.io import load_model

        model = load_model(model_path, spec, device=engine.device, dtype=engine.dtype)
        self.scorer = load_scorer(model, engine)
        self.text_col = text_col
        self.text_back = text_back

    def __call__(self, batch: "pa.Table") -> "pa.Table":
        from emocli.inference.engine import score_batch

        scores = score_batch(batch.column(self.text_col).combine_chunks(), self.scorer)
        if not self.text_back:  # the texts are the bulk of a batch: they cross the object store back only if used
            batch = batch.drop_columns([self.text_col])
        for name, column in zip(scores.schema.names, scores.columns):
            batch = batch.append_column(SCORE_PREFIX + name, column)
        return batch


# -- the driver ----------------------------------------------------------------------------------------------
def _read_group_key(plan: "FilePlan") -> tuple:
    """Files read by one dataset: same format, same parsing, same columns."""
    name = plan.source.path.name.lower()
    compression = next((c for s, c in (("gz", "gzip"), ("zst", "zstd")) if name.endswith("." + s)), None)
    return plan.source.fmt, plan.source.delimiter, compression, tuple(plan.read_columns)


def _groups(plans: list["FilePlan"]) -> list[list["FilePlan"]]:
    """Consecutive runs of files one dataset can read (usually all of them)."""
    groups: list[list[FilePlan]] = []
    for plan in plans:
        if groups and _read_group_key(groups[-1][-1]) == _read_group_key(plan):
            groups[-1].append(plan)
        else:
            groups.append([plan])
    return groups


def _read(ray, group: list["FilePlan"]):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    fmt, delimiter, compression, columns = _read_group_key(group[0])
    if PATH_COLUMN in columns:
        raise InputError(f"{group[0].source.path}: a column named {PATH_COLUMN!r} clashes with Ray Data's file "
                         "path column; --engine local reads it")
    paths = [str(plan.source.path.resolve()) for plan in group]
    if fmt == "parquet":
        _check_text_type(group)
        dataset = ray.data.read_parquet(paths, include_paths=True)
    else:
        dataset = ray.data.read_csv(
            paths, include_paths=True,
            arrow_open_stream_args={"compression": compression} if compression else None,
            parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(include_columns=list(columns),
                                                column_types={group[0].text_col: pa.string()},
                                                strings_can_be_null=True, quoted_strings_can_be_null=False))
    return dataset.select_columns([*columns, PATH_COLUMN])


def _check_text_type(group: list["FilePlan"]) -> None:
    """The local engine finds a non-text column when it reads it; here the driver looks first (Parquet says)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for plan in group:
        kind = pq.read_schema(plan.source.path).field(plan.text_col).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            raise InputError(f"{plan.source.path}: column {plan.text_col!r} holds {kind}, not text")


def scored_windows(plans: list["FilePlan"], state: dict[str, "FileProgress"], resolved: "ResolvedModel",
                   engine: "EngineConfig", text_col: str, cluster: Cluster, budget: int | None,
                   detect_language: bool = False) -> Iterator[tuple["FilePlan", int, "pa.RecordBatch | None", "ScoredWindow | None"]]:
    """(file, first row, input columns, scores) in file order, computed by Ray actors: the windows the local
    engine's `score_windows` yields (the tagger wraps them); (file, 0, None, None) marks a file's end.

    Files already done are not read; a file resumed mid-way is read and scored again from its start and its
    rows before the checkpoint dropped here (Ray reads whole files), so every row lands exactly once. The
    input columns come back without the texts unless the driver uses them (detect_language, stored or id text).
    """
    ray = require_ray()
    plan = actor_plan(engine, cluster.cpus_per_worker, cluster.gpus_per_worker)
    window_rows = plan.engine.window_rows
    pending = [p for p in plans if not state[p.source.key].done]
    for group in _groups(pending):
        dataset = _read(ray, group)
        known_rows = _known_rows(group)
        batch_rows = actor_batch_rows(known_rows, window_rows, cluster.workers)
        if known_rows is not None:  # one block per actor batch: a block is never split across actors
            dataset = dataset.repartition(target_num_rows_per_block=batch_rows)
        dataset = dataset.map_batches(
            BatchScorer, fn_constructor_args=(str(resolved.path), resolved.spec, plan.engine, text_col,
                                              detect_language or _stores_text(group)),
            batch_size=batch_rows, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=cluster.workers),
            num_cpus=plan.num_cpus, num_gpus=plan.num_gpus)
        # Ray Data restarts a dead actor and retries its tasks (max_restarts=-1, max_task_retries=-1 by default)
        stream = _FileStream(group, state, budget, window_rows)
        for block in _one_line_errors(ray, dataset.iter_batches(batch_format="pyarrow", batch_size=None,
                                                                  prefetch_batches=2)):
            yield from stream.feed(block)
            if stream.exhausted:
                return
        yield from stream.close()
        budget = stream.budget


def actor_batch_rows(rows: int | None, window_rows: int, workers: int) -> int:
    """Rows per actor batch: a window, or for an input of fewer than workers x window rows an even share, so
    every actor scores (Ray Data hands a whole block to one actor; 4,000 rows are one block). Rows unknown
    (CSV): a window."""
    if rows is None or rows >= workers * window_rows:
        return window_rows
    return max(1, -(-rows // workers))


def _known_rows(group: list["FilePlan"]) -> int | None:
    counts = [p.source.num_rows for p in group]
    return None if None in counts else sum(counts)


def _stores_text(group: list["FilePlan"]) -> bool:
    """Whether the driver writes the text column itself (--keep-text, or the text is the id)."""
    return any(p.text_col == p.id_col or p.text_col in (c for c, _ in p.kept) for p in group)


def _one_line_errors(ray, blocks):
    """An actor's EmocliError (e.g. a text column that holds numbers) as itself; other failures in one line."""
    try:
        yield from blocks
    except EmocliError:
        raise
    except Exception as exc:  # noqa: BLE001 - the cluster's failures end here, as one line
        chain, seen = [exc], set()
        # Ray wraps: RayTaskError -> UserCodeException -> the UDF's own exception
        while chain[-1] is not None and id(chain[-1]) not in seen:
            seen.add(id(chain[-1]))
            chain.append(getattr(chain[-1], "cause", None) or chain[-1].__cause__)
        ours = next((e for e in reversed(chain) if isinstance(e, EmocliError)), None)  # the innermost: the real one
        if ours is not None:
            raise ours from None
        raise EmocliError(f"--engine ray: a Ray task failed: {_first_line(chain[-2])}") from None


class _FileStream:
    """Cuts the ordered stream of scored rows into per-file windows, skipping rows already committed."""

    def __init__(self, group: list["FilePlan"], state: dict[str, "FileProgress"], budget: int | None,
                 window_rows: int):
        self.window_rows = window_rows
        self.by_path = {str(p.source.path.resolve()): p for p in group}
        self.unfinished = list(group)
        self.state = state
        self.rows_seen: dict[str, int] = {}
        self.current: "FilePlan | None" = None
        self.budget = budget

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and self.budget <= 0

    def feed(self, block: "pa.Table") -> Iterator[tuple]:
        import pyarrow.compute as pc

        if block.num_rows == 0:
            return
        paths = block.column(PATH_COLUMN).combine_chunks()
        starts = [0, *(pc.indices_nonzero(pc.not_equal(paths[1:], paths[:-1])).to_numpy() + 1).tolist(), len(paths)]
        for begin, end in zip(starts[:-1], starts[1:]):
            plan = self.by_path[paths[begin].as_py()]
            if self.current is not None and plan is not self.current:
                yield from self._end_file(self.current)
            self.current = plan
            yield from self._rows(plan, block.slice(begin, end - begin))
            if self.exhausted:
                return

    def close(self) -> Iterator[tuple]:
        """After the last block: every file left is complete (a file with no rows never shows up)."""
        for plan in list(self.unfinished):
            yield from self._end_file(plan)

    def _rows(self, plan: "FilePlan", rows: "pa.Table"):
        key = plan.source.key
        first = self.rows_seen.get(key, 0)
        self.rows_seen[key] = first + rows.num_rows
        skip = max(self.state[key].rows_done - first, 0)
        if skip >= rows.num_rows:
            return
        rows, first = rows.slice(skip), first + skip
        if self.budget is not None:
            rows = rows.slice(0, self.budget)
            self.budget -= rows.num_rows
        for offset in range(0, rows.num_rows, self.window_rows):  # one commit per window, as locally
            piece = rows.slice(offset, self.window_rows).combine_chunks().to_batches()[0]
            yield plan, first + offset, _inputs_of(piece), _scored(piece)

    def _end_file(self, plan: "FilePlan"):
        if plan in self.unfinished:
            self.unfinished.remove(plan)
            yield plan, 0, None, None


def _inputs_of(batch: "pa.RecordBatch") -> "pa.RecordBatch":
    keep = [i for i, name in enumerate(batch.schema.names) if not name.startswith(SCORE_PREFIX) and name != PATH_COLUMN]
    return batch.select(keep)


def _scored(batch: "pa.RecordBatch") -> "ScoredWindow":
    import pyarrow as pa
    import pyarrow.compute as pc

    from emocli.inference.engine import ScoredWindow

    names = [n for n in batch.schema.names if n.startswith(SCORE_PREFIX)]
    scores = pa.RecordBatch.from_arrays([batch.column(n) for n in names], names=[n[len(SCORE_PREFIX):] for n in names])
    n_tokens = scores.column("n_tokens")
    return ScoredWindow(scores, int(pc.sum(n_tokens).as_py() or 0), int(pc.sum(pc.equal(n_tokens, 0)).as_py() or 0),
                        int(pc.sum(scores.column("truncated").cast(pa.int64())).as_py() or 0))
