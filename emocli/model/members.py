"""Models made of other models (a stack, an ensemble): how a member is named, fingerprinted, bundled and found.

A member is referenced by path (absolute, or relative inside the parent directory when bundled under
members/m<i>) and the sha256 of its weight files; a member whose weights changed since the parent was
built is refused with one clear error. `emocli.model.stack` and `emocli.model.ensemble` share this.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from emocli.errors import InputError, ModelNotFoundError

MEMBERS_DIR = "members"


@dataclass(frozen=True)
class MemberRef:
    ref: str  # what the user passed (registry name, Hub id or directory), or how the trainer named it
    path: str  # absolute directory, or members/m<i> inside a bundled parent
    fingerprint: str  # sha256 over the member's weight files
    architecture: str
    feature_dim: int = 0  # a stack's per-member feature width; unused by an ensemble


def _weight_files(model_dir: Path) -> list[Path]:
    """The directory's own *.safetensors, plus its bundled members' (an ensemble keeps its weights there)."""
    return sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob(f"{MEMBERS_DIR}/*/*.safetensors"))


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over a model directory's weight files (relative names and bytes), e.g. model.safetensors."""
    model_dir = Path(model_dir)
    files = _weight_files(model_dir)
    if not files:
        raise ModelNotFoundError(f"{model_dir}: no *.safetensors weights (emocli combines safetensors models only)")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def member_path(parent_dir: Path, ref: MemberRef) -> Path:
    path = Path(ref.path)
    return path if path.is_absolute() else Path(parent_dir) / path


def check_member(parent_dir: Path, index: int, ref: MemberRef, kind: str = "stack") -> Path:
    """The member's directory, after checking it is there with the weights the parent was built on."""
    path = member_path(parent_dir, ref)
    if not path.is_dir():
        raise ModelNotFoundError(f"{parent_dir}: {kind} member {index + 1} ({ref.ref}) is gone from {path}",
                                 hint="restore it, or rebuild with the members bundled inside")
    fingerprint = weights_fingerprint(path)
    if fingerprint != ref.fingerprint:
        raise InputError(f"{parent_dir}: {kind} member {index + 1} ({ref.ref}) at {path} has changed since the {kind} "
                         f"was trained (weights sha256 {fingerprint[:12]}, expected {ref.fingerprint[:12]})",
                         hint=f"rebuild the {kind}, or restore that member's weights")
    return path


def bundled_path(index: int) -> str:
    return f"{MEMBERS_DIR}/m{index}"


def bundle_members(out_dir: Path, refs: tuple[MemberRef, ...], sources: list[Path]) -> tuple[MemberRef, ...]:
    """Copy each member into out_dir/members/m<i> (no history or plots) and reference it relatively."""
    bundled = []
    for i, (ref, source) in enumerate(zip(refs, sources)):
        target = Path(out_dir) / bundled_path(i)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("history.jsonl", "*.png"))
        bundled.append(replace(ref, path=bundled_path(i)))
    return tuple(bundled)


def load_members(parent_dir: Path, refs: tuple[MemberRef, ...], load_member, *, device: str, dtype: str | None,
                 kind: str) -> list:
    """Every member checked and loaded with `load_member` (emocli.model.io.load_model, handed in)."""
    return [load_member(check_member(parent_dir, i, ref, kind), device=device, dtype=dtype)
            for i, ref in enumerate(refs)]


def load_spec_and_members(model_dir: Path, info, from_json, load_member, *, device: str, dtype: str | None,
                          kind: str):
    """A stack's or an ensemble's config.json (parsed by `from_json`), checked against emocli.json, and its
    members loaded: -> (spec, members)."""
    from emocli.model.heads import CONFIG_FILE
    from emocli.model.info import read_json

    spec = from_json(read_json(Path(model_dir) / CONFIG_FILE))
    if tuple(spec.labels) != tuple(info.labels):
        raise InputError(f"{model_dir}: config.json and emocli.json name different labels")
    return spec, load_members(model_dir, spec.members, load_member, device=device, dtype=dtype, kind=kind)


def save_spec_and_info(out_dir: Path, spec, tokenizer, info, architecture: str) -> None:
    """The counterpart of `load_spec_and_members`: a stack's or an ensemble's config.json (`spec.to_json()`), its
    tokenizer, and emocli.json naming its architecture."""
    import json

    from emocli.model.heads import CONFIG_FILE
    from emocli.model.info import write_model_info

    (Path(out_dir) / CONFIG_FILE).write_text(json.dumps(spec.to_json(), indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(out_dir)
    write_model_info(out_dir, replace(info, architecture=architecture))


__all__ = ["MEMBERS_DIR", "MemberRef", "bundle_members", "bundled_path", "check_member", "load_members",
           "load_spec_and_members", "member_path", "save_spec_and_info", "weights_fingerprint"]
