"""`emocli push`: publish a model directory to the Hub with a generated model card (no torch imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from emocli.cli.console import err_console, out_console, print_json
from emocli.cli.options import QuietOpt, default_of, json_option
from emocli.cli.progress import progress_for
from emocli.hub.push import PushConfig


def push_command(
    model: str = typer.Argument(..., metavar="MODEL", help="The model directory `emocli finetune` (or `stack --bundle`) wrote, or a registry name for one."),
    repo: str = typer.Argument(..., metavar="ORG/NAME", help="The Hub repository to push to (created when missing)."),
    private: bool = typer.Option(default_of(PushConfig, "private"), "--private", help="Create the repository private (an existing one keeps its visibility)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Push to this branch (created from main when missing); default: main."),
    create_pr: bool = typer.Option(default_of(PushConfig, "create_pr"), "--create-pr", help="Open a pull request with the commit instead of committing to the branch."),
    commit_message: Optional[str] = typer.Option(None, "--commit-message", help="Default: 'emocli push: <dir> (<architecture>)'."),
    include_history: bool = typer.Option(default_of(PushConfig, "include_history"), "--include-history", help="Also upload history.jsonl and training_curves.png."),
    license: Optional[str] = typer.Option(None, "--license", help="License id for the card (default: the base model's, from the registry; else 'other')."),
    dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="Hub dataset id the model was trained on, for the card; repeatable (default: derived from the training files)."),
    dry_run: bool = typer.Option(default_of(PushConfig, "dry_run"), "--dry-run", help="Build the card and the file list only; contact nothing."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="With --dry-run: write README.md and push-plan.json into this directory."),
    quiet: QuietOpt = False,
    as_json: Annotated[bool, json_option("Print the result (files, commit, URLs) as JSON on stdout.")] = False,
) -> None:
    """Publish a fine-tuned model to the Hugging Face Hub, with a model card (README.md) built from emocli.json.

    Uploads what `emocli models pull` fetches back (config, safetensors, tokenizer, emocli.json), never pickle
    weights, and the training history only with --include-history, in one commit. Custom heads, small models and
    stacks are pushed too; they load with emocli only, and the card says so. The token comes from HF_TOKEN or
    `hf auth login` and is never printed; HF_ENDPOINT points at a mirror.

    Examples:

        emocli push models/brighter-eng my-team/brighter-eng-minilm

        emocli push models/brighter-eng my-team/brighter-eng-minilm --revision experiment-2 --create-pr

        emocli push models/brighter-eng my-team/brighter-eng-minilm --dry-run --out card-preview
    """
    from emocli.hub.push import push_model

    config = PushConfig(model=model, repo_id=repo, private=private, revision=revision, create_pr=create_pr,
                        commit_message=commit_message, include_history=include_history, dry_run=dry_run, out=out,
                        license=license, datasets=tuple(dataset or ()))
    report_push(push_model(config, progress_for(quiet)), as_json=as_json, quiet=quiet)


def report_push(result, *, as_json: bool, quiet: bool = False) -> None:
    """The push (or its dry run): notes on stderr, then the files and where they went on stdout."""
    if not quiet:
        for note in result.to_json()["notes"]:
            err_console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if as_json:
        print_json(result.to_json())
        return
    plan = result.plan
    if not quiet:
        for path, reason in plan.skipped:
            err_console.print(f"[dim]not pushed: {path} ({reason})[/]", soft_wrap=True)
    if result.dry_run:
        out_console.print(f"dry run: would push {len(plan.files)} files ({plan.total_bytes / 1e6:.1f} MB) "
                          f"to {plan.repo_id}@{plan.revision}")
    for item in plan.files:
        out_console.print(f"  {item.path}  ({item.size:,} bytes)", soft_wrap=True)
    if result.dry_run:
        if result.out:
            out_console.print(f"card and file list written to {result.out}", soft_wrap=True)
        return
    if not result.changed:
        out_console.print(f"{plan.repo_id}@{plan.revision} already holds these files: nothing committed "
                          f"(commit {result.commit})")
        return
    for path in result.deleted:
        out_console.print(f"  deleted {path} (left by an earlier push)", soft_wrap=True)
    out_console.print(f"commit  {result.commit}")
    out_console.print(f"url     {result.pr_url or result.commit_url}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("push")(push_command)
