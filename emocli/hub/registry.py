"""The model registry: models.toml (shipped) + the user's registry + --registry files, validated into ModelSpec."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from emocli.config import shipped_registry_path, user_registry_path
from emocli.errors import ConfigError, ModelNotFoundError

TASKS = ("multi_label", "single_label")
ROLES = ("emotion", "base")
SPEC_KEYS = {
    "repo", "revision", "task", "role", "labels", "thresholds", "max_length", "languages",
    "license", "description", "package", "path", "commit",
}
TOP_KEYS = {"default", "default_base", "models"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    repo: str | None = None
    revision: str = "main"
    task: str = "multi_label"
    role: str = "emotion"
    labels: tuple[str, ...] | None = None
    thresholds: dict[str, float] | float | None = None
    max_length: int | None = None
    languages: tuple[str, ...] = ()
    license: str | None = None
    description: str | None = None
    package: str | None = None
    path: str | None = None
    commit: str | None = None
    source: str = "models.toml"

    @property
    def is_base(self) -> bool:
        return self.role == "base"

    def threshold_for(self, label: str, default: float = 0.5) -> float:
        if self.thresholds is None:
            return default
        if isinstance(self.thresholds, (int, float)):
            return float(self.thresholds)
        return float(self.thresholds.get(label, default))


@dataclass
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    default: str | None = None
    default_base: str | None = None
    files: list[Path] = field(default_factory=list)

    def get(self, name: str) -> ModelSpec:
        spec = self.find(name)
        if spec is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFoundError(f"no model named {name!r} in the registry (known: {known})")
        return spec

    def find(self, name: str) -> ModelSpec | None:
        return self.models.get(name)

    def find_by_repo(self, repo: str) -> ModelSpec | None:
        for spec in self.models.values():
            if spec.repo and spec.repo.lower() == repo.lower():
                return spec
        return None

    def merge(self, other: "Registry") -> "Registry":
        return Registry(
            models={**self.models, **other.models},
            default=other.default or self.default,
            default_base=other.default_base or self.default_base,
            files=self.files + other.files,
        )


def _fail(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {message}")


def _parse_thresholds(path: Path, key: str, value: Any) -> dict[str, float] | float:
    if isinstance(value, bool):
        raise _fail(path, key, "must be a number or a table of label = number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        out = {}
        for label, t in value.items():
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
                raise _fail(path, f"{key}.{label}", f"threshold must be a number in [0, 1], got {t!r}")
            out[str(label)] = float(t)
        return out
    raise _fail(path, key, "must be a number or a table of label = number")


def _str_list(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, "must be a list of strings")
    return tuple(value)


def _parse_spec(path: Path, name: str, table: Any) -> ModelSpec:
    where = f"models.{name}"
    if not isinstance(table, dict):
        raise _fail(path, where, "must be a table")
    unknown = sorted(set(table) - SPEC_KEYS)
    if unknown:
        raise _fail(path, f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(SPEC_KEYS))})")
    if not table.get("repo") and not table.get("path"):
        raise _fail(path, f"{where}.repo", "missing: every model needs a Hub `repo` (or a local `path`)")
    for key in ("repo", "revision", "license", "description", "package", "path", "commit"):
        if key in table and not isinstance(table[key], str):
            raise _fail(path, f"{where}.{key}", "must be a string")
    task = table.get("task", "multi_label")
    if task not in TASKS:
        raise _fail(path, f"{where}.task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    role = table.get("role", "emotion")
    if role not in ROLES:
        raise _fail(path, f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    max_length = table.get("max_length")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise _fail(path, f"{where}.max_length", "must be a positive integer")
    labels = _str_list(path, f"{where}.labels", table["labels"]) if "labels" in table else None
    thresholds = _parse_thresholds(path, f"{where}.thresholds", table["thresholds"]) if "thresholds" in table else None
    if labels and isinstance(thresholds, dict):
        stray = sorted(set(thresholds) - set(labels))
        if stray:
            raise _fail(path, f"{where}.thresholds.{stray[0]}", "names a label that is not in `labels`")
    model_path = table.get("path")
    if model_path and not Path(model_path).is_absolute():
        model_path = str((path.parent / model_path).resolve())
    return ModelSpec(
        name=name,
        repo=table.get("repo"),
        revision=table.get("revision", "main"),
        task=task,
        role=role,
        labels=labels,
        thresholds=thresholds,
        max_length=max_length,
        languages=_str_list(path, f"{where}.languages", table["languages"]) if "languages" in table else (),
        license=table.get("license"),
        description=table.get("description"),
        package=table.get("package"),
        path=model_path,
        commit=table.get("commit"),
        source=str(path),
    )


def parse_registry_file(path: Path) -> Registry:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: registry file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown top-level key (allowed: {', '.join(sorted(TOP_KEYS))})")
    models_table = data.get("models", {})
    if not isinstance(models_table, dict):
        raise _fail(path, "models", "must be a table of [models.NAME] entries")
    models = {name: _parse_spec(path, name, table) for name, table in models_table.items()}
    for key in ("default", "default_base"):
        if key in data and not isinstance(data[key], str):
            raise _fail(path, key, "must be a model name (string)")
    return Registry(models=models, default=data.get("default"), default_base=data.get("default_base"), files=[path])


def load_registry(extra: list[Path] | tuple[Path, ...] = ()) -> Registry:
    """Shipped registry, then the user registry, then each --registry file: later entries override earlier ones."""
    registry = parse_registry_file(shipped_registry_path())
    user = user_registry_path()
    if user.exists():
        registry = registry.merge(parse_registry_file(user))
    for path in extra:
        registry = registry.merge(parse_registry_file(Path(path)))
    for key in ("default", "default_base"):
        name = getattr(registry, key)
        if name and name not in registry.models:
            raise ConfigError(f"{registry.files[-1]}: {key}: names {name!r}, which no registry defines")
    return registry


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else _toml_value(key)


def _spec_table(spec: ModelSpec) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key in ("repo", "revision", "task", "role", "labels", "thresholds", "max_length", "languages",
                "license", "description", "package", "path", "commit"):
        value = getattr(spec, key)
        if value in (None, (), {}) or (key == "revision" and value == "main" and not spec.repo):
            continue
        table[key] = list(value) if isinstance(value, tuple) else value
    return table


def write_registry_file(path: Path, registry: Registry) -> None:
    lines = ["# emocli user registry: entries here extend or override the shipped models.toml", ""]
    if registry.default:
        lines.append(f"default = {_toml_value(registry.default)}")
    if registry.default_base:
        lines.append(f"default_base = {_toml_value(registry.default_base)}")
    for name, spec in registry.models.items():
        lines += ["", f"[models.{_toml_key(name)}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in _spec_table(spec).items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def register_model(spec: ModelSpec, *, set_default: bool = True, path: Path | None = None) -> Path:
    """Add (or replace) a model in the user registry; optionally make it the user's default for `tag`."""
    path = Path(path) if path else user_registry_path()
    registry = parse_registry_file(path) if path.exists() else Registry()
    registry.models[spec.name] = replace(spec, source=str(path))
    if set_default:
        registry.default = spec.name
    write_registry_file(path, registry)
    return path
