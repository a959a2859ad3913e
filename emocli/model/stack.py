"""Stacking, the model side: a stack directory's config (members, fingerprints), loading and saving it.

For each text every member gives one vector (its pooled embedding and its logits); the vectors form a
short sequence (one step per member), a BiLSTM reads it and a dense layer predicts the labels (the torch
modules are in `emocli.model.stack_modules`; the meta-learner's trainer is `emocli.training.stack`).

A stack is one model directory (architecture "stack"): the meta-learner's safetensors, a config.json
naming each member by path and sha256 fingerprint of its weights (or, with `bundle`, a copy of the member
under members/), the first member's tokenizer and emocli.json. `load_model` loads it like any model; a
member whose weights changed since the stack was trained is refused with a clear error.

The stack takes the first member's token ids (what `tag` feeds any model); a member with another
tokenizer gets the decoded text re-tokenized with its own, the same way in training and inference.
torch is imported only inside functions, so loading a stack for `tag` pulls in no trainer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emocli.errors import ModelNotFoundError
from emocli.model.heads import WEIGHTS_FILE, LabelledConfig
from emocli.model.members import (MEMBERS_DIR, MemberRef, bundle_members, load_spec_and_members, save_spec_and_info,
                                  weights_fingerprint)

if TYPE_CHECKING:
    from emocli.model.stack_modules import StackMeta, StackModel

ARCHITECTURE = "stack"


@dataclass(frozen=True)
class StackSpec(LabelledConfig):
    """The stack's config.json: enough to rebuild the meta-learner and find and check its members."""

    labels: tuple[str, ...]
    members: tuple[MemberRef, ...]
    project_dim: int = 128
    lstm_hidden: int = 64
    dropout: float = 0.2

    def to_json(self) -> dict[str, Any]:
        return {"emocli_architecture": ARCHITECTURE, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "StackSpec":
        return cls(tuple(data["labels"]), tuple(MemberRef(**m) for m in data["members"]),
                   int(data.get("project_dim", 128)), int(data.get("lstm_hidden", 64)),
                   float(data.get("dropout", 0.2)))



# -- save / load -------------------------------------------------------------------------------------------------

def save_stack(out_dir: Path, module: "StackModel", info, member_dirs: list[Path], bundle: bool) -> Path:
    """Write the stack directory; with bundle, copy the members into it and reference them relatively."""
    from emocli.model.heads import save_weights
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec: StackSpec = module.config
    if bundle:
        spec = replace(spec, members=bundle_members(out_dir, spec.members, member_dirs))
    save_weights(module.meta, out_dir / WEIGHTS_FILE)
    save_spec_and_info(out_dir, spec, module.tokenizer, info, ARCHITECTURE)
    return out_dir


def load_stack(model_dir: Path, info, *, device: str = "cpu", dtype: str | None = None, load_member):
    """-> EmotionModel whose module runs the members and the meta-learner (what load_model returns for a stack).

    load_member(path, device=, dtype=) loads one member: `emocli.model.io.load_model`, handed in by it."""
    from safetensors.torch import load_model as load_safetensors

    from emocli.model.heads import load_tokenizer
    from emocli.model.info import ready_model
    from emocli.model.stack_modules import StackModel

    model_dir = Path(model_dir)
    spec, members = load_spec_and_members(model_dir, info, StackSpec.from_json, load_member, device=device,
                                          dtype=dtype, kind="stack")
    meta = new_meta(spec)
    weights = model_dir / WEIGHTS_FILE
    if not weights.exists():
        raise ModelNotFoundError(f"{model_dir}: no {WEIGHTS_FILE} (emocli loads safetensors weights only)")
    load_safetensors(meta, str(weights), strict=True)
    module = StackModel(members, meta, load_tokenizer(model_dir), spec)
    return ready_model(model_dir, info, module.tokenizer, module, device, dtype)


def new_meta(spec: StackSpec) -> "StackMeta":
    from emocli.model.stack_modules import StackMeta

    return StackMeta([m.feature_dim for m in spec.members], spec.num_labels, spec.project_dim, spec.lstm_hidden,
                     spec.dropout)



__all__ = ["ARCHITECTURE", "MEMBERS_DIR", "MemberRef", "StackSpec", "load_stack", "save_stack", "weights_fingerprint"]
