"""One module per command group; each adds its commands to the app. Modules import nothing heavy at top level."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES = ("models", "train", "tag", "analytics", "explain", "stack", "push", "report", "export")


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # command group not written yet
            raise
        module.register(app)
    _reflow_command_helps(app)


def _reflow_command_helps(app: typer.Typer) -> None:
    """Commands documented by their docstring get it reflowed, so help lines wrap at the terminal's width."""
    from emocli.cli.commands.common import reflow_help

    for info in app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            info.help = reflow_help(info.callback)
