"""`emocli tag` as a library call: files -> batched inference -> DuckDB, resumable.

    summary = tag(TagConfig(inputs=("tweets.parquet",)))

A run is identified by a fingerprint of what decides its rows (inputs, model, table, columns,
max length). Running the same command again reopens that run and continues after its last
checkpoint; a run already complete writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from emocli.config import DEFAULT_DB, DEFAULT_TABLE
from emocli.data import InputFile, derived_ids, describe_inputs, expand_inputs, iter_record_batches
from emocli.errors import InputError
from emocli.inference.engine import EngineConfig
from emocli.inference.ray_engine import ENGINES, Cluster, RayConfig
from emocli.progress import Progress, chosen
from emocli.store.core import ChunkCounts, FileProgress, Store, check_table_name
from emocli.store.runs import RunRecord

if TYPE_CHECKING:
    import pyarrow as pa

    from emocli.hub.pull import ResolvedModel
    from emocli.model.io import ModelInfo

RESERVED_COLUMNS = ("id", "labels", "n_tokens", "truncated", "run_id")
STORED_TEXT_COLUMN = "text"


@dataclass(frozen=True)
class TagConfig:
    inputs: tuple[str, ...]
    model: str | None = None  # None: the user's default model, else the registry's
    db: Path = Path(DEFAULT_DB)
    table: str = DEFAULT_TABLE
    text_col: str = "text"
    id_col: str | None = None  # None: `id` when the input has one, else "<file>:<row>"
    keep: tuple[str, ...] | None = None  # None: every input column but the text
    keep_text: bool = False
    limit: int | None = None  # rows of the run in total (a re-run with a larger limit continues)
    overwrite: bool = False
    engine: EngineConfig = field(default_factory=EngineConfig)
    runner: str = "local"  # `--engine`: local (this process) | ray (Ray Data actors, emocli/inference/ray_engine.py)
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass
class TagSummary:
    run_id: str
    db: str
    table: str
    model: str
    status: str
    rows: int = 0  # rows handled by this invocation (written, including skipped ones)
    skipped: int = 0
    truncated: int = 0
    tokens: int = 0
    seconds: float = 0.0
    resumed_from: int = 0  # rows the run had already committed before this invocation
    run_rows: int = 0  # rows of the run in the table, all invocations together
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["rows_per_s"] = round(self.rows_per_s, 1)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass(frozen=True)
class FilePlan:
    """What to read from one input file and what each column is called in the table."""

    source: InputFile
    text_col: str
    id_col: str | None  # None: derive "<key>:<row>"
    kept: tuple[tuple[str, str], ...]  # (input column, table column)
    id_as_text: bool = False  # files disagree on the id's type: store every id as VARCHAR

    @property
    def read_columns(self) -> list[str]:
        columns = [self.text_col]
        if self.id_col and self.id_col not in columns:
            columns.append(self.id_col)
        columns += [c for c, _ in self.kept if c not in columns]
        return columns


@dataclass
class Window:
    plan: FilePlan
    first_row: int
    batch: "pa.RecordBatch | None"  # None: the end-of-file marker


def plan_files(sources: list[InputFile], config: TagConfig, labels: tuple[str, ...]) -> tuple[list[FilePlan], list[str]]:
    """Check every file has the columns asked for; name the table columns (renaming clashes with ours)."""
    reserved = {c.lower() for c in (*RESERVED_COLUMNS, *labels)}
    keep_text = config.keep_text or (config.keep is not None and config.text_col in config.keep)
    if keep_text:
        reserved.add(STORED_TEXT_COLUMN)
    plans, notes, renamed = [], [], set()
    for source in sources:
        if config.text_col not in source.columns:
            raise InputError(f"{source.path}: no text column {config.text_col!r} (columns: {', '.join(source.columns)})",
                             hint="name it with --text-col")
        if config.id_col is not None and config.id_col not in source.columns:
            raise InputError(f"{source.path}: no id column {config.id_col!r} (columns: {', '.join(source.columns)})")
        id_col = config.id_col or ("id" if "id" in source.columns else None)
        if config.keep is None:
            wanted = [c for c in source.columns if c not in (config.text_col, id_col)]
        else:
            missing = [c for c in config.keep if c not in source.columns]
            if missing:
                raise InputError(f"{source.path}: --keep {missing[0]!r}: no such column "
                                 f"(columns: {', '.join(source.columns)})")
            wanted = [c for c in config.keep if c not in (config.text_col, id_col)]
        kept = []
        for column in wanted:
            name = column
            if column.lower() in reserved:
                name = f"input_{column}"
                if column not in renamed:
                    renamed.add(column)
                    notes.append(f"input column {column!r} is stored as {name!r} ({column!r} is an output column)")
            kept.append((column, name))
        if keep_text:
            kept.append((config.text_col, STORED_TEXT_COLUMN))
        plans.append(FilePlan(source, config.text_col, id_col, tuple(kept)))
    if len({_id_kind(plan) for plan in plans}) > 1:
        plans = [replace(plan, id_as_text=True) for plan in plans]
    return plans, notes


def _id_kind(plan: FilePlan) -> str:
    """What decides a file's id type: derived ids are text, Parquet says its type, a CSV's is inferred per file."""
    if plan.id_col is None:
        return "derived"
    if plan.source.fmt == "csv":
        return f"csv:{plan.source.path}"
    import pyarrow.parquet as pq

    return str(pq.read_schema(plan.source.path).field(plan.id_col).type)


def model_fingerprint(resolved: "ResolvedModel") -> str:
    """The Hub commit, else a hash of the model directory's config, metadata and weight headers."""
    if resolved.commit:
        return resolved.commit
    digest = hashlib.sha256()
    for path in sorted(Path(resolved.path).iterdir()):
        if not path.is_file():
            continue
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
        if path.suffix == ".json" and path.stat().st_size < (1 << 20):
            digest.update(path.read_bytes())
        elif path.suffix == ".safetensors":
            with path.open("rb") as fh:
                digest.update(fh.read(1 << 20))  # the header (names, shapes, offsets) and the first weights
    return "dir:" + digest.hexdigest()[:16]


def run_fingerprint(config: TagConfig, plans: list[FilePlan], model_id: str, info: "ModelInfo") -> str:
    identity = {
        "table": config.table,
        "model": model_id,
        "labels": list(info.labels),
        "thresholds": list(info.thresholds),
        "text_col": config.text_col,
        "inputs": [[str(p.source.path.resolve()), p.source.size, p.id_col, [list(k) for k in p.kept]] for p in plans],
        "max_length": config.engine.max_length or info.max_length,
        "quantize": config.engine.quantize,
    }
    return "run-" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _normalize(array: "pa.Array") -> "pa.Array":
    """Types DuckDB should store plainly: TIMESTAMP (microseconds) rather than TIMESTAMP_S, no dictionaries."""
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_timestamp(array.type) and array.type.unit != "us":
        array = array.cast(pa.timestamp("us", tz=array.type.tz))
    if pa.types.is_null(array.type):
        array = array.cast(pa.string())
    return array


def assemble_rows(window: Window, scores: "pa.RecordBatch", run_id: str) -> "pa.Table":
    """Table rows for one window: id, kept columns, scores, labels, n_tokens, truncated, run_id."""
    import pyarrow as pa

    plan, batch = window.plan, window.batch
    n = batch.num_rows
    ids = batch.column(plan.id_col) if plan.id_col else derived_ids(plan.source.key, window.first_row, n)
    ids = _normalize(ids)
    if plan.id_as_text and not pa.types.is_string(ids.type):
        ids = ids.cast(pa.string())
    arrays, names = [ids], ["id"]
    for column, name in plan.kept:
        arrays.append(_normalize(batch.column(column)))
        names.append(name)
    arrays += list(scores.columns)
    names += scores.schema.names
    arrays.append(pa.repeat(pa.scalar(run_id, pa.string()), n))
    names.append("run_id")
    return pa.Table.from_arrays(arrays, names=names)


def iter_windows(plans: list[FilePlan], progress: dict[str, FileProgress], window_rows: int,
                 budget: int | None) -> Iterator[Window]:
    """Windows of rows from where each file's checkpoint stands; an end-of-file marker after each file."""
    for plan in plans:
        state = progress.get(plan.source.key, FileProgress(0, False))
        if state.done:
            continue
        end = state.rows_done
        for first, batch in iter_record_batches(plan.source, plan.read_columns, start_row=state.rows_done,
                                                batch_rows=window_rows, string_columns=(plan.text_col,)):
            if budget is not None:
                if budget <= 0:
                    return  # stopped by --limit inside this file: it stays open for a later run
                if batch.num_rows > budget:
                    batch = batch.slice(0, budget)
                budget -= batch.num_rows
            end = first + batch.num_rows
            yield Window(plan, first, batch)
        if budget is not None and budget <= 0 and (plan.source.num_rows is None or end < plan.source.num_rows):
            return  # rows may be left: do not mark the file done
        yield Window(plan, 0, None)


def _texts_of(window: Window):
    import pyarrow as pa

    if window.batch is None:
        return None
    texts = window.batch.column(window.plan.text_col)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type) or pa.types.is_null(texts.type)):
        raise InputError(f"{window.plan.source.path}: column {window.plan.text_col!r} holds {texts.type}, not text")
    return texts


def _remaining_rows(plans: list[FilePlan], progress: dict[str, FileProgress], budget: int | None) -> int | None:
    if any(p.source.num_rows is None for p in plans if not progress[p.source.key].done):
        return budget
    left = sum(p.source.num_rows - progress[p.source.key].rows_done for p in plans if not progress[p.source.key].done)
    return left if budget is None else min(left, budget)


def tag(config: TagConfig, progress: Progress | None = None) -> TagSummary:
    """Score every row of the inputs into config.table of config.db; resume the same run if it exists."""
    from emocli.hub.pull import resolve_model
    from emocli.model.io import read_model_info

    progress = chosen(progress)
    check_table_name(config.table)
    if config.limit is not None and config.limit < 0:
        raise InputError(f"--limit {config.limit}: must be 0 or more")
    if config.runner not in ENGINES:
        raise InputError(f"--engine {config.runner}: expected one of {', '.join(ENGINES)}")
    sources = describe_inputs(expand_inputs(list(config.inputs)))
    resolved = resolve_model(config.model)
    info = read_model_info(resolved.path, resolved.spec)
    plans, notes = plan_files(sources, config, info.labels)
    model_id = model_fingerprint(resolved)
    run_id = run_fingerprint(config, plans, model_id, info)
    # the engine first: a cluster that cannot be reached leaves no store behind
    with _engine(config) as cluster, Store(config.db) as store:
        if config.overwrite:
            store.drop_table(config.table)
        run = RunRecord(run_id, config.table, resolved.name, resolved.repo, model_id, info.labels,
                        info.thresholds, info.task, tuple(str(p.source.path) for p in plans), config.text_col)
        state = store.begin_run(run, [(p.source.key, str(p.source.path)) for p in plans])
        store.record_engine(run_id, config.runner, cluster.workers if cluster else 1,
                            cluster.address if cluster else None)
        already = sum(s.rows_done for s in state.values())
        budget = None if config.limit is None else max(config.limit - already, 0)
        summary = TagSummary(run_id, str(config.db), config.table, resolved.name, "running", resumed_from=already,
                             notes=notes)
        try:
            _tag_rows(store, config, plans, state, budget, resolved, summary, progress, cluster)
        except KeyboardInterrupt:
            _mark_run(store, run_id, "interrupted")
            raise
        except BaseException:
            _mark_run(store, run_id, "failed")
            raise
        finally:
            progress.finish()
        state = store.progress(run_id)
        summary.status = "done" if all(s.done for s in state.values()) else "interrupted"
        store.finish_run(run_id, summary.status)
        summary.run_rows = store.run_counts(run_id).written
    return summary


@contextmanager
def _engine(config: TagConfig) -> Iterator[Cluster | None]:
    """None for the local engine; for ray, the started or joined cluster (disconnected at the end)."""
    if config.runner == "local":
        yield None
        return
    from emocli.inference.ray_engine import connected

    with connected(config.ray) as cluster:
        yield cluster


def _mark_run(store: Store, run_id: str, status: str) -> None:
    """Record why a run stopped, without letting a second failure hide the first."""
    try:
        store.finish_run(run_id, status)
    except Exception:  # noqa: BLE001
        pass


def _local_windows(config: TagConfig, plans: list[FilePlan], state: dict[str, FileProgress], budget: int | None,
                   resolved: "ResolvedModel", summary: TagSummary, progress: Progress):
    """(window, scores) in file order from the model loaded in this process."""
    from emocli.inference.engine import load_scorer, score_windows
    from emocli.model.device import resolve_device
    from emocli.model.io import load_model

    device = resolve_device(config.engine.device)
    model = load_model(resolved.path, resolved.spec, device=device, dtype=config.engine.dtype)
    scorer = load_scorer(model, config.engine)
    summary.device = device
    windows = iter_windows(plans, state, scorer.window_rows, budget)
    return score_windows(windows, _texts_of, scorer,
                         on_batch=lambda rows, tokens: progress.advance(rows, tokens=tokens))


def _ray_windows(config: TagConfig, plans: list[FilePlan], state: dict[str, FileProgress], budget: int | None,
                 resolved: "ResolvedModel", summary: TagSummary, cluster: Cluster):
    """The same pairs, scored by Ray actors (emocli/inference/ray_engine.py)."""
    from emocli.inference.ray_engine import scored_windows

    kind = "cuda" if cluster.gpus_per_worker else "cpu"
    summary.device = f"ray: {cluster.workers} worker{'s' * (cluster.workers != 1)} ({kind})"
    pieces = scored_windows(plans, state, resolved, config.engine, config.text_col, cluster, budget)
    return ((Window(plan, first_row, batch), scored) for plan, first_row, batch, scored in pieces)


def _tag_rows(store: Store, config: TagConfig, plans: list[FilePlan], state: dict[str, FileProgress],
              budget: int | None, resolved: "ResolvedModel", summary: TagSummary, progress: Progress,
              cluster: Cluster | None = None) -> None:
    if all(s.done for s in state.values()) or budget == 0:
        return  # nothing left: do not even load the model
    total = _remaining_rows(plans, state, budget)
    if cluster is None:
        pairs = _local_windows(config, plans, state, budget, resolved, summary, progress)
    else:
        pairs = _ray_windows(config, plans, state, budget, resolved, summary, cluster)
    progress.start("tagging", total, "rows")
    started = time.perf_counter()
    for window, scored in pairs:
        key = window.plan.source.key
        if scored is None:
            store.finish_file(summary.run_id, key)
            continue
        rows = assemble_rows(window, scored.scores, summary.run_id)
        end = window.first_row + rows.num_rows
        counts = ChunkCounts(rows.num_rows, scored.n_skipped, scored.n_truncated)
        store.append_chunk(config.table, summary.run_id, key, rows, end, counts,
                           file_done=window.plan.source.num_rows == end)
        summary.rows += counts.written
        summary.skipped += counts.skipped
        summary.truncated += counts.truncated
        summary.tokens += scored.n_tokens
        if cluster is None:
            progress.advance(counts.skipped)  # scored rows were reported batch by batch
        else:
            progress.advance(counts.written, tokens=scored.n_tokens)
    summary.seconds = time.perf_counter() - started
