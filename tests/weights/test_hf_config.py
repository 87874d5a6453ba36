"""Hugging Face gpt-oss config.json <-> Mind 4's ModelConfig."""

from __future__ import annotations

import attrs
import pytest

from mind4_core.config import ModelConfig
from mind4_core.errors import ConfigError
from mind4_core.hf import hf_config, model_config_from_hf
from mind4_core.presets import PRESETS

from .conftest import SMALL

LAYER_TYPES_24 = ["sliding_attention", "full_attention"] * 12

#: shaped like the config.json published with gpt-oss-20b (transformers v4 style)
RELEASED_20B = {
    "architectures": ["GptOssForCausalLM"],
    "attention_bias": True,
    "attention_dropout": 0.0,
    "eos_token_id": 200002,
    "experts_per_token": 4,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2880,
    "initial_context_length": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 2880,
    "layer_types": LAYER_TYPES_24,
    "max_position_embeddings": 131072,
    "model_type": "gpt_oss",
    "num_attention_heads": 64,
    "num_experts_per_tok": 4,
    "num_hidden_layers": 24,
    "num_key_value_heads": 8,
    "num_local_experts": 32,
    "output_router_logits": False,
    "pad_token_id": 199999,
    "quantization_config": {
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
        "quant_method": "mxfp4",
    },
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "factor": 32.0,
        "original_max_position_embeddings": 4096,
        "rope_type": "yarn",
        "truncate": False,
    },
    "rope_theta": 150000,
    "router_aux_loss_coef": 0.9,
    "sliding_window": 128,
    "swiglu_limit": 7.0,
    "tie_word_embeddings": False,
    "use_cache": True,
    "vocab_size": 201088,
}


def test_released_20b_config_maps_to_the_preset():
    hf = model_config_from_hf(RELEASED_20B)
    assert hf.model == PRESETS["gpt-oss-20b"]
    assert hf.quantization == "mxfp4"
    assert hf.tokenizer == "o200k_harmony"
    assert hf.attention_bias and not hf.tie_word_embeddings


def test_v5_rope_parameters_read_like_v4_rope_scaling():
    v5 = {k: v for k, v in RELEASED_20B.items() if k not in ("rope_scaling", "rope_theta")}
    v5["rope_parameters"] = {**RELEASED_20B["rope_scaling"], "rope_theta": 150000.0}
    assert model_config_from_hf(v5).model == PRESETS["gpt-oss-20b"]


def test_no_rope_fields_means_transformers_default_yarn():
    data = {k: v for k, v in RELEASED_20B.items() if k not in ("rope_scaling", "rope_theta")}
    cfg = model_config_from_hf(data).model
    assert (cfg.rope_scaling_factor, cfg.rope_ntk_beta, cfg.rope_ntk_alpha) == (32.0, 32.0, 1.0)
    assert cfg.initial_context_length == 4096 and cfg.rope_theta == 150000.0


@pytest.mark.parametrize(
    "cfg",
    [
        SMALL,
        # plain RoPE has no use for L0 and the NTK betas: keep them at what a reader assumes
        attrs.evolve(
            SMALL, rope_scaling_factor=1.0, initial_context_length=128, rope_ntk_beta=32.0
        ),
        attrs.evolve(SMALL, sliding_window=0, num_key_value_heads=1),
        PRESETS["gpt-oss-120b"],
        PRESETS["tiny"],
    ],
    ids=["yarn", "plain-rope", "no-window-mqa", "120b", "tiny"],
)
def test_hf_config_round_trips(cfg: ModelConfig):
    data = hf_config(cfg, dtype="float32", tokenizer="mind4-8k")
    back = model_config_from_hf(data)
    assert back.model == cfg
    assert back.tokenizer == "mind4-8k"
    assert data["rope_parameters"]["rope_theta"] == cfg.rope_theta == data["rope_theta"]
    windows = [cfg.window_of_layer(n) is not None for n in range(cfg.num_hidden_layers)]
    assert [t == "sliding_attention" for t in data["layer_types"]] == windows


def test_mxfp4_export_declares_quantization():
    data = hf_config(SMALL, mxfp4=True)
    assert data["quantization_config"]["quant_method"] == "mxfp4"
    assert model_config_from_hf(data).quantization == "mxfp4"


def _with(**changes):
    data = hf_config(SMALL)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def _rope(**changes):
    rope = dict(hf_config(SMALL)["rope_parameters"])
    rope.update(changes)
    return _with(rope_parameters=rope, rope_scaling=rope)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_rope(truncate=True), "truncate"),
        (_rope(rope_type="llama3"), "rope_type 'llama3'"),
        (_rope(attention_factor=2.0), "attention_factor"),
        (_rope(partial_rotary_factor=0.5), "partial_rotary_factor"),
        (_with(swiglu_alpha=1.0), "swiglu_alpha"),
        (_with(layer_types=["full_attention", "sliding_attention", "full_attention"]), "pattern"),
        (_with(layer_types=["sliding_attention"]), "one entry per layer"),
        (_with(layer_types=["chunked_attention"] * 3), "chunked_attention"),
        (_with(num_local_experts=None), "num_local_experts"),
        (_with(quantization_config={"quant_method": "gptq"}), "gptq"),
        (_with(num_key_value_heads=3), "num_key_value_heads"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_unsupported_configs_are_refused_clearly(data, needle):
    with pytest.raises(ConfigError, match=needle):
        model_config_from_hf(data, "x/config.json")


def test_absent_truncate_is_transformers_default_true_and_refused():
    data = hf_config(SMALL)
    for key in ("rope_parameters", "rope_scaling"):
        data[key] = {k: v for k, v in data[key].items() if k != "truncate"}
    with pytest.raises(ConfigError, match="truncate"):
        model_config_from_hf(data)


def test_all_full_attention_means_no_window():
    data = _with(layer_types=["full_attention"] * 3)
    assert model_config_from_hf(data).model.sliding_window == 0


def test_truncate_is_irrelevant_without_yarn_scaling():
    data = hf_config(attrs.evolve(SMALL, rope_scaling_factor=1.0))
    data["rope_parameters"] = {"rope_type": "default", "rope_theta": 500.0}
    data.pop("rope_scaling")
    assert model_config_from_hf(data).model.rope_scaling_factor == 1.0
