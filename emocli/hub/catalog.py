"""What emocli knows about each model: registry entry, where its files are, pinned commit, labels, loader.

The library behind `emocli models list` and `emocli models info`. Reads only files (registry, HF cache,
pull lock, emocli.json / config.json): no network, no torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emocli.errors import EmocliError, ModelNotFoundError
from emocli.hub.pull import (ResolvedModel, dir_size, looks_like_repo_id, pull_record, read_pull_lock, resolve_model,
                  split_repo_ref, weights_format)
from emocli.model.info import META_FILE, model_languages, read_model_info
from emocli.hub.registry import ModelSpec, Registry

AVAILABILITY = {"local": "local", "packaged": "packaged", "cache": "cached", "pulled": "cached"}
NOT_PULLED = "not yet pulled"
MISSING = "missing"
PULLED_BY_ID = "(pulled by Hub id)"  # the source of repos pulled by id that no registry names


@dataclass(frozen=True)
class ModelEntry:
    """One row of `models list`."""

    name: str
    repo: str | None
    revision: str
    role: str
    task: str
    n_labels: int | None
    availability: str  # packaged | cached | local | not yet pulled | missing
    path: str | None
    commit: str | None
    default: bool
    default_base: bool
    source: str

    @property
    def location(self) -> str:
        """repo@revision for Hub models, the directory for local ones."""
        if self.repo:
            return f"{self.repo}@{self.revision}"
        return self.path or "-"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def locate(spec: ModelSpec, registry: Registry) -> tuple[str, ResolvedModel | None]:
    """(availability, resolved model or None), without pulling anything."""
    try:
        resolved = resolve_model(spec.name, registry, pull=False)
    except ModelNotFoundError:
        return (MISSING if spec.path else NOT_PULLED), None
    return AVAILABILITY[resolved.source], resolved


def _labels_on_disk(path: Path, spec: ModelSpec | None) -> tuple[str, ...] | None:
    try:
        return read_model_info(path, spec).labels
    except EmocliError:
        return None  # a base encoder names no labels


def list_entries(registry: Registry) -> list[ModelEntry]:
    """Every registry model, then repos pulled by Hub id that no registry entry names."""
    entries = [_entry(spec, registry) for spec in registry.models.values()]
    named = {(spec.repo.lower(), spec.commit or spec.revision) for spec in registry.models.values() if spec.repo}
    for record in read_pull_lock().values():
        if (record["repo"].lower(), record["revision"]) not in named:
            entries.append(_entry(_adhoc_spec(record["repo"], record["revision"]), registry))
    return entries


def _entry(spec: ModelSpec, registry: Registry) -> ModelEntry:
    availability, resolved = locate(spec, registry)
    labels = spec.labels
    if labels is None and resolved is not None:
        labels = _labels_on_disk(resolved.path, spec)
    role = spec.role
    if spec.source == PULLED_BY_ID:
        role = "emotion" if labels else "base"
    return ModelEntry(
        name=spec.name, repo=spec.repo, revision=spec.commit or spec.revision, role=role, task=spec.task,
        n_labels=len(labels) if labels else None, availability=availability,
        path=str(resolved.path) if resolved else spec.path, commit=_commit(spec, resolved),
        default=spec.name == registry.default, default_base=spec.name == registry.default_base, source=spec.source,
    )


def _adhoc_spec(repo: str, revision: str | None) -> ModelSpec:
    revision = revision or "main"
    return ModelSpec(name=f"{repo}@{revision}", repo=repo, revision=revision, source=PULLED_BY_ID)


def _commit(spec: ModelSpec, resolved: ResolvedModel | None) -> str | None:
    """The commit of the files in use: the cached snapshot's, else the one the registry pins (if any)."""
    if resolved is not None:
        return resolved.commit  # None for packaged and local models: no Hub commit describes them
    return spec.commit


def _pull_of(spec: ModelSpec, commit: str | None) -> dict[str, Any] | None:
    """The pull lock's record for the snapshot in use, if that snapshot came from `models pull`."""
    record = pull_record(spec.repo, spec.commit or spec.revision) if spec.repo and commit else None
    return record if record and record.get("commit") == commit else None


def find_spec(ref: str, registry: Registry) -> ModelSpec:
    """A registry name, a Hub id (org/repo[@rev], matched against the registry first) or a model directory."""
    spec = registry.find(ref)
    if spec is not None:
        return spec
    if looks_like_repo_id(ref):
        repo, revision = split_repo_ref(ref)
        known = registry.find_by_repo(repo)
        if known is not None and revision in (None, known.revision, known.commit):
            return known
        return _adhoc_spec(repo, revision)
    if Path(ref).expanduser().is_dir():
        path = Path(ref).expanduser().resolve()
        return ModelSpec(name=str(path), path=str(path), source="(directory)")
    return registry.get(ref)  # raises with the known names


def _architecture(path: Path) -> str:
    meta = path / META_FILE
    if meta.is_file():
        try:
            return str(json.loads(meta.read_text(encoding="utf-8")).get("architecture", "transformers"))
        except json.JSONDecodeError:
            return "transformers"
    return "transformers"


def loader_for(architecture: str) -> str:
    if architecture == "transformers":
        return "plain transformers (AutoModelForSequenceClassification, sigmoid/softmax head)"
    if architecture == "onnx":
        return "emocli onnx (an `emocli export onnx` directory, run by ONNX Runtime: emocli[onnx])"
    return f"emocli (custom head {architecture!r}: load with emocli, not plain transformers)"


def describe(ref: str, registry: Registry) -> dict[str, Any]:
    """Everything `models info` shows, as plain data."""
    spec = find_spec(ref, registry)
    entry = _entry(spec, registry)
    path = Path(entry.path) if entry.path and entry.availability not in (NOT_PULLED, MISSING) else None
    info = None
    if path is not None:
        try:
            info = read_model_info(path, spec)
        except EmocliError:
            info = None
    labels = list(info.labels) if info else (list(spec.labels) if spec.labels else None)
    thresholds = (info.threshold_map() if info else
                  {label: spec.threshold_for(label) for label in labels} if labels else None)
    record = _pull_of(spec, entry.commit)
    architecture = _architecture(path) if path else None
    return {
        "name": spec.name, "repo": spec.repo, "revision": spec.revision, "commit": entry.commit,
        "pulled_at": record.get("pulled_at") if record else None,
        "role": entry.role, "task": info.task if info else spec.task, "labels": labels, "thresholds": thresholds,
        "max_length": info.max_length if info else spec.max_length,
        "languages": list(model_languages(info, spec) or ()), "languages_source": _languages_source(info, spec),
        "license": spec.license, "description": spec.description, "registry_file": spec.source,
        "availability": entry.availability, "path": str(path) if path else None,
        "size_bytes": dir_size(path) if path else None, "weights": weights_format(path) if path else None,
        "architecture": architecture, "loader": loader_for(architecture) if architecture else None,
        "default": entry.default, "default_base": entry.default_base,
    }


def _languages_source(info, spec) -> str | None:
    if info is not None and info.languages is not None:
        return "training data (emocli.json)"
    if model_languages(None, spec) is not None:
        return "registry"
    return "multilingual (not listed)" if spec.languages else None
