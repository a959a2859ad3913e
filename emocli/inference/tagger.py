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
LANGUAGE_COLUMNS = ("language", "lang")  # looked for, in this order, when no --language-col is given
DETECTED_COLUMNS = ("language", "language_score")


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
    # None: detect when the inputs have no language column and the detector is installed; True: always (the
    # input's own `language` column is then kept as `input_language`); False: never
    detect_language: bool | None = None
    language_col: str | None = None  # the input column naming each row's language (default: language, lang)
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
    detected: "tuple[pa.Array, pa.Array] | None" = None  # (language, language_score), set on the tokenizer thread


@dataclass(frozen=True)
class LanguagePlan:
    """Where each row's language comes from: an input column, the detector, or nowhere."""

    source: str | None  # 'column:NAME' | 'detected' | None
    column: str | None = None
    note: str | None = None

    @property
    def detect(self) -> bool:
        return self.source == "detected"


def plan_language(sources: list[InputFile], config: TagConfig) -> LanguagePlan:
    """A user's --language-col must exist everywhere; otherwise a language/lang column present in every file is
    the rows' language, and only without one does `tag` detect (when the detector is installed)."""
    if config.language_col is not None:
        for source in sources:
            if config.language_col not in source.columns:
                raise InputError(f"{source.path}: --language-col {config.language_col!r}: no such column "
                                 f"(columns: {', '.join(source.columns)})")
        if config.detect_language:
            raise InputError("--language-col and --detect-language exclude each other: pick one")
        return LanguagePlan(f"column:{config.language_col}", config.language_col)
    column = next((c for c in LANGUAGE_COLUMNS if all(c in source.columns for source in sources)), None)
    if config.detect_language is False or (config.detect_language is None and column is not None):
        return LanguagePlan(f"column:{column}" if column else None, column)
    if config.detect_language is None and not detector_installed():
        return LanguagePlan(None, note="no language column and no language detector installed: rows carry no "
                                       'language (pip install "emocli[langid]", or --language-col NAME)')
    if not detector_installed():
        from emocli.errors import ConfigError
        from emocli.inference.langid import EXTRA_HINT

        raise ConfigError("--detect-language needs the language detector (pycld2)", hint=EXTRA_HINT)
    return LanguagePlan("detected")


def detector_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("pycld2") is not None


def plan_files(sources: list[InputFile], config: TagConfig, labels: tuple[str, ...],
               language: LanguagePlan = LanguagePlan(None)) -> tuple[list[FilePlan], list[str]]:
    """Check every file has the columns asked for; name the table columns (renaming clashes with ours)."""
    reserved = {c.lower() for c in (*RESERVED_COLUMNS, *labels, *(DETECTED_COLUMNS if language.detect else ()))}
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
            if language.column is not None and language.column not in wanted:
                wanted.append(language.column)  # the summaries' coverage needs the rows' language
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
        elif path.suffix in (".safetensors", ".onnx"):
            with path.open("rb") as fh:
                digest.update(fh.read(1 << 20))  # the header (names, shapes, offsets) and the first weights
    return "dir:" + digest.hexdigest()[:16]


def run_fingerprint(config: TagConfig, plans: list[FilePlan], model_id: str, info: "ModelInfo",
                    language: LanguagePlan = LanguagePlan(None)) -> str:
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
    if language.detect:  # only then: runs before language detection keep their identity
        identity["detect_language"] = True
    if info.architecture == "onnx":
        identity["backend"] = "onnx"  # only then, so torch runs keep the ids they had
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
    if window.detected is not None:
        arrays += list(window.detected)
        names += list(DETECTED_COLUMNS)
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


def _texts_function(language: LanguagePlan):
    """How a window's texts are read: with its languages detected on the way when the run detects them."""
    from emocli.inference.langid import LanguageDetector

    return _detecting_texts_of(LanguageDetector()) if language.detect else _texts_of


def _detecting_texts_of(detector):
    """`_texts_of` that also detects the window's languages: it runs on the engine's tokenizer thread, so the
    detection overlaps the model's forward passes instead of costing a second pass."""
    def texts_of(window: Window):
        texts = _texts_of(window)
        if texts is not None:
            window.detected = detector.detect_arrow(texts)
        return texts

    return texts_of


def _remaining_rows(plans: list[FilePlan], progress: dict[str, FileProgress], budget: int | None) -> int | None:
    if any(p.source.num_rows is None for p in plans if not progress[p.source.key].done):
        return budget
    left = sum(p.source.num_rows - progress[p.source.key].rows_done for p in plans if not progress[p.source.key].done)
    return left if budget is None else min(left, budget)


def model_for_backend(resolved: "ResolvedModel", info: "ModelInfo", engine: EngineConfig):
    """The model the backend runs: an ONNX export as it is; a torch model exported (once, cached) for --backend onnx."""
    from emocli.model.io import read_model_info

    is_onnx = info.architecture == "onnx"
    if engine.backend == "torch" and is_onnx:
        raise InputError(f"--backend torch: {resolved.path} is an ONNX export",
                         hint="tag it with --backend onnx (or auto), or tag the torch model it was exported from")
    if engine.backend != "onnx" or is_onnx:
        return resolved, info
    from emocli.export.onnx_export import cached_export

    path = cached_export(resolved.path, model_fingerprint(resolved), int8=engine.quantize)
    return replace(resolved, path=path, commit=None), read_model_info(path)


def tag(config: TagConfig, progress: Progress | None = None) -> TagSummary:
    """Score every row of the inputs into config.table of config.db; resume the same run if it exists."""
    from emocli.hub.pull import resolve_model
    from emocli.model.io import read_model_info
    from emocli.model.info import model_languages

    progress = chosen(progress)
    check_table_name(config.table)
    if config.limit is not None and config.limit < 0:
        raise InputError(f"--limit {config.limit}: must be 0 or more")
    if config.runner not in ENGINES:
        raise InputError(f"--engine {config.runner}: expected one of {', '.join(ENGINES)}")
    sources = describe_inputs(expand_inputs(list(config.inputs)))
    resolved = resolve_model(config.model)
    info = read_model_info(resolved.path, resolved.spec)
    if config.engine.backend != "auto":
        resolved, info = model_for_backend(resolved, info, config.engine)
    language = plan_language(sources, config)
    plans, notes = plan_files(sources, config, info.labels, language)
    notes += [language.note] if language.note else []
    model_id = model_fingerprint(resolved)
    run_id = run_fingerprint(config, plans, model_id, info, language)
    # the engine first: a cluster that cannot be reached leaves no store behind
    with _engine(config) as cluster, Store(config.db) as store:
        if config.overwrite:
            store.drop_table(config.table)
        elif language.detect and config.detect_language is None:
            run_id, language = _resume_undetected(store, run_id, language,
                                                  run_fingerprint(config, plans, model_id, info), notes)
        run = RunRecord(run_id, config.table, resolved.name, resolved.repo, model_id, info.labels,
                        info.thresholds, info.task, tuple(str(p.source.path) for p in plans), config.text_col,
                        model_languages=model_languages(info, resolved.spec), language_source=language.source)
        state = store.begin_run(run, [(p.source.key, str(p.source.path)) for p in plans])
        store.record_engine(run_id, config.runner, cluster.workers if cluster else 1,
                            cluster.address if cluster else None)
        already = sum(s.rows_done for s in state.values())
        budget = None if config.limit is None else max(config.limit - already, 0)
        summary = TagSummary(run_id, str(config.db), config.table, resolved.name, "running", resumed_from=already,
                             notes=notes)
        try:
            _tag_rows(store, config, plans, state, budget, resolved, summary, progress, language, cluster)
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




def _mark_run(store: Store, run_id: str, status: str) -> None:
    """Record why a run stopped, without letting a second failure hide the first."""
    try:
        store.finish_run(run_id, status)
    except Exception:  # noqa: BLE001
        pass


def _resume_undetected(store: Store, run_id: str, language: LanguagePlan, legacy_id: str,
                       notes: list[str]) -> tuple[str, LanguagePlan]:
    """A run started before tag detected languages by default resumes as it began (no new run, no duplicates)."""
    if store.run_status(run_id) is None and store.run_status(legacy_id) is not None:
        notes.append(f"run {legacy_id} was started without language detection: it continues without "
                     "(--overwrite --detect-language to add it)")
        return legacy_id, LanguagePlan(None)
    return run_id, language


@contextmanager
def _engine(config: TagConfig) -> Iterator[Cluster | None]:
    """None for the local engine; for ray, the started or joined cluster (disconnected at the end)."""
    if config.runner == "local":
        yield None
        return
    from emocli.inference.ray_engine import actor_plan, connected

    actor_plan(config.engine, config.ray.cpus_per_worker, config.ray.gpus_per_worker)  # fails before Ray starts
    with connected(config.ray) as cluster:
        yield cluster


def _local_windows(config: TagConfig, plans: list[FilePlan], state: dict[str, FileProgress], budget: int | None,
                   resolved: "ResolvedModel", summary: TagSummary, progress: Progress, language: LanguagePlan):
    """(window, scores) in file order from the model loaded in this process."""
    from emocli.inference.engine import bf16_note, load_scorer, score_windows
    from emocli.model.device import cpu_has_bf16_matrix_unit
    from emocli.model.io import load_device, load_model, read_model_info

    device = load_device(read_model_info(resolved.path, resolved.spec), config.engine.device, resolved.path)
    model = load_model(resolved.path, resolved.spec, device=device, dtype=config.engine.dtype)
    scorer = load_scorer(model, config.engine)
    summary.device = device
    note = bf16_note(config.engine, scorer, cpu_has_bf16_matrix_unit())
    summary.notes += [note] if note else []
    windows = iter_windows(plans, state, scorer.window_rows, budget)
    texts_of = _texts_function(language)
    return score_windows(windows, texts_of, scorer,
                         on_batch=lambda rows, tokens: progress.advance(rows, tokens=tokens))


def _ray_windows(config: TagConfig, plans: list[FilePlan], state: dict[str, FileProgress], budget: int | None,
                 resolved: "ResolvedModel", summary: TagSummary, cluster: Cluster, language: LanguagePlan):
    """The same pairs, scored by Ray actors (emocli/inference/ray_engine.py); languages are detected here on
    the driver, window by window, while the actors score the next blocks."""
    from emocli.inference.ray_engine import scored_windows

    kind = "cuda" if cluster.gpus_per_worker else "cpu"
    summary.device = f"ray: {cluster.workers} worker{'s' * (cluster.workers != 1)} ({kind})"
    pieces = scored_windows(plans, state, resolved, config.engine, config.text_col, cluster, budget,
                            detect_language=language.detect)
    texts_of = _texts_function(language)
    for plan, first_row, batch, scored in pieces:
        window = Window(plan, first_row, batch)
        if scored is not None and language.detect:  # otherwise the actors sent no texts back
            texts_of(window)
        yield window, scored


def _tag_rows(store: Store, config: TagConfig, plans: list[FilePlan], state: dict[str, FileProgress],
              budget: int | None, resolved: "ResolvedModel", summary: TagSummary, progress: Progress,
              language: LanguagePlan = LanguagePlan(None), cluster: Cluster | None = None) -> None:
    if all(s.done for s in state.values()) or budget == 0:
        return  # nothing left: do not even load the model
    total = _remaining_rows(plans, state, budget)
    if cluster is None:
        pairs = _local_windows(config, plans, state, budget, resolved, summary, progress, language)
    else:
        pairs = _ray_windows(config, plans, state, budget, resolved, summary, cluster, language)
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
