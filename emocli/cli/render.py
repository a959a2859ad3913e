"""Rendering analytics frames: Rich tables coloured by value on a terminal, csv/json/markdown/parquet for
files and pipes. The data goes to stdout or --out; notes go to stderr."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import sys
from pathlib import Path
from typing import IO, Any, Sequence

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from emocli.analytics.queries import Frame
from emocli.errors import InputError

FORMATS = ("table", "csv", "json", "markdown", "parquet")
QUERY_FORMATS = ("table", "csv", "json", "markdown")
SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".md": "markdown", ".markdown": "markdown",
                  ".parquet": "parquet", ".pq": "parquet", ".txt": "table"}
MAX_TABLE_ROWS = 500


def resolve_format(fmt: str | None, out: Path | None, allowed: Sequence[str] = FORMATS) -> str:
    """--format as given, else from the --out suffix, else a table."""
    if fmt is None:
        fmt = SUFFIX_FORMATS.get(out.suffix.lower(), "table") if out else "table"
    fmt = fmt.lower()
    if fmt not in allowed:
        raise InputError(f"--format {fmt}: use one of {', '.join(allowed)}")
    if fmt == "parquet" and out is None:
        raise InputError("--format parquet writes a binary file: give --out FILE.parquet")
    return fmt


# --------------------------------------------------------------------------------------------------
# cell formatting and colour


def plain_value(value: Any) -> Any:
    """A JSON/CSV-friendly value: dates as ISO text, lists kept, NaN as None."""
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return {k: plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


def format_cell(value: Any, kind: str = "none") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if kind == "share":
            return f"{value:.1%}"
        if kind == "count":
            return f"{value:,.0f}"
        if kind == "lift":
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}" if kind != "none" else str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


def heat_colour(fraction: float) -> str:
    """Grey (0) through yellow (0.5) to red (1): how strongly a value stands out in its column."""
    fraction = min(max(fraction, 0.0), 1.0)
    low, mid, high = (128, 128, 128), (230, 200, 40), (230, 50, 40)
    start, end, t = (low, mid, fraction * 2) if fraction < 0.5 else (mid, high, (fraction - 0.5) * 2)
    r, g, b = (round(a + (c - a) * t) for a, c in zip(start, end))
    return f"bold rgb({r},{g},{b})" if fraction >= 0.75 else f"rgb({r},{g},{b})"


def lift_colour(lift: float) -> str:
    """Blue below independence (lift < 1), red above; log scale so 0.5 and 2 are equally strong."""
    if lift <= 0:
        return "rgb(80,120,230)"
    strength = min(abs(math.log2(lift)) / 2, 1.0)
    base = (128, 128, 128)
    target = (230, 50, 40) if lift > 1 else (80, 120, 230)
    r, g, b = (round(a + (c - a) * strength) for a, c in zip(base, target))
    return f"rgb({r},{g},{b})"


def _column_scales(frame: Frame) -> dict[str, float]:
    """The value that maps to full colour: the largest label value in the whole table, so the strongest
    cell is red and label columns stay comparable with each other."""
    columns = [name for name in frame.value_columns if name in frame.columns]
    values = [v for name in columns for v in frame.column(name)
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    top = float(max(values)) if values and max(values) > 0 else 1.0
    return {name: top for name in columns}


def _cell_kind(frame: Frame, column: str) -> str:
    if column in frame.value_columns:
        return frame.value_kind
    if column in ("texts", "skipped", "count", "count_a", "count_b"):
        return "count"
    if column in ("any_emotion", "no_emotion"):
        return "share" if frame.value_kind != "count" else "count"
    if column in ("score",):
        return "score"
    return "none"


def rich_table(frame: Frame, max_rows: int = MAX_TABLE_ROWS) -> Table:
    # user-named columns and values are Text, never parsed as Rich markup
    table = Table(title=Text(frame.title) if frame.title else None, header_style="bold", title_style="bold")
    scales = _column_scales(frame)
    for column in frame.columns:
        numeric = _cell_kind(frame, column) != "none" or _is_numeric_column(frame, column)
        table.add_column(Text(column), justify="right" if numeric else "left",
                         style="cyan" if column in frame.group_columns else None,
                         overflow="fold" if column == "text" else "ellipsis",
                         max_width=80 if column == "text" else None)
    for row in frame.rows[:max_rows]:
        cells = []
        for column, value in zip(frame.columns, row):
            text = format_cell(value, _cell_kind(frame, column))
            if column in scales and isinstance(value, (int, float)) and not isinstance(value, bool):
                style = lift_colour(value) if frame.value_kind == "lift" else heat_colour(value / scales[column])
                cells.append(Text(text, style=style))
            elif column == "dominant" and value:
                cells.append(Text(text, style="bold"))
            else:
                cells.append(Text(text, style="dim" if value is None else ""))
        table.add_row(*cells)
    return table


def _is_numeric_column(frame: Frame, column: str) -> bool:
    values = [v for v in frame.column(column)[:50] if v is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


# --------------------------------------------------------------------------------------------------
# writers


def write_csv(frame: Frame, handle: IO[str]) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(frame.columns)
    for row in frame.rows:
        writer.writerow([_csv_cell(value) for value in row])


def _csv_cell(value: Any) -> Any:
    value = plain_value(value)
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)
    return value


def write_json(frame: Frame, handle: IO[str]) -> None:
    records = [{column: plain_value(value) for column, value in zip(frame.columns, row)} for row in frame.rows]
    handle.write(json.dumps(records, indent=2, ensure_ascii=False, default=str) + "\n")


def write_markdown(frame: Frame, handle: IO[str]) -> None:
    def cell(column: str, value: Any) -> str:
        return format_cell(value, _cell_kind(frame, column)).replace("|", "\\|").replace("\n", " ")

    handle.write("| " + " | ".join(c.replace("|", "\\|") for c in frame.columns) + " |\n")
    handle.write("| " + " | ".join("---:" if _is_numeric_column(frame, c) else "---" for c in frame.columns) + " |\n")
    for row in frame.rows:
        handle.write("| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |\n")


def write_parquet(frame: Frame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [row[i] for row in frame.rows] for i, name in enumerate(frame.columns)}
    pq.write_table(pa.table(columns), path)


def write_table_text(frame: Frame, handle: IO[str]) -> None:
    Console(file=handle, color_system=None, width=240, highlight=False).print(rich_table(frame, len(frame.rows)))


def print_table(console: Console, table: Table) -> None:
    """A pipe or file gets the table's full width instead of a squeezed 80 columns."""
    if not console.is_terminal:
        width = max(Measurement.get(console, console.options.update_width(10_000), table).maximum, 80)
        console = Console(file=console.file, width=width, highlight=False, color_system=None)
    console.print(table)


_TEXT_WRITERS = {"csv": write_csv, "json": write_json, "markdown": write_markdown, "table": write_table_text}


def print_notes(frame: Frame, err_console: Console) -> None:
    """Warnings (figures the tool cannot stand behind) in yellow, then notes, on stderr."""
    for warning in frame.warnings:
        err_console.print(Text("warning: " + warning, style="yellow"), soft_wrap=True)
    for note in frame.notes:
        err_console.print(Text(note, style="dim"))


def emit(frame: Frame, fmt: str, out: Path | None, console: Console, err_console: Console) -> None:
    """The frame in the chosen format on stdout (a coloured table on a terminal) or in --out."""
    print_notes(frame, err_console)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "parquet":
            write_parquet(frame, out)
        else:
            with open(out, "w", encoding="utf-8", newline="") as handle:
                _TEXT_WRITERS[fmt](frame, handle)
        err_console.print(Text(f"wrote {len(frame.rows):,} rows to {out}"))
        return
    if fmt == "table":
        if not frame.rows:
            err_console.print("[yellow]no rows[/] (check --where, --run and --min-count)")
            return
        print_table(console, rich_table(frame))
        if len(frame.rows) > MAX_TABLE_ROWS:
            err_console.print(f"[dim]showing {MAX_TABLE_ROWS} of {len(frame.rows):,} rows; use --format csv "
                              f"or --out FILE for all[/]")
        return
    buffer = io.StringIO()
    _TEXT_WRITERS[fmt](frame, buffer)
    sys.stdout.write(buffer.getvalue())
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------------
# co-occurrence matrices


def cooccur_tables(frame: Frame) -> list[Table]:
    """One label x label matrix per group: each cell the count and the lift, coloured by lift."""
    keys = list(frame.group_columns)
    index = {name: frame.columns.index(name) for name in frame.columns}
    blocks: dict[tuple, list[tuple]] = {}
    for row in frame.rows:
        blocks.setdefault(tuple(row[index[k]] for k in keys), []).append(row)
    tables = []
    for key, rows in blocks.items():
        labels = list(dict.fromkeys(row[index["label_a"]] for row in rows))
        cells = {(row[index["label_a"]], row[index["label_b"]]): row for row in rows}
        texts = rows[0][index["texts"]]
        where = ", ".join(f"{k}={format_cell(v)}" for k, v in zip(keys, key))
        table = Table(title=Text(f"co-occurrence{' ' + where if where else ''} ({texts:,} texts): count / lift"),
                      header_style="bold", title_style="bold")
        table.add_column("", style="cyan")
        for label in labels:
            table.add_column(Text(label), justify="right", no_wrap=True)
        for a in labels:
            line = [Text(a)]
            for b in labels:
                row = cells[(a, b)]
                count, lift = row[index["count"]], row[index["lift"]]
                if a == b:
                    line.append(Text(f"{count:,}", style="dim"))
                elif lift is None:
                    line.append(Text(f"{count:,} / –", style="dim"))
                else:
                    line.append(Text(f"{count:,} / {lift:.2f}", style=lift_colour(lift)))
            table.add_row(*line)
        tables.append(table)
    return tables
