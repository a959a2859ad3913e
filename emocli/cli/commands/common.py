"""Help-text helpers shared by command modules (consoles: emocli.cli.console; options: emocli.cli.options)."""

from __future__ import annotations

import inspect
from typing import Callable


def reflow_help(doc: Callable | str | None) -> str:
    """A docstring with each prose paragraph on one line (Typer's rich mode keeps single line breaks).

    Indented paragraphs (the examples) keep their lines.
    """
    text = doc if isinstance(doc, str) else ((doc.__doc__ if doc else None) or "")
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split()) for p in paragraphs)
