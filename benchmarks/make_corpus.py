"""Build a tweets-like Parquet corpus from the texts of every BRIGHTER language.

    python -m benchmarks.make_corpus 20000 tweets.parquet [--data ../shared/data/brighter] [--seed 0]

Columns: id (BIGINT), text, language (the BRIGHTER code), created_at (spread over 2025), user_id
(a few heavy posters, many occasional ones). Texts are drawn with replacement from the pooled
train+dev texts, so N can be far larger than BRIGHTER itself (up to 10M and beyond). Rows are
written in chunks, one Parquet row group each, so memory stays flat whatever N is.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

DEFAULT_DATA = Path(os.environ.get("EMOCLI_BRIGHTER",
                                  Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "brighter"))
CHUNK_ROWS = 250_000
YEAR_START = np.datetime64("2025-01-01T00:00:00", "s")
SECONDS_IN_YEAR = 365 * 24 * 3600
N_USERS = 200_000


def load_pool(data_dir: Path) -> tuple[pa.Array, pa.Array]:
    """(texts, languages) of every BRIGHTER split and language, in a stable order."""
    files = sorted(data_dir.glob("*/*.csv"))
    if not files:
        sys.exit(f"error: no BRIGHTER CSV files under {data_dir} (pass --data)")
    texts, languages = [], []
    for path in files:
        column = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            include_columns=["text"], column_types={"text": pa.string()})).column("text").combine_chunks()
        texts.append(column)
        languages.append(pa.array([path.stem] * len(column), pa.string()))
    return pa.concat_arrays(texts), pa.concat_arrays(languages)


def make_chunk(rng: np.random.Generator, first_id: int, n: int, texts: pa.Array, languages: pa.Array) -> pa.Table:
    picks = pa.array(rng.integers(0, len(texts), n))
    seconds = np.sort(rng.integers(0, SECONDS_IN_YEAR, n))  # time-ordered within a row group
    users = np.minimum(rng.zipf(1.6, n), N_USERS).astype(np.int64) * 7919 % 10_000_019
    return pa.table({
        "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "text": texts.take(picks),
        "language": languages.take(picks),
        "created_at": pa.array(YEAR_START + seconds.astype("timedelta64[s]"), pa.timestamp("us")),
        "user_id": pa.array(users),
    })


def write_corpus(n_rows: int, out: Path, data_dir: Path = DEFAULT_DATA, seed: int = 0,
                 chunk_rows: int = CHUNK_ROWS) -> Path:
    texts, languages = load_pool(data_dir)
    rng = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = None
    try:
        for start in range(0, n_rows, chunk_rows):
            chunk = make_chunk(rng, start + 1, min(chunk_rows, n_rows - start), texts, languages)
            if writer is None:
                writer = pq.ParquetWriter(tmp, chunk.schema, compression="zstd")
            writer.write_table(chunk, row_group_size=chunk_rows)
        if writer is None:  # n_rows == 0: an empty file with the schema
            empty = make_chunk(rng, 1, 0, texts, languages)
            writer = pq.ParquetWriter(tmp, empty.schema, compression="zstd")
            writer.write_table(empty)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n_rows", type=int, help="rows to write")
    parser.add_argument("out", type=Path, help="output .parquet file")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BRIGHTER folder (train/, dev/)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n_rows < 0:
        parser.error("n_rows must be 0 or more")
    write_corpus(args.n_rows, args.out, args.data, args.seed)
    print(f"wrote {args.n_rows:,} rows to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
