"""Ensembles, the model side: K models scored as the mean of their probabilities (`finetune --folds K`).

An ensemble is one model directory (architecture "ensemble"): its members bundled under members/m<i>
(each a complete emocli model directory, usable on its own), a config.json naming each member with the
sha256 of its weights, the members' shared tokenizer and emocli.json (labels, thresholds tuned on the
out-of-fold predictions, folds and seeds). `load_model` loads it like any model and `tag` feeds it the
same token ids it feeds any model; the members' formats, fingerprints and bundling are
`emocli.model.members`, shared with the stack. torch is imported only inside functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from emocli.errors import InputError
from emocli.model.heads import LabelledConfig
from emocli.model.members import (MemberRef, bundled_path, load_spec_and_members, save_spec_and_info,
                                  weights_fingerprint)

ARCHITECTURE = "ensemble"


@dataclass(frozen=True)
class EnsembleSpec(LabelledConfig):
    """The ensemble's config.json: its labels and members."""

    labels: tuple[str, ...]
    members: tuple[MemberRef, ...]

    def to_json(self) -> dict[str, Any]:
        return {"emocli_architecture": ARCHITECTURE, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "EnsembleSpec":
        return cls(tuple(data["labels"]), tuple(MemberRef(**m) for m in data["members"]))


def member_dir(out_dir: Path, index: int) -> Path:
    """Where the trainer saves member `index` of an ensemble written to out_dir."""
    return Path(out_dir) / bundled_path(index)


def save_ensemble(out_dir: Path, tokenizer, info, member_names: list[str], architectures: list[str]) -> Path:
    """Write the ensemble around members already saved in member_dir(out_dir, i); -> out_dir."""
    out_dir = Path(out_dir)
    refs = tuple(MemberRef(name, bundled_path(i), weights_fingerprint(member_dir(out_dir, i)), arch)
                 for i, (name, arch) in enumerate(zip(member_names, architectures)))
    spec = EnsembleSpec(tuple(info.labels), refs)
    save_spec_and_info(out_dir, spec, tokenizer, info, ARCHITECTURE)
    return out_dir


def load_ensemble(model_dir: Path, info, *, device: str = "cpu", dtype: str | None = None, load_member):
    """-> EmotionModel whose module averages its members' probabilities (what load_model returns for one).

    load_member(path, device=, dtype=) loads one member: `emocli.model.io.load_model`, handed in by it."""
    from emocli.model.ensemble_modules import EnsembleModel
    from emocli.model.heads import load_tokenizer
    from emocli.model.info import ready_model

    model_dir = Path(model_dir)
    spec, members = load_spec_and_members(model_dir, info, EnsembleSpec.from_json, load_member, device=device,
                                          dtype=dtype, kind="ensemble")
    for i, member in enumerate(members):
        if tuple(member.labels) != spec.labels:
            raise InputError(f"{model_dir}: ensemble member {i + 1} has labels {', '.join(member.labels)}, "
                             f"the ensemble {', '.join(spec.labels)}")
    return ready_model(model_dir, info, load_tokenizer(model_dir), EnsembleModel(members, spec), device, dtype)


__all__ = ["ARCHITECTURE", "EnsembleSpec", "load_ensemble", "member_dir", "save_ensemble"]
