"""The emocli command line: a thin Typer layer over the library.

Commands build config dataclasses and call library functions; heavy modules (torch, transformers)
are imported inside the commands that need them, so `--help`, `models list`, `summarize` and
`query` start fast.
"""

from __future__ import annotations

import sys
from typing import Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

from emocli import __version__
from emocli.cli.console import err_console
from emocli.errors import EmocliError, as_emocli_error


def print_error(error: EmocliError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(error.message)}", soft_wrap=True, emoji=False)
    if error.hint:
        err_console.print(f"[dim]hint: {escape(error.hint)}[/]", soft_wrap=True, emoji=False)


class EmocliGroup(TyperGroup):
    """Turns known failures into one line on stderr and a non-zero exit code, for every subcommand."""

    def invoke(self, ctx):
        from emocli.cli.progress import RichProgress
        from emocli.progress import use

        try:
            with use(RichProgress()):  # for work started deep inside a command (a pull while `tag` loads its model)
                return super().invoke(ctx)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: everything committed so far is kept")
            raise typer.Exit(130) from None
        except Exception as exc:  # noqa: BLE001 - mapped to one line below, re-raised if unknown
            error = as_emocli_error(exc)
            if error is None:
                raise
            print_error(error)
            raise typer.Exit(error.exit_code) from None


app = typer.Typer(
    cls=EmocliGroup,
    name="emocli",
    help="Multi-label emotion analytics at scale: pull or fine-tune a model, tag millions of posts into DuckDB, summarize.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emocli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    """emocli: which emotions, where, when."""


def _register_commands() -> None:
    from emocli.cli.commands import register_all

    register_all(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
