"""Plots of analytics frames (matplotlib, Agg backend, imported only when a plot is asked for)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from emocli.analytics.queries import Frame
from emocli.errors import InputError

MAX_HEATMAP_ROWS = 80
MAX_PANELS = 12
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: Path) -> Path:
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"--plot {path}: use a .png, .svg, .pdf or .jpg file name")
    return path


def _row_label(values: Sequence) -> str:
    return " / ".join("–" if v is None else (v.isoformat() if hasattr(v, "isoformat") else str(v)) for v in values)


def _value_label(kind: str) -> str:
    return {"share": "share of texts", "score": "mean score", "count": "texts"}.get(kind, kind)


def summary_plot(frame: Frame, path: Path) -> Path:
    """A heatmap of groups x emotions, or for a time bucket a line chart per emotion over time."""
    check_plot_path(path)
    if not frame.rows:
        raise InputError("nothing to plot: the summary has no rows")
    if frame.time_column is not None:
        return _time_lines(frame, path, frame.time_column)
    return _heatmap(frame, path)


def _heatmap(frame: Frame, path: Path) -> Path:
    plt = _pyplot()
    import numpy as np

    rows = frame.rows[:MAX_HEATMAP_ROWS]
    labels = list(frame.value_columns)
    group_index = [frame.columns.index(c) for c in frame.group_columns]
    value_index = [frame.columns.index(c) for c in labels]
    matrix = np.array([[np.nan if row[i] is None else float(row[i]) for i in value_index] for row in rows])
    names = [_row_label([row[i] for i in group_index]) or "all" for row in rows]
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 3, 0.38 * len(rows) + 2))
    finite = matrix[np.isfinite(matrix)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0  # the strongest cell is darkest
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="YlOrRd", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), names)
    for r in range(matrix.shape[0]):
        for c in range(matrix.shape[1]):
            if not np.isnan(matrix[r, c]):
                text = f"{matrix[r, c]:.0%}" if frame.value_kind == "share" else (
                    f"{matrix[r, c]:.2f}" if frame.value_kind == "score" else f"{matrix[r, c]:.0f}")
                ax.text(c, r, text, ha="center", va="center", fontsize=7,
                        color="white" if matrix[r, c] > 0.6 * vmax else "black")
    fig.colorbar(image, ax=ax, label=_value_label(frame.value_kind))
    ax.set_title(frame.title)
    if len(frame.rows) > MAX_HEATMAP_ROWS:
        ax.set_xlabel(f"first {MAX_HEATMAP_ROWS} of {len(frame.rows)} groups")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _time_lines(frame: Frame, path: Path, time_column: str) -> Path:
    """One panel per emotion; x is the time bucket, one line per combination of the other groups."""
    plt = _pyplot()
    labels = list(frame.value_columns)
    t_index = frame.columns.index(time_column)
    other = [frame.columns.index(c) for c in frame.group_columns if c != time_column]
    series: dict[str, list[tuple]] = {}
    for row in frame.rows:
        if row[t_index] is not None:
            series.setdefault(_row_label([row[i] for i in other]) or "all", []).append(row)
    columns = min(3, len(labels))
    lines = math.ceil(len(labels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.2 * lines), squeeze=False, sharex=True)
    for panel, label in enumerate(labels):
        ax = axes[panel // columns][panel % columns]
        index = frame.columns.index(label)
        for name, rows in list(series.items())[:MAX_PANELS]:
            points = sorted((row[t_index], row[index]) for row in rows if row[index] is not None)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
        ax.set_title(label)
        ax.set_ylabel(_value_label(frame.value_kind))
        ax.tick_params(axis="x", labelrotation=30)
        if frame.value_kind == "share":
            ax.set_ylim(bottom=0)
    for panel in range(len(labels), lines * columns):
        axes[panel // columns][panel % columns].axis("off")
    if len(series) > 1:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(frame.title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def cooccur_plot(frame: Frame, path: Path) -> Path:
    """A lift heatmap (label x label, counts written in) per group, at most MAX_PANELS panels."""
    check_plot_path(path)
    if not frame.rows:
        raise InputError("nothing to plot: the co-occurrence table has no rows")
    plt = _pyplot()
    import numpy as np

    index = {name: i for i, name in enumerate(frame.columns)}
    blocks: dict[str, list[tuple]] = {}
    for row in frame.rows:
        blocks.setdefault(_row_label([row[index[c]] for c in frame.group_columns]) or "all", []).append(row)
    names = list(blocks)[:MAX_PANELS]
    columns = min(3, len(names))
    lines = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5.5 * columns, 4.8 * lines), squeeze=False)
    image = None
    for panel, name in enumerate(names):
        ax = axes[panel // columns][panel % columns]
        rows = blocks[name]
        labels = list(dict.fromkeys(row[index["label_a"]] for row in rows))
        cells = {(row[index["label_a"]], row[index["label_b"]]): row for row in rows}
        lift = np.array([[np.nan if a == b or cells[(a, b)][index["lift"]] is None
                          else math.log2(max(cells[(a, b)][index["lift"]], 1e-3)) for b in labels] for a in labels])
        image = ax.imshow(np.ma.masked_invalid(lift), cmap="coolwarm", vmin=-2, vmax=2)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        for r, a in enumerate(labels):
            for c, b in enumerate(labels):
                ax.text(c, r, f"{cells[(a, b)][index['count']]:,}", ha="center", va="center", fontsize=7)
        ax.set_title(name if name != "all" else frame.title, fontsize=9)
    for panel in range(len(names), lines * columns):
        axes[panel // columns][panel % columns].axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="log2 lift (counts written in cells)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

