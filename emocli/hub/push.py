"""Publish a model directory to the Hub (or HF_ENDPOINT) with a generated model card, in one commit.

`plan_push` decides, without any network, what goes up: the files `models pull` fetches back (config,
safetensors, tokenizer, emocli.json, a bundled stack's members), README.md (the card, `emocli.hub.card`),
the training history only when asked; never pickle weights. `push_model` then checks the token and the
namespace before it creates anything, creates the repo (and the branch) when missing, and makes one commit
(optionally as a pull request) that also removes model files an earlier push left and this one does not have.
A repository this push created is deleted again when the commit fails. Failures are one-line HubErrors.

The token comes from HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the login's token file, both read per call;
it is only ever sent as the Authorization header. huggingface_hub uploads through Xet when hf-xet is
installed and HF_HUB_DISABLE_XET (also read per call) is not set, else through the LFS batch API.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from emocli.errors import EmocliError, HubError, InputError, ModelNotFoundError
from emocli.hub.card import CardOptions, emocli_only, model_card
from emocli.hub.pull import (OFFLINE_HINT, PICKLE_SUFFIXES, STACK_MEMBERS_DIR, error_causes, first_line, hf_home,
                             hub_endpoint, is_inference_file, is_member_file, resolve_model, weights_format)
from emocli.model.info import META_FILE, ModelInfo, read_json, read_model_info
from emocli.progress import Progress, chosen

CARD_FILE = "README.md"
HISTORY_FILES = ("history.jsonl", "training_curves.png")
DEFAULT_REVISION = "main"
REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
TOKEN_HINT = "set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens) or run `hf auth login`"


@dataclass(frozen=True)
class PushConfig:
    model: str  # a model directory (or a registry name / cached Hub id that resolves to one)
    repo_id: str  # ORG/NAME
    private: bool = False
    revision: str | None = None  # a branch; None: main
    create_pr: bool = False
    commit_message: str | None = None
    include_history: bool = False
    dry_run: bool = False
    out: Path | None = None  # with dry_run: write the card and the file list here
    license: str | None = None
    datasets: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushFile:
    path: str  # in the repository
    size: int
    source: Path | None = None  # None: generated (the card)
    content: bytes | None = None  # what goes up instead of source's bytes (emocli.json with portable paths)


@dataclass(frozen=True)
class PushPlan:
    repo_id: str
    revision: str
    model_dir: Path
    architecture: str
    files: tuple[PushFile, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, why it stays home)
    card: str
    notes: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo_id, "revision": self.revision, "model": str(self.model_dir),
                "architecture": self.architecture, "files": [{"path": f.path, "bytes": f.size} for f in self.files],
                "bytes": self.total_bytes, "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "notes": list(self.notes)}


@dataclass(frozen=True)
class PushResult:
    plan: PushPlan
    dry_run: bool
    url: str | None = None
    commit: str | None = None
    commit_url: str | None = None
    pr_url: str | None = None
    created_repo: bool = False
    changed: bool = False  # False: the repo already held exactly these files, no commit was made
    deleted: tuple[str, ...] = ()
    out: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        record = {k: v for k, v in asdict(self).items() if k not in ("plan", "out", "notes", "deleted")}
        return {**self.plan.to_json(), **record, "deleted": list(self.deleted), "out": str(self.out) if self.out else None,
                "notes": [*self.plan.notes, *self.notes]}


# ---- the plan: no network --------------------------------------------------------------------------------------

def check_repo_id(repo_id: str) -> str:
    if not REPO_ID_RE.fullmatch(repo_id or "") or ".." in repo_id or "--" in repo_id or repo_id.endswith((".", "-")):
        raise InputError(f"invalid Hub repository id {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.')")
    return repo_id


def _check_revision(revision: str) -> str:
    if not revision or revision.startswith(("/", "refs/")) or ".." in revision or revision.endswith("/"):
        raise InputError(f"invalid --revision {revision!r}: expected a branch name")
    return revision


def _check_model_dir(model_dir: Path) -> ModelInfo:
    """An emocli or transformers model directory with safetensors weights and labels; else one line."""
    if not (model_dir / "config.json").is_file():
        raise ModelNotFoundError(f"{model_dir}: not a model directory (no config.json)")
    info = read_model_info(model_dir)  # InputError when it names no labels (a base encoder)
    weights = weights_format(model_dir)
    if weights == "pickle":
        raise InputError(f"{model_dir}: only pickle weights (pytorch_model.bin); emocli pushes safetensors only",
                         hint="load and save it again with safetensors (save_pretrained(..., safe_serialization=True))")
    if weights is None:
        raise ModelNotFoundError(f"{model_dir}: no *.safetensors weights: not a trained model directory")
    if info.architecture == "stack":
        _check_bundled(model_dir)
    return info


def _check_bundled(model_dir: Path) -> None:
    """A stack's members must live inside it (members/...): a push cannot carry absolute paths elsewhere."""
    members = read_json(model_dir / "config.json").get("members") or []
    outside = [m.get("ref") or m.get("path") for m in members if Path(str(m.get("path"))).is_absolute()]
    if outside:
        raise InputError(f"{model_dir}: this stack's members live outside its directory ({', '.join(map(str, outside))})",
                         hint="rebuild it with `emocli stack ... --bundle`, which copies the members into it")


def _skip_reason(path: str, include_history: bool) -> str | None:
    """None when the file goes up; else why it stays home."""
    parts = path.split("/")
    name = parts[-1]
    if any(part.startswith(".") for part in parts):
        return "hidden file"
    if name.endswith(PICKLE_SUFFIXES):
        return "pickle weights are never pushed"
    if path == CARD_FILE:
        return "replaced by the generated model card"
    if path in HISTORY_FILES:
        return None if include_history else "training history; pass --include-history"
    if ("/" not in path and is_inference_file(path)) or is_member_file(path):
        return None
    return "not part of the model"


def owned_by_push(path: str) -> bool:
    """Files a push manages on the Hub: an earlier push's model files that this one lacks are deleted."""
    return path == CARD_FILE or _skip_reason(path, include_history=True) is None


def select_files(model_dir: Path, include_history: bool) -> tuple[list[PushFile], list[tuple[str, str]]]:
    files, skipped = [], []
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(model_dir).as_posix()
        reason = _skip_reason(rel, include_history)
        if reason is not None:
            skipped.append((rel, reason))
        elif path.name == META_FILE:
            content = portable_meta(path.read_bytes())
            files.append(PushFile(rel, len(content), path, content))
        else:
            files.append(PushFile(rel, path.stat().st_size, path))
    return files, skipped


def portable_meta(raw: bytes) -> bytes:
    """emocli.json as it goes public: absolute local paths (training files, output dir, base model dir) cut to
    what still means something elsewhere. Data files keep their path below their common folder, prefixed by its
    name (`brighter/train/eng.csv`), so the card's file table and the sha256 fingerprints still pair up; any other
    absolute path keeps only its last name. Relative paths and everything else are untouched."""
    meta = json.loads(raw)
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    data_paths = [Path(p) for split in ("train", "dev") for p in (data.get(split) or {}) if Path(p).is_absolute()]
    root = Path(os.path.commonpath(data_paths)) if data_paths else None
    if root is not None and root in data_paths:  # one file: its folder is the root
        root = root.parent
    portable = _portable_tree(meta, lambda path: _portable_path(path, root))
    return (json.dumps(portable, indent=2) + "\n").encode("utf-8") if portable != meta else raw


def _portable_path(path: str, root: Path | None) -> str:
    if not Path(path).is_absolute():
        return path
    if root is not None and Path(path).is_relative_to(root):
        return (Path(root.name) / Path(path).relative_to(root)).as_posix()
    return Path(path).name


def _portable_tree(value: Any, portable) -> Any:
    if isinstance(value, dict):
        return {portable(k) if isinstance(k, str) else k: _portable_tree(v, portable) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable_tree(v, portable) for v in value]
    return portable(value) if isinstance(value, str) else value


def _emocli_only_note(info: ModelInfo, repo_id: str) -> str:
    return (f"{repo_id} gets an emocli `{info.architecture}` model: it loads with emocli only, not with plain "
            "transformers (the model card says so)")


def plan_push(config: PushConfig) -> PushPlan:
    """Everything a push would upload (the card built), checked locally; contacts nothing."""
    repo_id = check_repo_id(config.repo_id)
    revision = _check_revision(config.revision or DEFAULT_REVISION)
    model_dir = resolve_model(config.model, pull=False).path
    info = _check_model_dir(model_dir)
    files, skipped = select_files(model_dir, config.include_history)
    card = str(model_card(info, CardOptions(repo_id, license=config.license, datasets=tuple(config.datasets),
                                            files=tuple(f.path for f in files))))
    files.append(PushFile(CARD_FILE, len(card.encode("utf-8"))))
    notes = (_emocli_only_note(info, repo_id),) if emocli_only(info) else ()
    return PushPlan(repo_id, revision, model_dir, info.architecture, tuple(sorted(files, key=lambda f: f.path)),
                    tuple(skipped), card, notes)


def write_dry_run(plan: PushPlan, out: Path) -> Path:
    """The card (README.md) and the file list (push-plan.json) into out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CARD_FILE).write_text(plan.card, encoding="utf-8")
    (out / "push-plan.json").write_text(json.dumps(plan.to_json(), indent=2) + "\n", encoding="utf-8")
    return out


# ---- the token -------------------------------------------------------------------------------------------------

def hub_token() -> str | None:
    """HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the token `hf auth login` saved (HF_TOKEN_PATH, else HF_HOME/token)."""
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(key, "").strip():
            return os.environ[key].strip()
    path = Path(os.path.expandvars(os.environ["HF_TOKEN_PATH"])).expanduser() if os.environ.get("HF_TOKEN_PATH") \
        else hf_home() / "token"
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def require_token() -> str:
    token = hub_token()
    if token is None:
        raise HubError("no Hugging Face token: pushing needs one with write access", hint=TOKEN_HINT)
    return token


def check_push_target(repo_id: str) -> None:
    """What can be checked before hours of training: the repo id and that a token is there."""
    check_repo_id(repo_id)
    require_token()


# ---- the push --------------------------------------------------------------------------------------------------

def push_model(config: PushConfig, progress: Progress | None = None) -> PushResult:
    """Plan the push, then (unless dry_run) upload it as one commit to config.repo_id@revision (or a PR)."""
    plan = plan_push(config)
    if config.dry_run:
        return PushResult(plan, dry_run=True, out=write_dry_run(plan, config.out) if config.out else None)
    progress = chosen(progress)
    token = require_token()
    endpoint = hub_endpoint()
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise HubError(f"cannot push {plan.repo_id}: HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE to push")
    with _hub_session(), _push_errors(plan.repo_id, endpoint):
        return _upload(plan, config, token, endpoint, progress)


def _upload(plan: PushPlan, config: PushConfig, token: str, endpoint: str, progress: Progress) -> PushResult:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    user = api.whoami()
    existing = _check_write_access(api, user, plan.repo_id, endpoint)
    notes = []
    if existing is not None and config.private and not existing.private:
        notes.append(f"{plan.repo_id} already exists and is public: --private changed nothing")
    created = existing is None
    if created:
        progress.log(f"creating {'private ' if config.private else ''}repository {plan.repo_id} on {endpoint}")
        api.create_repo(plan.repo_id, private=config.private, exist_ok=True)
    try:
        if plan.revision != DEFAULT_REVISION:
            api.create_branch(plan.repo_id, branch=plan.revision, exist_ok=True)
        head = api.model_info(plan.repo_id, revision=plan.revision)
        remote = {s.rfilename for s in head.siblings or []}
        deleted = sorted(path for path in remote if owned_by_push(path) and path not in {f.path for f in plan.files})
        progress.log(f"uploading {len(plan.files)} files ({plan.total_bytes / 1e6:.1f} MB) to "
                     f"{plan.repo_id}@{plan.revision}{' as a pull request' if config.create_pr else ''}")
        commit = api.create_commit(plan.repo_id, _operations(plan, deleted), revision=plan.revision,
                                   commit_message=config.commit_message or _default_message(plan),
                                   create_pr=config.create_pr)
    except BaseException:
        if created:
            _delete_quietly(api, plan.repo_id)
        raise
    changed = commit.oid != head.sha
    return PushResult(plan, dry_run=False, url=f"{endpoint}/{plan.repo_id}", commit=commit.oid,
                      commit_url=commit.commit_url, pr_url=commit.pr_url, created_repo=created, changed=changed,
                      deleted=tuple(deleted) if changed else (), notes=tuple(notes))


def _check_write_access(api, user: dict, repo_id: str, endpoint: str):
    """The repo's info when it exists (None when not), after making sure this token may write to it."""
    from huggingface_hub.errors import RepositoryNotFoundError

    name = user.get("name") or "?"
    role = ((user.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubError(f"the token of {name!r} on {endpoint} is read-only: it cannot push", hint=TOKEN_HINT)
    namespace = repo_id.split("/")[0]
    orgs = [org.get("name") for org in user.get("orgs") or [] if org.get("name")]
    try:
        existing = api.model_info(repo_id)
    except RepositoryNotFoundError:
        existing = None
    if namespace == name or namespace in orgs:
        return existing
    member_of = f" or its orgs ({', '.join(orgs)})" if orgs else ""
    if existing is not None:
        raise HubError(f"{repo_id} already exists on {endpoint} under {namespace!r}, and your token ({name!r}) "
                       "cannot write there", hint=f"push to {name}/{repo_id.split('/')[1]}{member_of}")
    raise HubError(f"your token ({name!r}) cannot create repositories under {namespace!r} on {endpoint}",
                   hint=f"push under {name!r}{member_of}, or ask an admin of {namespace!r} to add you")


def _operations(plan: PushPlan, deleted: list[str]) -> list:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    adds = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=_upload_source(f, plan)) for f in plan.files]
    return adds + [CommitOperationDelete(path_in_repo=path) for path in deleted]


def _upload_source(file: PushFile, plan: PushPlan) -> bytes | str:
    if file.content is not None:
        return file.content
    return str(file.source) if file.source else plan.card.encode("utf-8")


def _default_message(plan: PushPlan) -> str:
    return f"emocli push: {plan.model_dir.name} ({plan.architecture})"


def _delete_quietly(api, repo_id: str) -> None:
    """Undo a repository this push created when its commit failed (best effort: the first error matters)."""
    try:
        api.delete_repo(repo_id, missing_ok=True)
    except Exception:  # noqa: BLE001
        pass


@contextmanager
def _hub_session() -> Iterator[None]:
    """huggingface_hub froze HF_HUB_OFFLINE and HF_HUB_DISABLE_XET at import; use what the environment says now,
    and keep its tqdm bars off our stderr."""
    from huggingface_hub import constants
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    frozen = constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET
    bars_were_off = are_progress_bars_disabled()
    constants.HF_HUB_OFFLINE = False
    constants.HF_HUB_DISABLE_XET = os.environ.get("HF_HUB_DISABLE_XET", "").lower() in {"1", "true", "yes", "on"}
    disable_progress_bars()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_XET = frozen
        if not bars_were_off:
            enable_progress_bars()


@contextmanager
def _push_errors(repo_id: str, endpoint: str) -> Iterator[None]:
    try:
        yield
    except EmocliError:
        raise
    except Exception as exc:  # noqa: BLE001 - known Hub failures become one line; others propagate
        error = push_error(exc, repo_id, endpoint)
        if error is None:
            raise
        raise error from None


def _server_message(cause) -> str:
    response = getattr(cause, "response", None)
    message = response.headers.get("X-Error-Message") if response is not None else None
    return message or first_line(cause)


def push_error(exc: BaseException, repo_id: str, endpoint: str) -> HubError | None:
    """One clear line for a huggingface_hub / network failure during a push, or None if it is not one."""
    import httpx2
    from huggingface_hub import errors as hf

    for cause in error_causes(exc):
        if isinstance(cause, hf.RevisionNotFoundError):
            return HubError(f"{repo_id}: the branch does not exist on {endpoint}", hint="check --revision")
        if isinstance(cause, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return HubError(f"cannot reach {endpoint} ({first_line(cause)}) while pushing {repo_id}", hint=OFFLINE_HINT)
        if isinstance(cause, hf.HfHubHTTPError) and getattr(cause, "response", None) is not None:
            status = cause.response.status_code
            if status == 401:
                return HubError(f"{endpoint} rejected the token (HTTP 401) while pushing {repo_id}", hint=TOKEN_HINT)
            if status == 403:
                return HubError(f"{endpoint} refused this token write access to {repo_id} (HTTP 403): "
                                f"{_server_message(cause)}", hint=TOKEN_HINT)
            if isinstance(cause, hf.RepositoryNotFoundError):
                return HubError(f"repository {repo_id} not found on {endpoint}")
            return HubError(f"{endpoint} answered HTTP {status} while pushing {repo_id}: {_server_message(cause)}",
                            hint="nothing was committed; try again later")
        if isinstance(cause, hf.HFValidationError):
            return HubError(f"invalid Hub repository id {repo_id!r}: {first_line(cause)}")
        if isinstance(cause, ValueError) and "Invalid metadata in README.md" in str(cause):
            return HubError(f"{endpoint} rejected the model card's metadata: {' '.join(str(cause).split())}")
    return None
