"""How long work reports how far it got: a small protocol the library calls and the CLI implements.

The library never prints. Functions that run long (finetune, stack training, pull, tag, explain over a
corpus) take a `Progress` and call it; `NullProgress` (the default) shows nothing. The CLI passes its one
Rich implementation (emocli.cli.progress.RichProgress), a notebook may pass its own.

    progress.start("train", total=steps, unit="steps")
    progress.advance(1, loss=0.41)       # n units done; keyword figures are shown beside the bar
    progress.log("dev has 3 positives of fear")  # a message for the user, above the bar
    progress.finish()

Functions called deep inside others (a pull while `tag` resolves its model) use `current()`: the
progress installed with `use(...)`, by default a NullProgress.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    def start(self, task: str, total: int | None = None, unit: str = "rows") -> None:
        """A new task of `total` units (None: unknown); replaces any task still shown."""

    def advance(self, n: int = 1, **status: float | int | str) -> None:
        """`n` more units done; `status` figures (loss=..., tokens=...) are shown beside the bar.

        Integer figures named in `RATE_FIELDS` are counts: they add up and show as a rate per second.
        """

    def log(self, message: str) -> None:
        """A line for the user (a note or a warning), shown above the bar."""

    def finish(self) -> None:
        """The task is over (also after an error); safe to call twice."""


RATE_FIELDS = ("tokens",)


class NullProgress:
    """Shows nothing: what library calls get unless the caller passes a progress."""

    def start(self, task: str, total: int | None = None, unit: str = "rows") -> None:
        pass

    def advance(self, n: int = 1, **status: float | int | str) -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass


_current: ContextVar[Progress] = ContextVar("emocli_progress", default=NullProgress())


def current() -> Progress:
    """The progress installed by `use` (the CLI's), else a NullProgress."""
    return _current.get()


@contextmanager
def use(progress: Progress) -> Iterator[Progress]:
    """Within the block, `current()` is `progress` (for work started deep inside other calls)."""
    token = _current.set(progress)
    try:
        yield progress
    finally:
        _current.reset(token)


def chosen(progress: Progress | bool | None) -> Progress:
    """A caller's choice as a progress: an object as is; True or None: `current()`; False: nothing."""
    if progress is None or progress is True:
        return current()
    if progress is False:
        return NullProgress()
    return progress
