"""Where emocli keeps the user's own files (user registry, default model)."""

from __future__ import annotations

import os
from pathlib import Path


def user_config_dir() -> Path:
    """EMOCLI_HOME, else $XDG_CONFIG_HOME/emocli, else ~/.config/emocli."""
    if os.environ.get("EMOCLI_HOME"):
        return Path(os.environ["EMOCLI_HOME"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "emocli"


def user_registry_path() -> Path:
    return user_config_dir() / "models.toml"


def shipped_registry_path() -> Path:
    """The registry shipped with the package (a copy of the repository's top-level models.toml)."""
    packaged = Path(__file__).resolve().parent / "models.toml"
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent / "models.toml"


DEFAULT_DB = "emotions.duckdb"
DEFAULT_TABLE = "scores"
