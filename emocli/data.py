"""Reading inputs: expand paths/globs/directories into data files; stream them as Arrow record batches."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from emocli.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

DATA_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".csv.gz", ".csv.zst", ".tsv.gz", ".tsv.zst")


def is_data_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in DATA_SUFFIXES)


def expand_inputs(inputs: list[str] | tuple[str, ...]) -> list[Path]:
    """Files, globs and directories -> a sorted, de-duplicated list of data files; one clear error if none."""
    files: list[Path] = []
    for item in inputs:
        item = str(item)
        path = Path(item).expanduser()
        if any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            matches = [m for m in matches if m.is_file() and is_data_file(m)]
            if not matches:
                raise InputError(f"{item}: the pattern matches no CSV or Parquet file")
            files += matches
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_data_file(p))
            if not found:
                raise InputError(f"{item}: the directory holds no CSV or Parquet file")
            files += found
        elif path.exists():
            if not is_data_file(path):
                raise InputError(f"{item}: not a CSV or Parquet file (expected one of {', '.join(DATA_SUFFIXES)})")
            files.append(path)
        else:
            raise InputError(f"{item}: file not found")
    if not files:
        raise InputError("no input files given")
    seen: set[Path] = set()
    unique = []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def language_from_filename(path: Path) -> str | None:
    """`train/deu.csv` -> 'deu': BRIGHTER-style files are named by language code."""
    stem = path.name.split(".")[0]
    return stem if 2 <= len(stem) <= 5 and stem.isalpha() and stem.islower() else None


# ---------------------------------------------------------------------------------------------------------------
# Streaming: every input is read as a sequence of Arrow record batches, never as a whole file.

CSV_BLOCK_BYTES = 8 << 20  # type inference looks at the first block: a big one makes later surprises rarer
CSV_COMPRESSION = {".gz": "gzip", ".zst": "zstd"}
PARQUET_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One data file: its format, its columns, its row count when the format records it."""

    path: Path
    key: str  # the name used in derived ids ("<key>:<row>") and in progress checkpoints
    fmt: str  # "csv" | "parquet"
    columns: tuple[str, ...]
    num_rows: int | None
    size: int

    @property
    def delimiter(self) -> str:
        return "\t" if ".tsv" in self.path.name.lower() else ","


def _file_format(path: Path) -> str:
    name = path.name.lower()
    return "parquet" if name.endswith((".parquet", ".pq")) else "csv"


def _csv_stream(path: Path):
    import pyarrow as pa

    compression = CSV_COMPRESSION.get(path.suffix.lower())
    return pa.input_stream(str(path), compression=compression)


def _csv_header(path: Path, delimiter: str) -> tuple[str, ...]:
    import csv
    import io

    try:
        with _csv_stream(path) as stream:
            first_line = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="").readline()
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault, named in one line
        raise InputError(f"{path}: cannot read as CSV: {_first_line(exc)}") from None
    header = next(csv.reader([first_line], delimiter=delimiter), [])
    if not header or not any(h.strip() for h in header):
        raise InputError(f"{path}: empty CSV file (no header line)")
    return tuple(header)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_input(path: Path, key: str | None = None) -> InputFile:
    """Read only what is cheap: the Parquet footer, or the CSV header."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    fmt = _file_format(path)
    size = path.stat().st_size
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(str(path))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{path}: cannot read as Parquet: {_first_line(exc)}") from None
        return InputFile(path, key or path.name, fmt, tuple(meta.schema_arrow.names), meta.metadata.num_rows, size)
    delimiter = "\t" if ".tsv" in path.name.lower() else ","
    return InputFile(path, key or path.name, fmt, _csv_header(path, delimiter), None, size)


def describe_inputs(paths: list[Path]) -> list[InputFile]:
    """InputFiles with unique keys: the file name, or the path under the common folder when names collide."""
    paths = [Path(p) for p in paths]
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        keys = names
    else:
        resolved = [p.resolve() for p in paths]
        root = Path(os.path.commonpath([str(r.parent) for r in resolved]))
        keys = [r.relative_to(root).as_posix() for r in resolved]
    return [describe_input(p, k) for p, k in zip(paths, keys)]


def iter_record_batches(source: InputFile, columns: list[str], *, start_row: int = 0, batch_rows: int = 65536,
                        string_columns: tuple[str, ...] = ()) -> Iterator[tuple[int, "pa.RecordBatch"]]:
    """Yield (index of the batch's first row, batch of `columns`) from row `start_row` on, in file order.

    Rows are numbered from 0 in file order. Read failures (a malformed CSV row, a value that does not fit the
    column's type, a corrupt Parquet page) become one InputError naming the file and, for CSV, the line.
    """
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise InputError(f"{source.path}: no column {missing[0]!r} (columns: {', '.join(source.columns)})")
    reader = _parquet_batches if source.fmt == "parquet" else _csv_batches
    yield from reader(source, columns, start_row, batch_rows, string_columns)


def _slice_from(batches, start_row: int):
    """Drop the rows before start_row from a stream of (first_row, batch)."""
    for first, batch in batches:
        end = first + batch.num_rows
        if end <= start_row:
            continue
        if first < start_row:
            batch = batch.slice(start_row - first)
            first = start_row
        yield first, batch


def _parquet_batches(source: InputFile, columns, start_row, batch_rows, string_columns):
    import pyarrow.parquet as pq

    try:
        # buffered column reads: without them a whole row group's column chunks sit in memory at once
        pfile = pq.ParquetFile(str(source.path), buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        meta = pfile.metadata
        first_group, first_row = 0, 0
        while first_group < meta.num_row_groups and first_row + meta.row_group(first_group).num_rows <= start_row:
            first_row += meta.row_group(first_group).num_rows
            first_group += 1
        groups = list(range(first_group, meta.num_row_groups))
        if not groups:
            return

        def numbered():
            row = first_row
            for batch in pfile.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns,
                                            use_threads=False):
                yield row, batch
                row += batch.num_rows

        yield from _slice_from(numbered(), start_row)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{source.path}: cannot read Parquet data: {_first_line(exc)}") from None


def _csv_batches(source: InputFile, columns, start_row, batch_rows, string_columns):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    bad_rows = []

    def on_invalid_row(row):
        bad_rows.append(row)
        return "error"

    read_options = pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    parse_options = pcsv.ParseOptions(delimiter=source.delimiter, newlines_in_values=True,
                                      invalid_row_handler=on_invalid_row)
    convert_options = pcsv.ConvertOptions(
        include_columns=list(columns),
        column_types={c: pa.string() for c in string_columns},
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    try:
        with _csv_stream(source.path) as stream:
            reader = pcsv.open_csv(stream, read_options=read_options, parse_options=parse_options,
                                   convert_options=convert_options)

            def numbered():
                row = 0
                for batch in reader:
                    for offset in range(0, batch.num_rows, batch_rows):
                        piece = batch.slice(offset, batch_rows)
                        yield row + offset, piece
                    row += batch.num_rows

            yield from _slice_from(numbered(), start_row)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        if bad_rows:
            row = bad_rows[0]
            raise InputError(f"{source.path}: line {row.number}: expected {row.expected_columns} columns, "
                             f"got {row.actual_columns}: {row.text[:80]!r}") from None
        raise InputError(f"{source.path}: cannot read CSV data: {_first_line(exc)}",
                         hint="a column whose values change type late in the file can be dropped with --keep") from None


def derived_ids(key: str, first_row: int, n: int) -> "pa.Array":
    """Stable ids '<key>:<row number>' (row numbers from 1, in file order) for inputs without an id column."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = pc.cast(pa.array(np.arange(first_row + 1, first_row + n + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(pa.scalar(f"{key}:"), numbers, "")
