"""Parity with ``transformers``' own ``GptOssForCausalLM`` (a test-only dependency).

Tiny random models are created and saved by ``transformers`` in the test; Mind
4 loads them and must give the same logits in float32: through the NumPy
float64 oracle (which proves the name/orientation/config mapping) and through
the torch backend. Exports written by ``mind4 convert --to hf`` must load in
``transformers`` with the same logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from mind4_specs import oracle  # noqa: E402

from mind4_core.checkpoint import open_checkpoint  # noqa: E402
from mind4_core.convert import convert_checkpoint  # noqa: E402

#: float32 forward passes of the same function agree to ~1e-7 relative; 1e-5 leaves room
FLOAT32_TOL = 1e-5

BASE = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    num_local_experts=4,
    num_experts_per_tok=2,
    sliding_window=4,
    max_position_embeddings=256,
)
YARN = {
    "rope_type": "yarn",
    "rope_theta": 500.0,
    "factor": 4.0,
    "beta_fast": 8.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 64,
}
CONFIGS = {
    "gqa-yarn-window": dict(BASE, rope_parameters=YARN),
    "mha-plain-rope-full": dict(
        BASE,
        num_key_value_heads=4,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        layer_types=["full_attention"] * 3,
    ),
    "mqa-yarn-window3": dict(
        BASE,
        num_key_value_heads=1,
        sliding_window=3,
        num_hidden_layers=4,
        num_experts_per_tok=3,
        swiglu_limit=1.5,
        rms_norm_eps=1e-4,
        rope_parameters=dict(YARN, factor=8.0, beta_fast=16.0, beta_slow=2.0),
    ),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")


def _random_hf_model(kwargs: dict, seed: int = 0):
    """A GptOssForCausalLM with every parameter random (norms near 1, biases non-zero)."""
    torch.manual_seed(seed)
    model = transformers.GptOssForCausalLM(transformers.GptOssConfig(**kwargs)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("sinks") or "router" in name:
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return model


def _hf_logits(model, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(tokens)).logits.double().numpy()


def _oracle_logits(path: Path, tokens: np.ndarray) -> np.ndarray:
    ckpt = open_checkpoint(path)
    weights = {n: ckpt.float32(n) for n in ckpt.names()}
    return oracle.forward(weights, ckpt.config, tokens)


def _torch_backend_logits(path: Path, tokens: np.ndarray) -> np.ndarray:
    from mind4_core.plugins import get_manager

    if "torch" not in get_manager().names("backend"):
        pytest.skip("the mind4-torch backend is not installed")
    from mind4_core.engine import load

    model = load(str(path), backend="torch", device="cpu", dtype="float32")
    return np.asarray(model.logits(tokens), dtype=np.float64)


def _tokens(vocab: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=(2, 37))


@pytest.mark.parametrize("name", CONFIGS)
def test_transformers_checkpoint_loads_with_the_same_logits(tmp_path, name):
    model = _random_hf_model(CONFIGS[name])
    model.save_pretrained(tmp_path)
    assert open_checkpoint(tmp_path).format == "hf"
    tokens = _tokens(BASE["vocab_size"])
    expected = _hf_logits(model, tokens)
    assert oracle.relative_error(_oracle_logits(tmp_path, tokens), expected) < FLOAT32_TOL
    assert oracle.relative_error(_torch_backend_logits(tmp_path, tokens), expected) < FLOAT32_TOL


def test_bf16_sharded_transformers_checkpoint(tmp_path):
    model = _random_hf_model(CONFIGS["gqa-yarn-window"], seed=3).to(torch.bfloat16)
    model.save_pretrained(tmp_path, max_shard_size="60KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ckpt = open_checkpoint(tmp_path)
    assert ckpt.dtype("block.0.mlp.mlp1_weight") == "BF16"
    # bf16 widens to float32 exactly, so transformers in float32 is the same function
    widened = transformers.GptOssForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    tokens = _tokens(BASE["vocab_size"], seed=2)
    expected = _hf_logits(widened.eval(), tokens)
    assert oracle.relative_error(_oracle_logits(tmp_path, tokens), expected) < FLOAT32_TOL
    assert oracle.relative_error(_torch_backend_logits(tmp_path, tokens), expected) < FLOAT32_TOL


@pytest.mark.parametrize("experts", ["float32", "bf16", "mxfp4"])
def test_export_to_hf_runs_in_transformers_with_the_same_logits(make_canonical, tmp_path, experts):
    src = make_canonical(experts=experts, dtype="float32")
    convert_checkpoint(src, tmp_path / "hf", to="hf")
    kwargs = {"dtype": torch.float32}
    if experts == "mxfp4":  # transformers runs MXFP4 on CPU by dequantising it
        kwargs["quantization_config"] = transformers.Mxfp4Config(dequantize=True)
    model = transformers.GptOssForCausalLM.from_pretrained(tmp_path / "hf", **kwargs).eval()
    tokens = _tokens(96, seed=4)
    err = oracle.relative_error(_hf_logits(model, tokens), _oracle_logits(src, tokens))
    assert err < FLOAT32_TOL


def test_quantised_export_runs_in_transformers(make_canonical, tmp_path):
    """--experts mxfp4 on export: transformers computes the model Mind 4 reads back."""
    src = make_canonical(experts="float32", dtype="float32")
    report = convert_checkpoint(src, tmp_path / "hf", to="hf", experts="mxfp4")
    assert report.quantisation
    model = transformers.GptOssForCausalLM.from_pretrained(
        tmp_path / "hf",
        dtype=torch.float32,
        quantization_config=transformers.Mxfp4Config(dequantize=True),
    ).eval()
    tokens = _tokens(96, seed=5)
    expected = _hf_logits(model, tokens)
    assert oracle.relative_error(_oracle_logits(tmp_path / "hf", tokens), expected) < FLOAT32_TOL
    # and quantisation changed the model measurably
    assert oracle.relative_error(_oracle_logits(src, tokens), expected) > 1e-3
