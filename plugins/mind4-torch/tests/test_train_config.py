"""The training YAML: defaults == config/train.yaml, every field documented, strict errors."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import yaml
from mind4_torch.train.config import (
    DEFAULT_MODEL,
    SECTIONS,
    TrainConfig,
    default_config,
    differences,
    load_config,
    parse_config,
)

from mind4_core.config import MODEL_FIELDS
from mind4_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
TRAIN_YAML = REPO / "config" / "train.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the shipped file


def test_shipped_yaml_is_the_default_config():
    assert load_config(TRAIN_YAML) == default_config()
    assert load_config(None) == default_config()


def test_shipped_yaml_documents_every_field():
    text = TRAIN_YAML.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    for name, cls in SECTIONS.items():
        fields = {a.name for a in attrs.fields(cls)}
        assert set(data[name]) == fields, f"config/train.yaml [{name}] must spell out every field"
    assert "encoding" in data
    model_keys = set(data["model"])
    for field in MODEL_FIELDS:  # given as a key, or named in the comment listing the rest
        assert field in model_keys or field in text, field
    # every key line carries a comment, or the line above it is a comment
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped:
            key = stripped.split(":")[0]
            if key in SECTIONS or key == "model":
                continue
            assert "#" in line or lines[i - 1].strip().startswith("#"), f"undocumented: {line!r}"


def test_default_model_is_gpt_oss_shaped():
    cfg = default_config().model_config(n_vocab=8192)
    assert cfg.num_experts >= 4 and cfg.experts_per_token == 2
    assert cfg.sliding_window > 0 and cfg.num_hidden_layers >= 2  # alternating windows
    assert cfg.hidden_size % 32 == 0 and cfg.intermediate_size % 32 == 0  # MXFP4 export
    assert DEFAULT_MODEL["preset"] is None


# ----------------------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("training:\n  batch_size: 4\n  batchsize: 4\n", "training.batchsize", 3),
        ("optimiser:\n  lr: 0.1\n", "optimiser", 1),
        ("model:\n  hidden_size: 64\n  hidden: 64\n", "model.hidden", 3),
        ("eval:\n  every: 10\n", "eval.every", 2),
    ],
)
def test_unknown_key_is_named_with_its_line(tmp_path, text, key, line):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert f"unknown key '{key}'" in message
    assert f"line {line}" in message
    assert "allowed" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("training:\n  batch_size: '16'\n", "training.batch_size"),
        ("training:\n  batch_size: 0\n", "training.batch_size"),
        ("training:\n  max_steps: 1.5\n", "training.max_steps"),
        ("optimizer:\n  lr: true\n", "optimizer.lr"),
        ("optimizer:\n  betas: [0.9]\n", "optimizer.betas"),
        ("optimizer:\n  grad_clip: -1\n", "optimizer.grad_clip"),
        ("data:\n  sources: notalist\n", "data.sources"),
        ("data:\n  validation_fraction: 0.9\n", "data.validation_fraction"),
        ("checkpoint:\n  export_experts: int4\n", "checkpoint.export_experts"),
        ("training:\n  autocast: fp8\n", "training.autocast"),
        ("training:\n  device: gpu\n", "training.device"),
        ("log:\n  progress: 'yes'\n", "log.progress"),
        ("model:\n  hidden_size: 12.5\n", "model.hidden_size"),
        ("model:\n  hidden_size: -4\n", "model.hidden_size"),
        ("encoding: 3\n", "encoding"),
    ],
)
def test_wrong_type_is_named(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert key in str(err.value)
    assert "line" in str(err.value)


def test_section_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="training: expected a mapping"):
        load_config(write(tmp_path, "training: 5\n"))


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2.*not valid YAML"):
        load_config(write(tmp_path, "training:\n\tbatch_size: 4\n"))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="training config not found"):
        load_config(tmp_path / "nope.yaml")


def test_min_lr_above_lr_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="optimizer.min_lr"):
        load_config(write(tmp_path, "optimizer:\n  lr: 1.0e-3\n  min_lr: 1.0e-2\n"))


def test_model_shape_is_checked_before_training(tmp_path):
    text = "model:\n  preset: tiny\n  num_key_value_heads: 3\n"
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        load_config(write(tmp_path, text))


def test_model_without_preset_needs_every_shape_field(tmp_path):
    with pytest.raises(ConfigError, match=r"missing field\(s\).*num_hidden_layers"):
        load_config(write(tmp_path, "model:\n  hidden_size: 64\n"))


# ----------------------------------------------------------------------------- values


def test_exponent_floats_read_as_numbers(tmp_path):
    cfg = load_config(write(tmp_path, "optimizer:\n  lr: 3e-4\n  min_lr: 1e-5\n  eps: 1E-9\n"))
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.optimizer.min_lr == pytest.approx(1e-5)
    assert cfg.optimizer.eps == pytest.approx(1e-9)


def test_missing_sections_take_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "training:\n  max_steps: 7\n"))
    assert cfg.training.max_steps == 7
    assert cfg.optimizer == default_config().optimizer
    assert cfg.model == DEFAULT_MODEL


def test_preset_with_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  preset: small\n  num_hidden_layers: 2\n"))
    mc = cfg.model_config(n_vocab=8192)
    assert mc.hidden_size == 512 and mc.num_hidden_layers == 2


def test_vocab_size_defaults_to_the_encoding():
    assert default_config().model_config(n_vocab=1234).vocab_size == 1234


def test_set_overrides_apply_on_top(tmp_path):
    cfg = load_config(
        TRAIN_YAML,
        ["training.max_steps=12", "optimizer.betas=[0.8, 0.9]", "data.sources=[a.txt]"],
    )
    assert cfg.training.max_steps == 12
    assert cfg.optimizer.betas == [0.8, 0.9]
    assert cfg.data.sources == ["a.txt"]
    assert cfg.path == str(TRAIN_YAML) and cfg.overrides[0] == "training.max_steps=12"


def test_set_preset_replaces_the_model_section():
    mc = load_config(TRAIN_YAML, ["model.preset=small", "model.num_hidden_layers=2"]).model_config(
        8192
    )
    assert (mc.hidden_size, mc.num_hidden_layers, mc.num_experts) == (512, 2, 8)


@pytest.mark.parametrize("item", ["training.max_steps", "=3", "a.b.c=1"])
def test_bad_set_is_refused(item):
    with pytest.raises(ConfigError, match="--set"):
        load_config(None, [item])


def test_set_with_unknown_key_is_named():
    with pytest.raises(ConfigError, match="training.maxsteps"):
        load_config(None, ["training.maxsteps=3"])


def test_round_trip_through_yaml():
    cfg = default_config()
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg


def test_differences_ignore_resumable_keys():
    a = default_config().flat()
    b = TrainConfig(model=dict(DEFAULT_MODEL)).flat()
    b["training.max_steps"] = 5
    b["eval.interval"] = 3
    assert differences(a, b) == []
    b["optimizer.lr"] = 1.0
    assert differences(a, b) == ["optimizer.lr"]
