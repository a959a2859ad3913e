"""Options every command spells the same way, as Annotated aliases: `as_json: JsonOpt = False`.

The default stays in the command's signature (Typer's Annotated style); where a command needs its own help
text it calls the factory (`db_option("...")`) so the flag names still live here only.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

JSON_HELP = "Print the result as JSON on stdout (nothing else there)."
QUIET_HELP = "No progress bar or notes on stderr."
DEVICE_HELP = "auto (a GPU if there is one), cpu, cuda or cuda:N."
DB_HELP = "The DuckDB database written by `emocli tag`."
TABLE_HELP = "The scores table in it."
MODEL_HELP = "Registry name, Hub id or model directory (default: your default model)."
TEXT_COL_HELP = "Column holding the text."
ID_COL_HELP = "Id column (never a label)."
REGISTRY_HELP = "Extra registry file (models.toml layout) that extends or overrides the registry; repeatable."


def json_option(help: str = JSON_HELP):
    return typer.Option("--json", help=help)


def quiet_option(help: str = QUIET_HELP):
    return typer.Option("--quiet", "-q", help=help)


def device_option(help: str = DEVICE_HELP):
    return typer.Option("--device", help=help)


def db_option(help: str = DB_HELP):
    return typer.Option("--db", help=help, show_default=True)


def table_option(help: str = TABLE_HELP):
    return typer.Option("--table", help=help, show_default=True)


def model_option(help: str = MODEL_HELP):
    return typer.Option("--model", "-m", help=help)


def text_col_option(help: str = TEXT_COL_HELP):
    return typer.Option("--text-col", help=help)


def id_col_option(help: str = ID_COL_HELP):
    return typer.Option("--id-col", help=help)


JsonOpt = Annotated[bool, json_option()]
QuietOpt = Annotated[bool, quiet_option()]
DeviceOpt = Annotated[str, device_option()]  # default "auto" everywhere: the library resolves it
DbOpt = Annotated[Path, db_option()]
TableOpt = Annotated[str, table_option()]
ModelOpt = Annotated[Optional[str], model_option()]
TextColOpt = Annotated[str, text_col_option()]
IdColOpt = Annotated[str, id_col_option()]
RegistryOpt = Annotated[Optional[List[Path]],
                        typer.Option("--registry", "-r", help=REGISTRY_HELP, metavar="FILE", show_default=False)]


def default_of(config_class: type, name: str) -> Any:
    """The library's default for one field of a config dataclass: the CLI shows and uses it, never restates it."""
    for item in fields(config_class):
        if item.name == name:
            if item.default is not MISSING:
                return item.default
            if item.default_factory is not MISSING:
                return item.default_factory()
            break
    raise AttributeError(f"{config_class.__name__}.{name} has no default")


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An Enum for Typer's choice list, built from the library's tuple of accepted values."""
    return Enum(name, {value: value for value in values}, type=str)
