"""Reading inputs: expand paths/globs/directories into data files; stream them as Arrow record batches."""

from __future__ import annotations

import glob
from pathlib import Path

from .errors import InputError

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
