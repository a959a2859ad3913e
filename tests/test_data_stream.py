"""Streaming inputs: CSV (plain, gzip, zstd, TSV) and Parquet as Arrow batches, resumable from a row offset."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from emocli.data import derived_ids, describe_input, describe_inputs, iter_record_batches
from emocli.errors import InputError


def _rows(n):
    return pa.table({"id": list(range(1, n + 1)), "text": [f"text number {i}" for i in range(n)],
                     "language": ["eng" if i % 2 else "deu" for i in range(n)]})


def _collect(source, columns, **kwargs):
    pieces = list(iter_record_batches(source, columns, **kwargs))
    firsts = [first for first, _ in pieces]
    table = pa.Table.from_batches([b for _, b in pieces]) if pieces else None
    return firsts, table


def test_parquet_streams_in_batches_and_resumes_inside_a_row_group(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(_rows(1000), path, row_group_size=300)
    source = describe_input(path)
    assert source.fmt == "parquet" and source.num_rows == 1000 and source.columns == ("id", "text", "language")
    firsts, table = _collect(source, ["text", "id"], batch_rows=128)
    assert table.num_rows == 1000 and table.column("id").to_pylist() == list(range(1, 1001))
    assert all(b <= 128 for b in [len(x) for x in table.column("id").chunks])
    # resuming at row 650 skips whole row groups and slices the one it starts in
    firsts, table = _collect(source, ["id"], start_row=650, batch_rows=128)
    assert firsts[0] == 650
    assert table.column("id").to_pylist() == list(range(651, 1001))


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".csv.zst", ".tsv"])
def test_csv_plain_and_compressed(tmp_path, suffix):
    table = _rows(500)
    path = tmp_path / f"posts{suffix}"
    delimiter = "\t" if suffix == ".tsv" else ","
    raw = tmp_path / "raw.csv"
    pcsv.write_csv(table, raw, write_options=pcsv.WriteOptions(delimiter=delimiter))
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(raw.read_bytes()))
    elif suffix.endswith(".zst"):
        with pa.output_stream(str(path), compression="zstd") as out:
            out.write(raw.read_bytes())
    else:
        raw.rename(path)
    source = describe_input(path)
    assert source.fmt == "csv" and source.num_rows is None and source.columns == ("id", "text", "language")
    firsts, got = _collect(source, ["id", "text"], start_row=123, batch_rows=100, string_columns=("text",))
    assert firsts == [123, 200, 300, 400]
    assert got.column("id").to_pylist() == list(range(124, 501))
    assert got.column("text").to_pylist()[0] == "text number 123"


def test_malformed_csv_row_is_named_by_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,text\n1,fine\n2,also fine\n3,too,many\n4,ok\n")
    with pytest.raises(InputError, match=r"bad.csv: line 4: expected 2 columns, got 3"):
        _collect(describe_input(path), ["id", "text"])


def test_missing_column_and_unreadable_files(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("id,body\n1,x\n")
    with pytest.raises(InputError, match=r"a.csv: no column 'text' \(columns: id, body\)"):
        _collect(describe_input(path), ["text"])
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="broken.parquet: cannot read as Parquet"):
        describe_input(broken)
    with pytest.raises(InputError, match="gone.csv: file not found"):
        describe_input(tmp_path / "gone.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.csv: empty CSV file"):
        describe_input(empty)


def test_keys_are_file_names_unless_they_collide(tmp_path):
    for split in ("train", "dev"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "eng.csv").write_text("text\nx\n")
    (tmp_path / "other.csv").write_text("text\ny\n")
    keys = [s.key for s in describe_inputs([tmp_path / "train" / "eng.csv", tmp_path / "dev" / "eng.csv"])]
    assert keys == ["train/eng.csv", "dev/eng.csv"]
    keys = [s.key for s in describe_inputs([tmp_path / "train" / "eng.csv", tmp_path / "other.csv"])]
    assert keys == ["eng.csv", "other.csv"]


def test_derived_ids_number_rows_from_one():
    assert derived_ids("posts.csv", 0, 3).to_pylist() == ["posts.csv:1", "posts.csv:2", "posts.csv:3"]
    assert derived_ids("posts.csv", 41, 1).to_pylist() == ["posts.csv:42"]
