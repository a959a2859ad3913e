"""Option helpers and output helpers shared by command modules."""

from __future__ import annotations

import inspect
import json
import sys
from typing import Any, Callable

from rich.console import Console

out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def reflow_help(doc: Callable | str | None) -> str:
    """A docstring with each prose paragraph on one line (Typer's rich mode keeps single line breaks).

    Indented paragraphs (the examples) keep their lines.
    """
    text = doc if isinstance(doc, str) else ((doc.__doc__ if doc else None) or "")
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split()) for p in paragraphs)
