"""The CLI's one implementation of emocli.progress.Progress: a Rich bar on stderr with rate and ETA."""

from __future__ import annotations

import time
from typing import Any

from rich.markup import escape

from emocli.cli.console import err_console
from emocli.progress import RATE_FIELDS, NullProgress, Progress


class RichProgress:
    """One bar per task: done/total (bytes for unit "bytes"), units/s, status figures, elapsed and ETA."""

    def __init__(self, console=None, *, transient: bool = False):
        self.console = console or err_console
        self.transient = transient
        self._progress: Any = None
        self._task: Any = None
        self._unit = "rows"
        self._counts: dict[str, int] = {}
        self._status: dict[str, Any] = {}
        self._started = 0.0

    def start(self, task: str, total: int | None = None, unit: str = "rows") -> None:
        from rich.progress import Progress as Bar

        self.finish()
        self._unit, self._counts, self._status = unit, {}, {}
        self._started = time.perf_counter()
        self._progress = Bar(*_columns(unit), console=self.console, transient=self.transient,
                             refresh_per_second=4)
        self._progress.start()
        self._task = self._progress.add_task(task, total=total, rate="", status="")

    def advance(self, n: int = 1, **status: float | int | str) -> None:
        if self._progress is None:
            return
        for name, value in status.items():
            if name in RATE_FIELDS:
                self._counts[name] = self._counts.get(name, 0) + int(value)
            else:
                self._status[name] = value
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        done = self._progress.tasks[0].completed + n
        rate = "" if self._unit == "bytes" else f"{done / elapsed:,.1f} {self._unit}/s"
        self._progress.update(self._task, advance=n, rate=rate, status=self._status_text(elapsed))

    def _status_text(self, elapsed: float) -> str:
        parts = [f"{name.replace('_', ' ')} {_figure(value)}" for name, value in self._status.items()]
        parts += [f"{count / elapsed:,.0f} {name}/s" for name, count in self._counts.items()]
        return escape("  ".join(parts))

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message, style="dim", markup=False, soft_wrap=True)
        else:
            self.console.print(message, style="dim", markup=False, soft_wrap=True)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _figure(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _columns(unit: str) -> tuple:
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    counted = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),
                                                                                  TextColumn("{task.fields[rate]}"))
    return (TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), *counted,
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


def progress_for(quiet: bool, **options: Any) -> Progress:
    """What a command passes to the library: the Rich bar, or nothing with --quiet/--json."""
    return NullProgress() if quiet else RichProgress(**options)
