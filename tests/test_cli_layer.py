"""The CLI layer: defaults taken from the library's configs, commands that stay light, one progress bar."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

HEAVY = ("numpy", "torch")
PROBE = """
import runpy, sys
sys.argv = ["emocli", *sys.argv[1:]]
try:
    runpy.run_module("emocli.cli", run_name="__main__")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"numpy", "torch"})
print("HEAVY=" + ",".join(heavy), "EXIT=" + str(code), file=sys.stderr)
"""


def heavy_imports(*args: str) -> tuple[list[str], str, str]:
    """Run `emocli ARGS` in a fresh interpreter: the heavy packages it imported, its exit code and stdout."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=120)
    line = [l for l in done.stderr.splitlines() if l.startswith("HEAVY=")][-1]
    heavy, code = line.split()
    return [m for m in heavy.removeprefix("HEAVY=").split(",") if m], code.removeprefix("EXIT="), done.stdout


@pytest.mark.parametrize("args", [("--help",), ("summarize", "--help"), ("query", "--help"),
                                  ("report", "--help"), ("export", "onnx", "--help")])
def test_help_imports_neither_numpy_nor_torch(args):
    heavy, code, out = heavy_imports(*args)
    assert code in ("0", "None") and heavy == [] and "Usage" in out


def test_query_runs_without_numpy_or_torch(tmp_path):
    import duckdb

    db = tmp_path / "scores.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE notes AS SELECT * FROM (VALUES ('eng', 1), ('deu', 2)) t(language, n)")
    heavy, code, out = heavy_imports("query", "SELECT language, n FROM notes ORDER BY n", "--db", str(db),
                                     "--format", "csv")
    assert code in ("0", "None") and heavy == []
    assert out.split() == ["language,n", "eng,1", "deu,2"]


def test_a_bare_finetune_builds_the_library_default_config(tmp_path):
    """Every flag's default is the library's: the command line adds nothing of its own."""
    from typer.main import get_command

    from emocli.cli.app import app
    from emocli.cli.commands.train import train_config
    from emocli.training.config import TrainConfig

    command = get_command(app).commands["finetune"]
    context = command.make_context("finetune", ["--train", "train.csv"])
    assert train_config(context.params) == TrainConfig(train=("train.csv",))
    small = command.make_context("finetune", ["--train", "train.csv", "--arch", "small", "--quiet"]).params
    from emocli.model.heads import SMALL_LEARNING_RATE

    config = train_config(small)
    assert config.learning_rate == SMALL_LEARNING_RATE and config.architecture.arch == "small"
    assert config.progress is False


def test_evaluate_and_stack_defaults_agree_with_the_library():
    from typer.main import get_command

    from emocli.cli.app import app
    from emocli.training.stack import StackConfig
    from emocli.training.config import EvalConfig

    commands = get_command(app).commands
    evaluate = commands["evaluate"].make_context("evaluate", ["--data", "x.csv"]).params
    assert (evaluate["batch_size"], evaluate["device"]) == (EvalConfig.batch_size, EvalConfig.device)
    stack = commands["stack"].make_context("stack", []).params
    library = StackConfig(members=("a", "b"), train=("t.csv",))
    restated = {"out": "out", "epochs": "epochs", "batch_size": "batch_size", "lr": "learning_rate",
                "patience": "patience", "seed": "seed", "bundle": "bundle"}
    assert {flag: stack[flag] for flag in restated} == {flag: getattr(library, name) for flag, name in restated.items()}
    assert stack["loss"] == library.loss.name and stack["threshold_source"] == library.thresholds.source
    assert stack["device"] == "auto"  # every command: the library resolves it to a GPU if there is one


def test_shared_flags_are_declared_once():
    """--json, --quiet, --device, --db, --table, --model: spelled in emocli/cli/options.py only."""
    commands = REPO_ROOT / "emocli" / "cli" / "commands"
    for path in commands.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Option":
                names = {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
                assert not names & {"--json", "--quiet", "--device", "--db", "--table", "--model"}, path.name


def test_the_library_never_imports_the_cli():
    package = REPO_ROOT / "emocli"
    for path in package.rglob("*.py"):
        if path.is_relative_to(package / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("emocli.cli"), f"{path}: imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("emocli.cli") for a in node.names), path


def test_rich_progress_shows_rate_status_and_counted_figures():
    from rich.console import Console

    from emocli.cli.progress import RichProgress
    from emocli.progress import NullProgress, Progress

    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=200, force_terminal=False, color_system=None))
    assert isinstance(progress, Progress) and isinstance(NullProgress(), Progress)
    progress.log("a note before the bar")
    progress.start("tagging", 100, "rows")
    progress.advance(40, tokens=400, epoch="1/2")
    progress.advance(60, tokens=600, loss=0.25)
    progress.finish()
    progress.finish()  # twice is harmless
    text = out.getvalue()
    assert "a note before the bar" in text and "tagging" in text and "100/100" in text
    assert "rows/s" in text and "tokens/s" in text and "epoch 1/2" in text and "loss 0.2500" in text


def test_library_work_reports_to_the_installed_progress_only_when_asked():
    from emocli.progress import NullProgress, chosen, current, use

    assert isinstance(current(), NullProgress)
    mine = NullProgress()
    with use(mine):
        assert chosen(None) is mine and chosen(True) is mine
        assert isinstance(chosen(False), NullProgress) and chosen(False) is not mine
    assert isinstance(current(), NullProgress) and current() is not mine
