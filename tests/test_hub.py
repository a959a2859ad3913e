"""Pulling from the Hub for real: a local HTTP server (tests/hubserver.py) serves a real tiny model in the
Hub's URL layout, HF_ENDPOINT points at it, and huggingface_hub downloads into an isolated HF cache."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ENG_LABELS, REPO_ROOT
from hubserver import HubServer, read_model_files

TINY_REPO = "emocli-test/tiny-emotion"
TINY_COMMIT = "5eed0fee" * 5  # fake but consistent: the server reports it for main and v1
PICKLE_REPO = "emocli-test/tiny-pickle"
PRIVATE_REPO = "emocli-test/tiny-private"
PRIVATE_TOKEN = "hf_emocli_test_token"
INFERENCE_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "emocli.json"}


@pytest.fixture(scope="session")
def tiny_repo_files(tiny_model_dir) -> dict[str, bytes]:
    """The tiny emocli model as a Hub repo, with files inference must not download."""
    files = read_model_files(tiny_model_dir)
    assert INFERENCE_FILES <= set(files), sorted(files)
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# tiny emotion model for tests\n"
    files[".gitattributes"] = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    files["onnx/model.onnx"] = b"an export inference does not need"
    return files


@pytest.fixture(scope="session")
def pickle_repo_files(tiny_repo_files) -> dict[str, bytes]:
    """The same model with its weights only as a pickle (pytorch_model.bin)."""
    import torch
    from safetensors.torch import load

    buffer = io.BytesIO()
    torch.save(load(tiny_repo_files["model.safetensors"]), buffer)
    files = {name: data for name, data in tiny_repo_files.items() if not name.endswith(".safetensors")}
    files["pytorch_model.bin"] = buffer.getvalue()
    return files


@pytest.fixture
def hub(monkeypatch, tiny_repo_files, pickle_repo_files):
    server = HubServer()
    server.add_repo(TINY_REPO, tiny_repo_files, commit=TINY_COMMIT, revisions=("main", "v1"))
    server.add_repo(PICKLE_REPO, pickle_repo_files)
    server.add_repo(PRIVATE_REPO, tiny_repo_files, token=PRIVATE_TOKEN)
    with server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


@pytest.fixture
def test_registry(tmp_path):
    path = tmp_path / "test-models.toml"
    path.write_text(
        '[models.tiny]\n'
        f'repo = "{TINY_REPO}"\n'
        'revision = "main"\n'
        f'labels = {json.dumps(list(ENG_LABELS))}\n'
        'description = "tiny BERT emotion model served by the test Hub"\n',
        encoding="utf-8",
    )
    return path


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_clear_error(result, *fragments: str) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_pull_by_registry_name_pins_commit_and_loads(cli, hub, test_registry, tiny_model_dir):
    result = cli(["models", "pull", "tiny", "--registry", test_registry])
    assert result.exit_code == 0, result.stderr
    assert f"commit  {TINY_COMMIT}" in result.stdout
    assert "pulled" in result.stderr

    # only what inference needs came over the wire, at the pinned commit
    assert set(hub.downloads()) == INFERENCE_FILES
    assert all(f"/resolve/{TINY_COMMIT}/" in r.path for r in hub.requests if "/resolve/" in r.path)

    from emocli.hub.pull import find_in_cache, pull_record

    snapshot = find_in_cache(TINY_REPO, "main")
    assert snapshot is not None and snapshot.name == TINY_COMMIT
    assert {p.name for p in snapshot.iterdir()} == INFERENCE_FILES
    record = pull_record(TINY_REPO, "main")
    assert record["commit"] == TINY_COMMIT and record["name"] == "tiny" and record["weights"] == "safetensors"
    assert sorted(record["files"]) == sorted(INFERENCE_FILES)

    # the pulled model is the served model: same scores as the original directory
    import torch

    from emocli.model.io import load_model

    pulled, original = load_model(snapshot), load_model(tiny_model_dir)
    batch = pulled.tokenizer(["what a wonderful day", "I am scared"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(pulled.module(**batch).logits, original.module(**batch).logits)
    assert pulled.info.thresholds == (0.5, 0.45, 0.5, 0.55, 0.5)


def test_info_names_the_pinned_commit(cli, hub, test_registry):
    assert cli(["models", "pull", "tiny", "--registry", test_registry, "--quiet"]).exit_code == 0
    result = cli(["models", "info", "tiny", "--registry", test_registry, "--json"])
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["commit"] == TINY_COMMIT
    assert info["availability"] == "cached"
    assert info["labels"] == list(ENG_LABELS)
    assert info["thresholds"] == {"anger": 0.5, "fear": 0.45, "joy": 0.5, "sadness": 0.55, "surprise": 0.5}
    assert info["architecture"] == "transformers" and info["loader"].startswith("plain transformers")
    assert info["size_bytes"] > 1_000_000 and info["pulled_at"]
    assert info["registry_file"] == str(test_registry)

    human = cli(["models", "--registry", test_registry, "info", "tiny"])
    assert human.exit_code == 0
    assert TINY_COMMIT in human.stdout and "plain transformers" in human.stdout


def test_second_pull_is_served_from_cache_without_network(cli, hub, test_registry):
    first = cli(["models", "pull", "tiny", "--registry", test_registry, "--json"])
    assert first.exit_code == 0, first.stderr
    hub.stop()
    n_requests = len(hub.requests)

    second = cli(["models", "pull", "tiny", "--registry", test_registry, "--json"])
    assert second.exit_code == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert (a["source"], b["source"]) == ("pulled", "cache")
    assert a["commit"] == b["commit"] == TINY_COMMIT and a["path"] == b["path"]
    assert len(hub.requests) == n_requests

    from emocli.hub.pull import resolve_model
    from emocli.hub.registry import load_registry

    resolved = resolve_model("tiny", load_registry([test_registry]))
    assert (resolved.source, resolved.commit) == ("cache", TINY_COMMIT)


def test_pull_by_repo_id_at_revision(cli, hub, isolated_home):
    result = cli(["models", "pull", f"{TINY_REPO}@v1", "--json"])
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["commit"] == TINY_COMMIT and out["revision"] == "v1" and out["source"] == "pulled"
    ref = isolated_home / "hf" / "hub" / "models--emocli-test--tiny-emotion" / "refs" / "v1"
    assert ref.read_text() == TINY_COMMIT  # the HF cache's own ref, so other HF tools find it too

    listed = json.loads(cli(["models", "list", "--json"]).stdout)
    row = next(m for m in listed["models"] if m["name"] == f"{TINY_REPO}@v1")
    assert (row["availability"], row["commit"], row["n_labels"], row["role"]) == ("cached", TINY_COMMIT, 5, "emotion")

    info = json.loads(cli(["models", "info", f"{TINY_REPO}@v1", "--json"]).stdout)
    assert info["commit"] == TINY_COMMIT and info["labels"] == list(ENG_LABELS)


def test_resolver_pulls_on_first_use(hub):
    from emocli.hub.pull import resolve_model

    first = resolve_model(TINY_REPO)
    second = resolve_model(TINY_REPO)
    assert (first.source, second.source) == ("pulled", "cache")
    assert first.path == second.path and second.commit == TINY_COMMIT


def test_pickle_only_repo_is_refused_unless_allowed(cli, hub):
    refused = cli(["models", "pull", PICKLE_REPO])
    line = assert_one_clear_error(refused, PICKLE_REPO, "pytorch_model.bin", "safetensors")
    assert "--allow-pickle" in refused.stderr
    assert refused.exit_code == 4
    assert hub.downloads() == []  # refused before downloading anything
    assert "pickle" in line

    allowed = cli(["models", "pull", PICKLE_REPO, "--allow-pickle", "--json"])
    assert allowed.exit_code == 0, allowed.stderr
    out = json.loads(allowed.stdout)
    files = {p for p in os.listdir(out["path"])}
    assert "pytorch_model.bin" in files and "config.json" in files and not any(f.endswith(".safetensors") for f in files)

    from emocli.hub.pull import pull_record

    assert pull_record(PICKLE_REPO, "main")["weights"] == "pickle"
    hub.stop()
    again = cli(["models", "pull", PICKLE_REPO])  # cached, but pickle still needs the explicit flag
    assert_one_clear_error(again, "only pickle weights (pytorch_model.bin)")
    assert cli(["models", "pull", PICKLE_REPO, "--allow-pickle"]).exit_code == 0


def test_a_damaged_cache_is_pulled_again(cli, hub):
    from emocli.hub.pull import find_in_cache, pull_model

    first = pull_model(TINY_REPO, "main", progress=False)
    link = first.path / "tokenizer.json"
    link.resolve().unlink()  # the blob, e.g. cleaned away by hand, leaving a dangling link
    assert not link.is_file()
    assert find_in_cache(TINY_REPO, "main") is None
    fetched = len(hub.downloads())
    second = pull_model(TINY_REPO, "main", progress=False)
    assert second.source == "pulled" and (second.path / "tokenizer.json").is_file()
    assert hub.downloads()[fetched:] == ["tokenizer.json"]  # the other files were still in the cache


class RecordingProgress:
    """emocli.progress.Progress that keeps what it was told."""

    def __init__(self):
        self.calls: list[tuple] = []

    def start(self, task, total=None, unit="rows"):
        self.calls.append(("start", task, total, unit))

    def advance(self, n=1, **status):
        self.calls.append(("advance", n, status))

    def log(self, message):
        self.calls.append(("log", message))

    def finish(self):
        self.calls.append(("finish",))


def test_pull_reports_bytes_and_files_through_the_progress_protocol(hub, tiny_repo_files):
    from emocli.hub.pull import choose_inference_files, pull_model
    from emocli.progress import Progress

    progress = RecordingProgress()
    assert isinstance(progress, Progress)
    pull_model(TINY_REPO, "main", progress=progress)
    names = choose_inference_files(TINY_REPO, "main", {n: len(b) for n, b in tiny_repo_files.items()})
    total = sum(len(tiny_repo_files[n]) for n in names)
    kinds = [c[0] for c in progress.calls]
    assert kinds[:2] == ["log", "start"] and kinds[-1] == "finish"
    assert f"{len(names)} files" in progress.calls[0][1]
    assert progress.calls[1] == ("start", "pull", total, "bytes")
    advances = [c for c in progress.calls if c[0] == "advance"]
    assert sum(n for _, n, _ in advances) == total  # every byte counted once
    assert advances[-1][2] == {"files": f"{len(names)}/{len(names)}"}


def test_unknown_repo_and_revision_give_one_line(cli, hub):
    missing = cli(["models", "pull", "emocli-test/no-such-model"])
    assert_one_clear_error(missing, "'emocli-test/no-such-model' not found", hub.url)
    assert missing.exit_code == 4

    bad_rev = cli(["models", "pull", f"{TINY_REPO}@no-such-branch"])
    assert_one_clear_error(bad_rev, "revision 'no-such-branch' not found")


def test_private_repo_needs_hf_token(cli, hub, monkeypatch):
    without = cli(["models", "pull", PRIVATE_REPO])
    assert_one_clear_error(without, f"'{PRIVATE_REPO}' not found")
    assert "HF_TOKEN" in without.stderr

    monkeypatch.setenv("HF_TOKEN", PRIVATE_TOKEN)
    with_token = cli(["models", "pull", PRIVATE_REPO, "--json", "--quiet"])
    assert with_token.exit_code == 0, with_token.stderr
    assert json.loads(with_token.stdout)["source"] == "pulled"


def test_offline_and_not_cached_gives_one_line(cli, tiny_model_dir):
    # conftest sets HF_HUB_OFFLINE=1
    result = cli(["models", "pull", TINY_REPO])
    assert_one_clear_error(result, TINY_REPO, "HF_HUB_OFFLINE")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_gives_one_line(tmp_path):
    """A real process, so huggingface_hub reads HF_ENDPOINT/HF_HUB_OFFLINE at import as it does for users."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"),
           "EMOCLI_HOME": str(tmp_path / "config"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run([sys.executable, "-m", "emocli.cli", "models", "pull", TINY_REPO, "--quiet"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"cannot reach {endpoint}" in errors[0], proc.stderr
    assert "HF_ENDPOINT" in proc.stderr and "HF_HUB_OFFLINE" in proc.stderr


def test_packaged_minilm_resolves_offline_as_multilabel_classifier():
    import torch

    from emocli.hub.pull import resolve_model
    from emocli.model.io import load_for_finetune

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    resolved = resolve_model("all-minilm-l6-v2", role="base")
    assert resolved.source == "packaged" and (resolved.path / "model.safetensors").exists()
    assert resolve_model(None, role="base").path == resolved.path  # the registry's default base

    labels = ["anger", "fear", "joy", "sadness", "surprise", "disgust", "trust"]
    tokenizer, module = load_for_finetune(resolved.path, labels)
    module.eval()
    with torch.no_grad():
        logits = module(**tokenizer(["I can't believe it, this is wonderful!"], return_tensors="pt")).logits
    assert logits.shape == (1, len(labels))
    scores = torch.sigmoid(logits)
    assert bool(((scores > 0) & (scores < 1)).all())
    assert module.config.problem_type == "multi_label_classification"
    assert [module.config.id2label[i] for i in range(len(labels))] == labels
