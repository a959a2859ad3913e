"""The CLI's one console pair: data on stdout, everything for the eye (progress, notes, errors) on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()
