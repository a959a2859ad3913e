"""Labelled train/dev data: CSV/Parquet files with a text column and 0/1 label columns.

Files may annotate different label sets (BRIGHTER: `eng` has no disgust, `afr` no surprise). The data
is put on the union of labels; a label a file does not annotate is *unknown* for its rows: `mask` is
False there and losses and metrics skip that cell, it is never read as 0.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emocli.data import expand_inputs, language_from_filename
from emocli.errors import InputError
from emocli.training.config import DataSpec

# Columns that are never labels, besides the chosen text and id columns.
METADATA_COLUMNS = frozenset({
    "id", "text", "language", "lang", "split", "source", "created_at", "date", "timestamp", "user_id", "user",
    "author", "url", "title", "country", "locale", "platform",
})
LANGUAGE_COLUMNS = ("language", "lang")


@dataclass
class LabelledData:
    texts: list[str]
    targets: np.ndarray  # (n, L) float32, 0/1; 0 where unknown
    mask: np.ndarray  # (n, L) bool: True where the file annotates the label
    languages: list[str | None]
    labels: tuple[str, ...]
    files: tuple[Path, ...] = ()
    skipped_texts: int = 0
    dropped_labels: tuple[str, ...] = ()
    fingerprints: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    def positives(self) -> np.ndarray:
        return (self.targets * self.mask).sum(axis=0)

    def known(self) -> np.ndarray:
        return self.mask.sum(axis=0)

    def subset(self, index: np.ndarray | list[int]) -> "LabelledData":
        index = np.asarray(index, dtype=int)
        return LabelledData([self.texts[i] for i in index], self.targets[index], self.mask[index],
                            [self.languages[i] for i in index], self.labels, self.files, 0, self.dropped_labels,
                            self.fingerprints)

    @property
    def language_set(self) -> list[str]:
        return sorted({lang for lang in self.languages if lang})


@dataclass
class _RawFile:
    path: Path
    texts: list[str]
    labels: dict[str, np.ndarray]  # label -> (n,) float32 with NaN for null cells
    languages: list[str | None]
    skipped: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_frame(path: Path):
    import polars as pl

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pl.read_parquet(path)
        separator = "\t" if ".tsv" in name else ","
        return pl.read_csv(path, separator=separator, infer_schema_length=0)  # all strings: we check values
    except pl.exceptions.NoDataError:
        raise InputError(f"{path}: the file is empty") from None
    except (pl.exceptions.ComputeError, pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot read it: {first}") from None


def _label_columns(path: Path, columns: list[str], spec: DataSpec) -> list[str]:
    if spec.labels is not None:
        return [label for label in spec.labels if label in columns]
    skip = METADATA_COLUMNS | {spec.text_col, spec.id_col}
    return [c for c in columns if c not in skip and not c.startswith("_")]


def _parse_label_column(path: Path, frame, column: str) -> np.ndarray:
    """0/1 (as numbers, strings or booleans) -> float32 with NaN for nulls; anything else is one clear error."""
    import polars as pl

    series = frame.get_column(column)
    if series.dtype == pl.Boolean:
        series = series.cast(pl.Int8)
    values = series.cast(pl.Utf8).str.strip_chars().to_list()
    out = np.full(len(values), np.nan, dtype=np.float32)
    for row, value in enumerate(values):
        if value is None or value == "":
            continue
        if value in ("1", "1.0", "true", "True"):
            out[row] = 1.0
        elif value in ("0", "0.0", "false", "False"):
            out[row] = 0.0
        else:
            raise InputError(f"{path}: row {row + 1}, column {column!r}: label value {value!r} is not 0 or 1")
    return out


def _read_labelled_file(path: Path, spec: DataSpec) -> _RawFile:
    frame = _read_frame(path)
    if frame.height == 0:
        raise InputError(f"{path}: the file is empty (no rows)")
    columns = frame.columns
    if spec.text_col not in columns:
        raise InputError(f"{path}: no text column {spec.text_col!r} (columns: {', '.join(columns)})",
                         hint="name the text column with --text-col")
    label_cols = _label_columns(path, columns, spec)
    if not label_cols:
        raise InputError(f"{path}: no label columns found (columns: {', '.join(columns)})",
                         hint="label columns hold 0/1; name them with --labels")
    labels = {column: _parse_label_column(path, frame, column) for column in label_cols}
    raw_texts = frame.get_column(spec.text_col).cast(str).to_list()
    language_col = next((c for c in LANGUAGE_COLUMNS if c in columns and c != spec.text_col), None)
    file_language = language_from_filename(path)
    raw_languages = frame.get_column(language_col).cast(str).to_list() if language_col else [file_language] * len(raw_texts)
    keep = [i for i, text in enumerate(raw_texts) if text is not None and text.strip()]
    return _RawFile(
        path=path,
        texts=[raw_texts[i] for i in keep],
        labels={label: values[keep] for label, values in labels.items()},
        languages=[raw_languages[i] or file_language for i in keep],
        skipped=len(raw_texts) - len(keep),
    )


def _union_labels(raw_files: list[_RawFile], spec: DataSpec, allow_missing: bool = False) -> list[str]:
    if spec.labels is not None:
        missing = [label for label in spec.labels if not any(label in raw.labels for raw in raw_files)]
        if missing and (not allow_missing or len(missing) == len(spec.labels)):
            raise InputError(f"label column(s) {', '.join(missing)} not found in any of "
                             f"{', '.join(str(raw.path) for raw in raw_files)}")
        return list(spec.labels)
    union: list[str] = []
    for raw in raw_files:
        union += [label for label in raw.labels if label not in union]
    return union


def _stack(raw_files: list[_RawFile], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    blocks_targets, blocks_mask = [], []
    for raw in raw_files:
        n = len(raw.texts)
        values = np.full((n, len(labels)), np.nan, dtype=np.float32)
        for j, label in enumerate(labels):
            if label in raw.labels:
                values[:, j] = raw.labels[label]
        known = ~np.isnan(values)
        blocks_targets.append(np.where(known, values, 0.0).astype(np.float32))
        blocks_mask.append(known)
    return np.concatenate(blocks_targets), np.concatenate(blocks_mask)


def load_labelled(inputs: list[str] | tuple[str, ...], spec: DataSpec = DataSpec(), *,
                  labels: tuple[str, ...] | None = None, require_positives: bool = True) -> LabelledData:
    """Read labelled files onto one label set.

    `labels` fixes the label set (a dev set read for a model trained on train's labels): labels a file
    lacks are unknown, label columns outside the set are ignored. Otherwise the union of the files'
    label columns (or `spec.labels`) is used and, with `require_positives`, a label with no positive
    example is an error unless `spec.drop_empty_labels`.
    """
    paths = expand_inputs(list(inputs))
    if labels is not None:
        spec = DataSpec(spec.text_col, spec.id_col, tuple(labels), spec.drop_empty_labels)
    raw_files = [_read_labelled_file(path, spec) for path in paths]
    label_names = _union_labels(raw_files, spec, allow_missing=labels is not None)
    targets, mask = _stack(raw_files, label_names)
    data = LabelledData(
        texts=[text for raw in raw_files for text in raw.texts],
        targets=targets,
        mask=mask,
        languages=[lang for raw in raw_files for lang in raw.languages],
        labels=tuple(label_names),
        files=tuple(paths),
        skipped_texts=sum(raw.skipped for raw in raw_files),
        fingerprints={str(path): file_sha256(path) for path in paths},
    )
    if not data.texts:
        raise InputError(f"{', '.join(map(str, paths))}: no non-empty text in column {spec.text_col!r}")
    if require_positives and labels is None:
        data = _check_positives(data, spec.drop_empty_labels)
    return data


def _check_positives(data: LabelledData, drop_empty: bool) -> LabelledData:
    empty = [label for label, count in zip(data.labels, data.positives()) if count == 0]
    if not empty:
        return data
    if not drop_empty:
        files = ", ".join(str(path) for path in data.files)
        raise InputError(f"{files}: label column {empty[0]!r} has no positive example (its class weight would be "
                         f"infinite and it cannot be learned)", hint="drop such labels with --drop-empty-labels")
    keep = [j for j, label in enumerate(data.labels) if label not in empty]
    if not keep:
        raise InputError("every label column is empty (no positive example at all)")
    return LabelledData(data.texts, data.targets[:, keep], data.mask[:, keep], data.languages,
                        tuple(data.labels[j] for j in keep), data.files, data.skipped_texts, tuple(empty),
                        data.fingerprints)
