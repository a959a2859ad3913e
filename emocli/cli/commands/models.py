"""`emocli models`: list the registry, pull models from the Hub into the HF cache, show one model.

Imports neither torch nor transformers: everything here reads TOML/JSON files or talks HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from emocli.cli.commands.common import reflow_help
from emocli.cli.console import err_console, out_console, print_json
from emocli.cli.options import JsonOpt, RegistryOpt, json_option, quiet_option

def _load(ctx: typer.Context, extra: Optional[list[Path]]):
    """The shipped + user registry, extended by `emocli models --registry F` and `<command> --registry F`."""
    from emocli.hub.registry import load_registry

    group_files = (ctx.obj or {}).get("registry", []) if isinstance(ctx.obj, dict) else []
    return load_registry([*group_files, *(extra or [])])


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


AVAILABILITY_STYLE = {"packaged": "green", "cached": "green", "local": "cyan", "not yet pulled": "yellow",
                      "missing": "red"}


def list_models(
    ctx: typer.Context,
    registry: RegistryOpt = None,
    as_json: Annotated[bool, json_option("Print the models as JSON on stdout.")] = False,
) -> None:
    """List the models the registry knows, and whether each is ready to use.

    Availability: [green]packaged[/] (ships in a Python package, works offline), [green]cached[/] (pulled
    into the HF cache), [cyan]local[/] (a directory, e.g. from `finetune --register`), [yellow]not yet
    pulled[/] (downloaded on first use, or with `emocli models pull NAME`). [bold]*[/] marks the default
    model of `tag`, [bold]+[/] the default base of `finetune`.

    Examples:

        emocli models list

        emocli models list --registry team-models.toml --json
    """
    from emocli.hub.catalog import list_entries

    reg = _load(ctx, registry)
    entries = list_entries(reg)
    if as_json:
        print_json({"default": reg.default, "default_base": reg.default_base,
                    "registries": [str(p) for p in reg.files], "models": [e.to_json() for e in entries]})
        return
    out_console.print(_models_table(entries, wide=out_console.width >= 120))
    out_console.print(f"[bold]*[/] default model of `tag`: {reg.default or '-'}\n"
                      f"[bold]+[/] default base of `finetune`: {reg.default_base or '-'}")


def _models_table(entries, *, wide: bool):
    """One row per model; on narrow terminals the repo goes under the name instead of in its own column."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    table.add_column("name" if wide else "name / repo@revision", overflow="fold", ratio=1)
    if wide:
        table.add_column("repo@revision / path", overflow="fold")
    table.add_column("role", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("labels", justify="right", no_wrap=True)
    table.add_column("availability", no_wrap=True)
    for e in entries:
        mark = " [bold]*[/]" if e.default else (" [bold]+[/]" if e.default_base else "")
        style = AVAILABILITY_STYLE.get(e.availability, "")
        name = e.name + mark
        cells = [name, e.location] if wide else [f"{name}\n[dim]{e.location}[/]"]
        cells += [e.role, e.task, str(e.n_labels) if e.n_labels else "-",
                  f"[{style}]{e.availability}[/]" if style else e.availability]
        table.add_row(*cells)
    return table


def pull(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="NAME | ORG/REPO[@REV]",
                                help="A registry name, or a Hub repository id with an optional branch, tag or commit."),
    registry: RegistryOpt = None,
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="Accept pickle weights (pytorch_model.bin) when a repo has no safetensors. "
                                           "Unpickling can run code: only for repositories you trust."),
    quiet: Annotated[bool, quiet_option("No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download a model into the Hugging Face cache and pin the commit it resolved to.

    Only what inference needs is fetched: config, tokenizer files and safetensors weights. Remote code is
    never fetched nor run. Pulling a model already in the cache is instant and needs no network. Honours
    HF_HOME (cache location), HF_ENDPOINT (mirror), HF_TOKEN (private repos) and HF_HUB_OFFLINE.

    Examples:

        emocli models pull go-emotions

        emocli models pull SamLowe/roberta-base-go_emotions@main --json
    """
    from emocli.cli.progress import progress_for
    from emocli.hub.catalog import find_spec
    from emocli.hub.pull import packaged_model_dir, pull_model

    reg = _load(ctx, registry)
    spec = find_spec(model, reg)
    known = reg.find(spec.name) is not None
    if spec.path:
        _report_pull(as_json, spec.name, None, None, None, Path(spec.path), "local")
        return
    if reg.find(model) is not None and spec.package and (packaged := packaged_model_dir(spec.package)):
        _report_pull(as_json, spec.name, spec.repo, spec.revision, None, packaged, "packaged")
        return
    revision = spec.commit or spec.revision
    resolved = pull_model(spec.repo, revision, spec if known else None, allow_pickle=allow_pickle,
                          progress=progress_for(quiet))
    _report_pull(as_json, resolved.name, spec.repo, revision, resolved.commit, resolved.path, resolved.source)


def _report_pull(as_json: bool, name: str, repo: str | None, revision: str | None, commit: str | None,
                 path: Path, source: str) -> None:
    from emocli.hub.pull import dir_size

    size = dir_size(path)
    if as_json:
        print_json({"name": name, "repo": repo, "revision": revision, "commit": commit, "path": str(path),
                    "source": source, "size_bytes": size})
        return
    verb = {"pulled": "pulled", "cache": "already cached", "packaged": "packaged, nothing to pull",
            "local": "local model, nothing to pull"}[source]
    err_console.print(f"[bold]{name}[/]: {verb}")
    if repo:
        out_console.print(f"repo    {repo}@{revision}")
    if commit:
        out_console.print(f"commit  {commit}")
    out_console.print(f"path    {path}", soft_wrap=True)
    out_console.print(f"size    {_human_size(size)}")


def info(
    ctx: typer.Context,
    model: str = typer.Argument(..., metavar="NAME | ORG/REPO[@REV] | DIR",
                                help="A registry name, a Hub repository id, or a model directory."),
    registry: RegistryOpt = None,
    as_json: Annotated[bool, json_option("Print the details as JSON on stdout.")] = False,
) -> None:
    """Show one model: labels and thresholds, task, role, pinned commit, size and place on disk, loader.

    Examples:

        emocli models info twitter-roberta-emotion

        emocli models info models/brighter-eng --json
    """
    from emocli.hub.catalog import describe

    details = describe(model, _load(ctx, registry))
    if as_json:
        print_json(details)
        return
    _print_details(details)


def _print_details(d: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    flags = [flag for flag, on in (("default for tag", d["default"]), ("default base", d["default_base"])) if on]
    rows = [
        ("name", d["name"] + (f"  ({', '.join(flags)})" if flags else "")),
        ("repo", f"{d['repo']}@{d['revision']}" if d["repo"] else "-"),
        ("commit", d["commit"] or "-"),
        ("pulled at", d["pulled_at"] or "-"),
        ("availability", d["availability"]),
        ("path", d["path"] or "-"),
        ("size on disk", _human_size(d["size_bytes"])),
        ("weights", d["weights"] or "-"),
        ("role", d["role"]),
        ("task", d["task"]),
        ("max length", str(d["max_length"] or "-")),
        ("labels", _labels_text(d)),
        ("loader", d["loader"] or "unknown until pulled"),
        ("languages", _languages_text(d)),
        ("license", d["license"] or "-"),
        ("description", d["description"] or "-"),
        ("registry file", d["registry_file"]),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out_console.print(table, soft_wrap=False)


def _languages_text(d: dict[str, Any]) -> str:
    if not d["languages"]:
        return d.get("languages_source") or "unknown"
    return f"{', '.join(d['languages'])}  (ISO 639-3, from {d['languages_source']})"


def _labels_text(d: dict[str, Any]) -> str:
    labels, thresholds = d["labels"], d["thresholds"] or {}
    if not labels:
        return "none (a base encoder: fine-tune it with `emocli finetune --base NAME`)"
    return f"{len(labels)}: " + ", ".join(f"{label} ({thresholds.get(label, 0.5):.2f})" for label in labels)


MODELS_HELP = """The model registry and the Hugging Face Hub: list models, pull them into the HF cache, inspect one.

The registry is the shipped models.toml, then your own (written by `finetune --register`), then any
--registry FILE: later entries override earlier ones.

Examples:

    emocli models list

    emocli models pull go-emotions

    emocli models info go-emotions
"""


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(name="models", no_args_is_help=True, rich_markup_mode="rich",
                             context_settings={"help_option_names": ["-h", "--help"]})

    @models_app.callback(help=reflow_help(MODELS_HELP))
    def _models(ctx: typer.Context, registry: RegistryOpt = None) -> None:
        ctx.obj = {"registry": list(registry or [])}

    models_app.command("list", help=reflow_help(list_models))(list_models)
    models_app.command("pull", help=reflow_help(pull))(pull)
    models_app.command("info", help=reflow_help(info))(info)
    app.add_typer(models_app, name="models")
