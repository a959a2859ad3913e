"""`emocli models list|info` offline: packaged, local and not-yet-pulled models; registry errors as one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ENG_LABELS, REPO_ROOT
from test_registry import BAD_REGISTRIES


def models_by_name(result) -> dict[str, dict]:
    assert result.exit_code == 0, result.stderr
    return {m["name"]: m for m in json.loads(result.stdout)["models"]}


def test_list_offline_shows_packaged_minilm(cli):
    models = models_by_name(cli(["models", "list", "--json"]))
    minilm = models["all-minilm-l6-v2"]
    assert (minilm["availability"], minilm["role"], minilm["default_base"]) == ("packaged", "base", True)
    assert models["twitter-roberta-emotion"]["availability"] == "not yet pulled"
    assert models["twitter-roberta-emotion"]["default"] is True
    assert models["go-emotions"]["n_labels"] == 28

    human = cli(["models", "list"])
    assert human.exit_code == 0
    row = next(line for line in human.stdout.splitlines() if line.strip().startswith("all-minilm-l6-v2"))
    assert "packaged" in row and "base" in row
    assert "not yet pulled" in human.stdout


def test_list_imports_neither_torch_nor_transformers():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "emocli.cli", "models", "list"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert not {name for name in imported if name.split(".")[0] in {"torch", "transformers"}}
    assert "all-minilm-l6-v2" in proc.stdout


@pytest.mark.parametrize("case", sorted(BAD_REGISTRIES))
def test_malformed_registry_is_one_line(cli, tmp_path, case):
    text, expected = BAD_REGISTRIES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = cli(["models", "list", "--registry", path])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert str(path) in result.stderr.replace("\n", "") and expected in result.stderr.replace("\n", "")


def test_registered_local_model_is_listed_and_default(cli, tiny_model_dir):
    from emocli.hub.registry import ModelSpec, load_registry, register_model

    register_model(ModelSpec(name="my-tiny", path=str(tiny_model_dir), description="fine-tuned here"))
    assert load_registry().default == "my-tiny"

    mine = models_by_name(cli(["models", "list", "--json"]))["my-tiny"]
    assert (mine["availability"], mine["default"], mine["n_labels"]) == ("local", True, len(ENG_LABELS))
    assert mine["path"] == str(tiny_model_dir)

    info = json.loads(cli(["models", "info", "my-tiny", "--json"]).stdout)
    assert info["labels"] == list(ENG_LABELS) and info["availability"] == "local"
    assert info["thresholds"]["fear"] == 0.45 and info["commit"] is None
    assert info["loader"].startswith("plain transformers") and info["default"] is True

    human = cli(["models", "info", "my-tiny"])
    assert human.exit_code == 0 and "fear (0.45)" in human.stdout and "default for tag" in human.stdout


def test_info_names_the_custom_loader(cli, tiny_model_dir, tmp_path):
    model = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, model)
    meta = json.loads((model / "emocli.json").read_text())
    meta["architecture"] = "label_attention"
    (model / "emocli.json").write_text(json.dumps(meta))

    info = json.loads(cli(["models", "info", str(model), "--json"]).stdout)
    assert info["architecture"] == "label_attention"
    assert info["loader"].startswith("emocli (custom head 'label_attention'")
    assert info["availability"] == "local" and info["weights"] == "safetensors"


def test_info_of_base_and_unpulled_models(cli):
    base = json.loads(cli(["models", "info", "all-minilm-l6-v2", "--json"]).stdout)
    assert base["labels"] is None and base["availability"] == "packaged" and base["size_bytes"] > 50_000_000
    unpulled = json.loads(cli(["models", "info", "go-emotions", "--json"]).stdout)
    assert unpulled["availability"] == "not yet pulled" and unpulled["path"] is None
    assert len(unpulled["labels"]) == 28 and unpulled["loader"] is None

    unknown = cli(["models", "info", "no-such-model"])
    assert unknown.exit_code == 3 and "no model named 'no-such-model'" in unknown.stderr


def test_packaged_model_needs_no_pull(cli):
    result = cli(["models", "pull", "all-minilm-l6-v2", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "packaged"


def test_help_texts_have_examples(cli):
    for args in (["models", "--help"], ["models", "list", "--help"], ["models", "pull", "--help"],
                 ["models", "info", "--help"]):
        result = cli(args)
        assert result.exit_code == 0
        assert "Examples" in result.stdout and "emocli models" in result.stdout
    assert "models" in cli(["--help"]).stdout
