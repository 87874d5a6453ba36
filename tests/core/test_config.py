import json

import pytest

from mind4_core.config import (
    Config,
    ModelConfig,
    SamplingParams,
    apply_model_overrides,
    model_config_from_dict,
    read_json,
    resolve_config,
)
from mind4_core.errors import ConfigError, SamplingError
from mind4_core.presets import PRESETS


def test_precedence_flags_over_file_over_defaults():
    cfg = resolve_config(
        ("defaults", {"backend": "torch", "sampling": {"temperature": 0.8, "top_p": 0.9}}),
        ("file.json", {"backend": "metal", "dtype": "float16", "sampling": {"temperature": 0.5}}),
        ("flags", {"dtype": "float32"}),
    )
    assert cfg.runtime.backend == "metal"
    assert cfg.runtime.dtype == "float32"
    assert cfg.sampling.temperature == 0.5
    assert cfg.sampling.top_p == 0.9
    assert cfg.origin["runtime.dtype"] == "flags"


def test_config_file_model_fields_override_checkpoint():
    base = PRESETS["tiny"]
    cfg = resolve_config(("my.json", {"max_context_length": 512, "rope_theta": 5000.0}))
    merged = apply_model_overrides(base, cfg)
    assert merged.max_context_length == 512 and merged.rope_theta == 5000.0
    assert merged.hidden_size == base.hidden_size


def test_shape_field_override_is_refused_naming_the_field():
    cfg = resolve_config(("my.json", {"hidden_size": 64}))
    with pytest.raises(ConfigError, match="my.json: field 'hidden_size' = 64 disagrees"):
        apply_model_overrides(PRESETS["tiny"], cfg)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"hidden_sise": 3}, "unknown field 'hidden_sise'"),
        ({"device": "gpu"}, "'device': got 'gpu'; allowed: 'auto', 'cpu'"),
        ({"dtype": "float8"}, "'dtype': got 'float8'"),
        ({"num_hidden_layers": 0}, "'num_hidden_layers': got 0; expected a positive integer"),
        ({"rope_theta": -1.0}, "'rope_theta'"),
        ({"sampling": {"temperature": -0.1}}, "'temperature': got -0.1"),
        ({"sampling": {"top_p": 0}}, "'top_p': got 0"),
        ({"sampling": {"top_k": -2}}, "'top_k': got -2"),
        ({"sampling": {"colour": 1}}, "unknown field\\(s\\) 'colour'"),
        ({"logging": {"log_level": "LOUD"}}, "'log_level': got 'LOUD'"),
        ({"sampling": 3}, "'sampling' must be an object"),
    ],
)
def test_invalid_fields_name_field_value_and_allowed(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve_config(("bad.json", data))
    assert "bad.json" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"temperature": float("nan")}, "temperature"),
    ],
)
def test_sampling_params_validate(kwargs, field):
    with pytest.raises(SamplingError, match=field):
        SamplingParams(**kwargs)


def test_model_config_cross_field_checks():
    good = PRESETS["small"].to_dict()
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        ModelConfig(**{**good, "num_key_value_heads": 3})
    with pytest.raises(ConfigError, match="experts_per_token"):
        ModelConfig(**{**good, "experts_per_token": 9})
    with pytest.raises(ConfigError, match="missing required field"):
        model_config_from_dict({"hidden_size": 4}, "ckpt/config.json")


def test_window_alternates_even_layers():
    cfg = PRESETS["small"]
    assert [cfg.window_of_layer(i) for i in range(4)] == [128, None, 128, None]


def test_read_json_reports_position(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"backend": "torch",\n "dtype": }')
    with pytest.raises(ConfigError, match="line 2"):
        read_json(path)
    with pytest.raises(ConfigError, match="not found"):
        read_json(tmp_path / "missing.json")


def test_root_config_json_is_valid_and_describes_the_default_model():
    from pathlib import Path

    from mind4_core.engine import default_checkpoint

    root = Path(__file__).resolve().parents[2] / "config.json"
    data = json.loads(root.read_text())
    cfg = resolve_config(("config.json", data))
    assert isinstance(cfg, Config)
    ckpt_cfg = json.loads((default_checkpoint() / "config.json").read_text())
    for key, value in cfg.model.items():
        assert ckpt_cfg[key] == value, f"config.json field {key} drifted from the embedded model"
