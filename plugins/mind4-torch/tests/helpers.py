"""Test helpers, independent of the model code: configs, random canonical weights
(NumPy), checkpoints written with the core's writer, and the error metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mind4_specs import oracle

from mind4_core.checkpoint import BF16, CanonicalLoader, to_bf16_bits, write_checkpoint
from mind4_core.config import ModelConfig
from mind4_core.mxfp4 import encode

rel_err = oracle.relative_error


def config(**overrides) -> ModelConfig:
    """A tiny model with GQA, a sliding window shorter than the test sequences, and YaRN."""
    fields = dict(
        hidden_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=32,
        vocab_size=97,
        num_experts=4,
        experts_per_token=2,
        initial_context_length=64,
        max_context_length=256,
        sliding_window=5,
        rope_theta=10000.0,
        rope_scaling_factor=4.0,
        rope_ntk_alpha=1.0,
        rope_ntk_beta=8.0,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def random_weights(cfg: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Canonical name -> float32 array. Scales chosen so attention, sinks, routing and
    the SwiGLU clamp all matter (activations reach the clamp limit now and then)."""
    rng = np.random.default_rng(seed)
    H, V, E, I = cfg.hidden_size, cfg.vocab_size, cfg.num_experts, cfg.intermediate_size  # noqa: E741
    Hq, D = cfg.num_attention_heads, cfg.head_dim

    def normal(*shape, std=1.0):
        return (std * rng.standard_normal(shape)).astype(np.float32)

    w = {"embedding.weight": normal(V, H)}
    for n in range(cfg.num_hidden_layers):
        a, m = f"block.{n}.attn.", f"block.{n}.mlp."
        w[a + "norm.scale"] = 1 + normal(H, std=0.2)
        w[a + "qkv.weight"] = normal(cfg.qkv_dim, H, std=0.6 / np.sqrt(H))
        w[a + "qkv.bias"] = normal(cfg.qkv_dim, std=0.1)
        w[a + "sinks"] = normal(Hq)
        w[a + "out.weight"] = normal(H, Hq * D, std=0.5 / np.sqrt(Hq * D))
        w[a + "out.bias"] = normal(H, std=0.1)
        w[m + "norm.scale"] = 1 + normal(H, std=0.2)
        w[m + "gate.weight"] = normal(E, H, std=1.0 / np.sqrt(H))
        w[m + "gate.bias"] = normal(E, std=0.1)
        w[m + "mlp1_weight"] = normal(E, 2 * I, H, std=3.0 / np.sqrt(H))
        w[m + "mlp1_bias"] = normal(E, 2 * I, std=0.1)
        w[m + "mlp2_weight"] = normal(E, H, I, std=0.5 / np.sqrt(I))
        w[m + "mlp2_bias"] = normal(E, H, std=0.1)
    w["norm.scale"] = 1 + normal(H, std=0.2)
    w["unembedding.weight"] = normal(V, H, std=1.0 / np.sqrt(H))
    return w


def write(
    path: Path, cfg: ModelConfig, weights: dict[str, np.ndarray], *, storage: str = "float32"
):
    """Write a checkpoint and open it with the core's loader.

    ``storage``: ``float32``; ``bf16`` (norm scales stay float32); ``mxfp4`` (expert
    matrices as MXFP4, the rest float32). Returns ``(checkpoint, weights as stored,
    decoded to float32)`` -- the exact values the backend must use.
    """
    stored: dict[str, np.ndarray] = {}
    tensors = []
    for name, value in weights.items():
        expert = name.endswith(("mlp1_weight", "mlp2_weight"))
        if storage == "mxfp4" and expert:
            blocks, scales = encode(value)
            tensors += [(name + ".blocks", blocks), (name + ".scales", scales)]
            stored[name] = oracle.mxfp4_decode(blocks, scales).astype(np.float32)
        elif storage == "bf16" and not name.endswith("norm.scale"):
            bits = to_bf16_bits(value)
            tensors.append((name, BF16(bits)))
            stored[name] = (bits.astype(np.uint32) << 16).view(np.float32)
        else:
            tensors.append((name, value))
            stored[name] = value
    write_checkpoint(path, cfg, tensors)
    return CanonicalLoader().open(path), stored
