"""`emocli push` for real: a tiny model fine-tuned by `finetune` (its base pulled from the loopback Hub) is pushed
to tests/hubserver.py through huggingface_hub (create_repo, preupload, LFS batch + PUT + verify, NDJSON commit),
then pulled back into a fresh HF cache and run with plain transformers and with `emocli tag`."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from conftest import ENG_LABELS
from hubserver import HubServer, read_model_files
from test_hub import assert_one_clear_error
from test_stack import TEXTS, build, data, members, scores_of  # noqa: F401 - fixtures for the stack test

TOKEN = "hf_push_test_token_alice"
OTHER_TOKEN = "hf_push_test_token_bob"
READ_TOKEN = "hf_push_test_token_reader"
ORG = "emocli-test"
BASE_REPO = f"{ORG}/tiny-base"
REPO = f"{ORG}/tiny-pushed"
MODEL_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "emocli.json"}


def _finetune(brighter: Path, base: str, out: Path, **overrides) -> Path:
    import torch

    from emocli.training.finetune import TrainConfig, finetune
    from emocli.training.thresholds import ThresholdConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = dict(train=(str(brighter / "train" / "eng.csv"),), dev=(str(brighter / "dev" / "eng.csv"),),
                      out=out, base=base, epochs=1, max_steps=4, batch_size=16, max_length=64, seed=0,
                      progress=False, thresholds=ThresholdConfig(mode="per-class"))
        return finetune(TrainConfig(**{**config, **overrides})).out_dir
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_model_dir, brighter) -> Path:
    """`finetune` on BRIGHTER eng for 4 steps, from the tiny BERT pulled by Hub id (so the card names a base repo)."""
    home = tmp_path_factory.mktemp("push_home")
    with HubServer() as server, pytest.MonkeyPatch.context() as mp:
        server.add_repo(BASE_REPO, tiny_model_dir)
        mp.setenv("HF_ENDPOINT", server.url)
        mp.setenv("HF_HOME", str(home / "hf"))
        mp.setenv("EMOCLI_HOME", str(home / "config"))
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        return _finetune(brighter, BASE_REPO, tmp_path_factory.mktemp("pushed") / "model")


@pytest.fixture
def hub(monkeypatch):
    server = HubServer()
    server.add_user(TOKEN, "alice", orgs=(ORG,))
    server.add_user(OTHER_TOKEN, "bob")
    server.add_user(READ_TOKEN, "carol", orgs=(ORG,), write=False)
    with server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")  # the loopback Hub speaks LFS, not Xet
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server


def push(cli, model, repo=REPO, *args):
    result = cli(["push", model, repo, *args])
    assert TOKEN not in result.stdout + result.stderr
    return result


def changed_copy(model_dir: Path, dest: Path, thresholds: list[float]) -> Path:
    """The model with other thresholds in emocli.json (what re-tuning them would change)."""
    shutil.copytree(model_dir, dest)
    meta = json.loads((dest / "emocli.json").read_text())
    meta["thresholds"] = thresholds
    (dest / "emocli.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest


def fresh_cache(monkeypatch, tmp_path, name="fresh") -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / name / "hf"))
    monkeypatch.setenv("EMOCLI_HOME", str(tmp_path / name / "config"))


# ---- the round trip ---------------------------------------------------------------------------------------------

def test_push_then_pull_gives_the_same_model_and_a_card_with_its_metadata(cli, hub, finetuned, tmp_path,
                                                                             monkeypatch, brighter, one_torch_thread):
    result = push(cli, finetuned, REPO, "--license", "apache-2.0")
    assert result.exit_code == 0, result.stderr
    repo = hub.repos[REPO]
    pushed = repo.files("main")
    assert set(pushed) == MODEL_FILES | {"README.md", ".gitattributes"}  # no history.jsonl, no curves
    assert f"commit  {repo.refs['main']}" in result.stdout
    assert [c.ref for c in repo.log] == ["main", "main"]  # the repo's initial commit, then one push commit
    # the weights went through the LFS batch API, the small files inline in the NDJSON commit
    lfs_puts = [r.path for r in hub.requests if r.method == "PUT"]
    assert len(lfs_puts) == 1 and set(hub.lfs_objects.values()) == {pushed["model.safetensors"]}

    # pull it back by Hub id into a fresh cache: byte for byte what finetune wrote, but for emocli.json's paths
    fresh_cache(monkeypatch, tmp_path)
    pulled = cli(["models", "pull", REPO, "--json"])
    assert pulled.exit_code == 0, pulled.stderr
    snapshot = Path(json.loads(pulled.stdout)["path"])
    local = {name: data for name, data in read_model_files(finetuned).items() if name in MODEL_FILES}
    assert {n: d for n, d in read_model_files(snapshot).items() if n != "emocli.json"} == {
        n: d for n, d in local.items() if n != "emocli.json"}
    assert_portable_meta(json.loads(pushed["emocli.json"]), json.loads(local["emocli.json"]), finetuned, brighter)

    # plain transformers, the way the card says, scores like `emocli tag`
    from transformers import pipeline

    texts = pcsv.read_csv(brighter / "dev" / "eng.csv").column("text").to_pylist()[:16]
    classifier = pipeline("text-classification", model=str(snapshot), top_k=None, function_to_apply="sigmoid")
    plain = np.array([[{s["label"]: s["score"] for s in row}[label] for label in ENG_LABELS]
                      for row in classifier(texts, truncation=True, max_length=64)])
    corpus = tmp_path / "posts.csv"
    pcsv.write_csv(pa.table({"id": list(range(len(texts))), "text": texts}), corpus)
    tagged = cli(["tag", corpus, "--model", REPO, "--db", tmp_path / "t.duckdb", "--device", "cpu", "--quiet"])
    assert tagged.exit_code == 0, tagged.stderr
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as con:
        cols = ", ".join(f'"{label}"' for label in ENG_LABELS)
        emocli_scores = np.array(con.sql(f"SELECT {cols} FROM scores ORDER BY id").fetchall())
    np.testing.assert_allclose(plain, emocli_scores, atol=1e-5)
    assert plain.std() > 1e-4  # real, varied scores, not a constant

    # the card parses with huggingface_hub and carries the metadata
    from huggingface_hub import ModelCard

    card = ModelCard(pushed["README.md"].decode())
    meta = json.loads(pushed["emocli.json"])
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.base_model) == ("transformers", "text-classification", BASE_REPO)
    assert data.language == ["eng"] and data.license == "apache-2.0"
    assert data.datasets == ["brighter-dataset/BRIGHTER-emotion-categories"]
    assert {"multi-label-classification", "emotion"} <= set(data.tags) and data.metrics == ["f1"]
    figures = {(r.dataset_config, r.dataset_split, r.metric_name): r.metric_value for r in data.eval_results}
    expected = {("eng", "dev", "macro-F1"): round(meta["dev_metrics"]["macro_f1"], 4),
                ("eng", "dev", "micro-F1"): round(meta["dev_metrics"]["micro_f1"], 4)}
    if meta["headline"].get("scored_on"):  # finetune's honest figure: rows that chose nothing
        expected |= {(None, "held-out train rows", "macro-F1"): round(meta["headline"]["macro_f1"], 4),
                     (None, "held-out train rows", "micro-F1"): round(meta["headline"]["micro_f1"], 4)}
        assert f"macro-F1 {meta['headline']['macro_f1']:.3f}" in card.text
    assert figures == expected
    body = card.text
    for label, threshold in zip(meta["labels"], meta["thresholds"]):
        assert f"| `{label}` | {threshold:.2f} |" in body
    assert 'top_k=None, function_to_apply="sigmoid"' in body and f"emocli tag posts.csv --model {REPO}" in body
    assert "sigmoid" in body and "optimistic" in body and meta["loss"]["name"] in body
    assert all(sha in body for sha in meta["data"]["train"].values())
    assert "perceived emotion" in body and "Trained on eng only" in body


def test_second_push_of_a_changed_model_makes_a_new_commit(cli, hub, finetuned, tmp_path):
    first = push(cli, finetuned, REPO, "--include-history")
    assert first.exit_code == 0, first.stderr
    repo = hub.repos[REPO]
    first_commit = repo.refs["main"]
    assert {"history.jsonl", "training_curves.png"} <= set(repo.files())

    again = push(cli, finetuned, REPO, "--include-history")
    assert again.exit_code == 0, again.stderr
    assert "nothing committed" in again.stdout and repo.refs["main"] == first_commit

    changed = changed_copy(finetuned, tmp_path / "changed", [0.3, 0.4, 0.5, 0.6, 0.7])
    second = push(cli, changed, REPO, "--commit-message", "re-tuned thresholds", "--json")
    assert second.exit_code == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["changed"] and report["commit"] == repo.refs["main"] != first_commit
    assert repo.log[-1].parent == first_commit and repo.log[-1].message == "re-tuned thresholds"
    files = repo.files()
    assert json.loads(files["emocli.json"])["thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert "| `anger` | 0.30 |" in files["README.md"].decode()
    # the history of the first push is gone: the repo holds what this push holds
    assert sorted(report["deleted"]) == ["history.jsonl", "training_curves.png"]
    assert set(files) == MODEL_FILES | {"README.md", ".gitattributes"}


def test_revision_pushes_to_a_branch_and_create_pr_opens_a_pull_request(cli, hub, finetuned, tmp_path):
    assert push(cli, finetuned).exit_code == 0
    repo = hub.repos[REPO]
    main = repo.refs["main"]

    branch = changed_copy(finetuned, tmp_path / "branch", [0.2] * 5)
    on_branch = push(cli, branch, REPO, "--revision", "experiment")
    assert on_branch.exit_code == 0, on_branch.stderr
    assert repo.refs["main"] == main and repo.refs["experiment"] != main
    assert json.loads(repo.files("experiment")["emocli.json"])["thresholds"] == [0.2] * 5
    assert repo.log[-1].parent == main  # the branch started from main

    proposal = changed_copy(finetuned, tmp_path / "pr", [0.6] * 5)
    pr = push(cli, proposal, REPO, "--create-pr", "--json")
    assert pr.exit_code == 0, pr.stderr
    report = json.loads(pr.stdout)
    assert report["pr_url"] == f"{hub.url}/{REPO}/discussions/1"
    assert repo.pull_requests == ["refs/pr/1"] and repo.refs["main"] == main
    assert json.loads(repo.files("refs/pr/1")["emocli.json"])["thresholds"] == [0.6] * 5
    assert json.loads(repo.files("main")["emocli.json"])["thresholds"] != [0.6] * 5


def assert_portable_meta(pushed: dict, local: dict, model_dir: Path, brighter: Path) -> None:
    """The public emocli.json names no local path, keeps every fingerprint under its data-relative path and
    differs from the local one in nothing else."""
    text = json.dumps(pushed)
    assert str(brighter) not in text and str(model_dir) not in text and '"/' not in text
    assert pushed["data"]["train"] == {f"brighter/train/{Path(p).name}": sha for p, sha in local["data"]["train"].items()}
    assert pushed["data"]["dev"] == {f"brighter/dev/{Path(p).name}": sha for p, sha in local["data"]["dev"].items()}
    assert pushed["training"]["train"] == ["brighter/train/eng.csv"] and pushed["training"]["out"] == model_dir.name
    for key in ("labels", "thresholds", "headline", "dev_metrics", "loss", "languages", "max_length"):
        assert pushed.get(key) == local.get(key), key
    assert pushed["base_model"]["path"] == Path(local["base_model"]["path"]).name


def test_dry_run_contacts_nothing_and_lists_exactly_what_a_push_uploads(cli, hub, finetuned, tmp_path):
    out = tmp_path / "preview"
    dry = push(cli, finetuned, REPO, "--dry-run", "--out", out, "--json")
    assert dry.exit_code == 0, dry.stderr
    assert hub.requests == [] and REPO not in hub.repos
    plan = json.loads((out / "push-plan.json").read_text())
    assert plan == {k: v for k, v in json.loads(dry.stdout).items() if k in plan}
    sizes = {name: len(data) for name, data in read_model_files(finetuned).items() if name in MODEL_FILES}
    listed = {f["path"]: f["bytes"] for f in plan["files"]}
    assert {n: b for n, b in listed.items() if n != "emocli.json"} == {
        n: b for n, b in sizes.items() if n != "emocli.json"} | {"README.md": len((out / "README.md").read_bytes())}
    assert 0 < listed["emocli.json"] < sizes["emocli.json"]  # the portable one: local paths cut
    assert {s["path"]: s["reason"] for s in plan["skipped"]}["history.jsonl"].startswith("training history")

    assert push(cli, finetuned).exit_code == 0
    pushed = hub.repos[REPO].files()
    assert set(pushed) - {".gitattributes"} == {f["path"] for f in plan["files"]}
    assert pushed["README.md"] == (out / "README.md").read_bytes()  # the very card the dry run showed
    assert len(pushed["emocli.json"]) == listed["emocli.json"]


def test_private_push_is_readable_only_with_the_token(cli, hub, finetuned, tmp_path, monkeypatch):
    assert push(cli, finetuned, REPO, "--private").exit_code == 0
    assert hub.repos[REPO].token == TOKEN
    fresh_cache(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_TOKEN")
    assert_one_clear_error(cli(["models", "pull", REPO]), "not found")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli(["models", "pull", REPO, "--quiet"]).exit_code == 0


def test_custom_head_is_pushed_with_an_emocli_only_warning(cli, hub, tiny_model_dir, brighter, tmp_path,
                                                           one_torch_thread):
    from emocli.model.heads import ArchitectureConfig

    model = _finetune(brighter, str(tiny_model_dir), tmp_path / "head", max_steps=2,
                      architecture=ArchitectureConfig(head="label-attention"))
    result = push(cli, model)
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "loads with emocli only" in notes[0]
    from huggingface_hub import ModelCard

    card = ModelCard(hub.repos[REPO].files()["README.md"].decode())
    assert card.data.library_name == "emocli" and "emocli-only" in card.data.tags
    assert "Loads with emocli only" in card.text and "cannot load it" in card.text


def test_bundled_stack_is_pushed_with_its_members_and_pulls_back_whole(cli, hub, members, data, tmp_path,
                                                                       monkeypatch, one_torch_thread):
    from emocli.model.io import load_model

    referenced = tmp_path / "stack-by-path"
    build(members, data, referenced, epochs=2)
    refused = push(cli, referenced)
    assert_one_clear_error(refused, "outside its directory")
    assert "--bundle" in refused.stderr  # the hint says how to make it pushable
    assert hub.requests == []

    stack = tmp_path / "stack"
    build(members, data, stack, epochs=2, bundle=True)
    result = push(cli, stack)
    assert result.exit_code == 0, result.stderr
    assert "loads with emocli only" in result.stderr
    assert {"members/m0/model.safetensors", "members/m1/emocli.json"} <= set(hub.repos[REPO].files())

    fresh_cache(monkeypatch, tmp_path)
    pulled = cli(["models", "pull", REPO, "--json"])
    assert pulled.exit_code == 0, pulled.stderr
    snapshot = Path(json.loads(pulled.stdout)["path"])
    local = read_model_files(stack)
    pulled_files = read_model_files(snapshot)
    assert {n: d for n, d in pulled_files.items() if not n.endswith("emocli.json")} == {
        n: local[n] for n in pulled_files if not n.endswith("emocli.json")}
    assert all(b'"/' not in d for n, d in pulled_files.items() if n.endswith("emocli.json"))  # no local path
    assert {name for name in read_model_files(snapshot) if name.startswith("members/")} == {
        name for name in local if name.startswith("members/") and name.rsplit("/", 1)[1] in MODEL_FILES}
    import torch

    torch.testing.assert_close(scores_of(load_model(snapshot), TEXTS), scores_of(load_model(stack), TEXTS))


def test_finetune_push_to_hub(cli, hub, tiny_model_dir, brighter, tmp_path, monkeypatch, one_torch_thread):
    out = tmp_path / "ft"
    args = ["finetune", "--train", brighter / "train" / "eng.csv", "--dev", brighter / "dev" / "eng.csv", "--out", out,
            "--base", tiny_model_dir, "--max-steps", "2", "--batch-size", "16", "--max-length", "32", "--quiet",
            "--push-to-hub", f"{ORG}/from-finetune", "--json"]
    monkeypatch.delenv("HF_TOKEN")
    refused = cli(args)
    assert_one_clear_error(refused, "no Hugging Face token")
    assert not out.exists() and hub.requests == []  # checked before any training

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    result = cli(args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["push"]["commit"] == hub.repos[f"{ORG}/from-finetune"].refs["main"]
    assert hub.repos[f"{ORG}/from-finetune"].files()["model.safetensors"] == (out / "model.safetensors").read_bytes()


# ---- failures: one line, nothing created --------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_push_without_a_token_fails_before_contacting_the_hub(cli, hub, finetuned, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    fresh_cache(monkeypatch, tmp_path)  # no login token file either
    result = push(cli, finetuned)
    assert_one_clear_error(result, "no Hugging Face token")
    assert hub.requests == []


def test_login_token_file_is_used(cli, hub, finetuned, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    fresh_cache(monkeypatch, tmp_path)
    (tmp_path / "fresh" / "hf").mkdir(parents=True)
    (tmp_path / "fresh" / "hf" / "token").write_text(TOKEN + "\n")
    assert push(cli, finetuned).exit_code == 0 and REPO in hub.repos


@pytest.mark.parametrize("case", ["bad-token", "read-only-token", "other-owner", "foreign-namespace", "network-down",
                                  "commit-fails"])
def test_push_failures_are_one_line_and_leave_nothing_created(cli, hub, finetuned, monkeypatch, case):
    repo, fragments = REPO, ()
    if case == "bad-token":
        monkeypatch.setenv("HF_TOKEN", "hf_not_a_token")
        fragments = ("rejected the token", "401")
    elif case == "read-only-token":
        monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
        fragments = ("read-only",)
    elif case == "other-owner":
        hub.add_repo("someone-else/taken", {"config.json": b"{}"})
        repo, fragments = "someone-else/taken", ("already exists", "someone-else", "alice")
    elif case == "foreign-namespace":
        monkeypatch.setenv("HF_TOKEN", OTHER_TOKEN)
        fragments = ("cannot create repositories under", ORG)
    elif case == "network-down":
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
        fragments = ("cannot reach",)
    elif case == "commit-fails":
        hub.fail_commits = 500
        fragments = ("HTTP 500",)
    before = {name: dict(r.refs) for name, r in hub.repos.items()}
    result = push(cli, finetuned, repo)
    assert_one_clear_error(result, *fragments)
    assert {name: dict(r.refs) for name, r in hub.repos.items()} == before  # no repo created, nothing committed
    assert OTHER_TOKEN not in result.stderr and READ_TOKEN not in result.stderr


def test_model_must_be_an_emocli_or_transformers_directory(cli, hub, tmp_path, finetuned):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_clear_error(push(cli, empty), "not a model directory")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "emocli.json", "tokenizer.json"):
        shutil.copy(finetuned / name, pickled / name)
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    assert_one_clear_error(push(cli, pickled), "pickle")
    assert_one_clear_error(push(cli, tmp_path / "missing"), "missing")
    assert_one_clear_error(push(cli, finetuned, "no-namespace"), "invalid Hub repository id")
    assert hub.requests == []
