"""The small random models the model-level specs run on.

:data:`SPEC_CONFIG` is tiny but exercises everything: GQA, a sliding window
shorter than the test sequences (layer 0) next to full attention (layer 1),
YaRN with all three regions of its ramp, top-2 of 4 experts, and MXFP4-sized
expert matrices. :func:`write_spec_checkpoint` fills it with weights scaled so
that the model's behaviour is *sensitive*: attention is sharp (a wrong mask or
RoPE changes the output a lot), router logits are well separated (rounding
does not flip the chosen experts), some SwiGLU inputs pass the clamp, and the
logits are spread out (greedy choices are not near-ties).
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np

from mind4_core.checkpoint import BF16, write_checkpoint
from mind4_core.config import ModelConfig

from . import oracle

SPEC_CONFIG = ModelConfig(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=32,
    vocab_size=128,
    num_experts=4,
    experts_per_token=2,
    initial_context_length=32,
    max_context_length=64,
    sliding_window=5,
    rope_theta=10000.0,
    rope_scaling_factor=4.0,
    swiglu_limit=7.0,
)

#: standard deviation of each kind of tensor (see the module docstring)
SCALES = {
    "embedding.weight": 1.0,
    "qkv.weight": 0.15,
    "qkv.bias": 0.1,
    "sinks": 1.0,
    "out.weight": 0.12,
    "out.bias": 0.1,
    "gate.weight": 0.3,
    "gate.bias": 0.5,
    "mlp1_weight": 0.5,
    "mlp1_bias": 0.5,
    "mlp2_weight": 0.06,
    "mlp2_bias": 0.1,
    "unembedding.weight": 0.4,
}
EXPERT_WEIGHTS = ("mlp1_weight", "mlp2_weight")


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as float32.

    Written here rather than borrowed from ``mind4_core.checkpoint``: the weights
    specs check the core's reading of these values, so they must not share its code."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.view(np.float32)


def shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Canonical tensor names and shapes, in file order, from REFERENCE.md (not from
    ``mind4_core.checkpoint.expected_tensors``, which the weights specs check)."""
    H, V, E = config.hidden_size, config.vocab_size, config.num_experts
    Hq, D, F = config.num_attention_heads, config.head_dim, config.intermediate_size
    out = {"embedding.weight": (V, H)}
    for n in range(config.num_hidden_layers):
        a, m = f"block.{n}.attn.", f"block.{n}.mlp."
        out |= {
            a + "norm.scale": (H,),
            a + "qkv.weight": (config.qkv_dim, H),
            a + "qkv.bias": (config.qkv_dim,),
            a + "sinks": (Hq,),
            a + "out.weight": (H, Hq * D),
            a + "out.bias": (H,),
            m + "norm.scale": (H,),
            m + "gate.weight": (E, H),
            m + "gate.bias": (E,),
            m + "mlp1_weight": (E, 2 * F, H),
            m + "mlp1_bias": (E, 2 * F),
            m + "mlp2_weight": (E, H, F),
            m + "mlp2_bias": (E, H),
        }
    return out | {"norm.scale": (H,), "unembedding.weight": (V, H)}


def random_tensors(config: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """float32 tensors for every canonical name (norm scales near 1, the rest ~ N(0, SCALES))."""
    tensors = {}
    for name, shape in shapes(config).items():
        if name.endswith("norm.scale"):
            tensors[name] = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            kind = (
                name
                if name in SCALES
                else name.split(".", 2)[-1].removeprefix("attn.").removeprefix("mlp.")
            )
            tensors[name] = SCALES[kind] * rng.standard_normal(shape)
    return {name: value.astype(np.float32) for name, value in tensors.items()}


@attrs.frozen
class SpecCheckpoint:
    """A written checkpoint and the exact float values it holds (what the oracle uses)."""

    path: Path
    config: ModelConfig
    weights: dict[str, np.ndarray]  # float64, as stored (bf16-rounded, MXFP4-decoded)
    stored: dict[str, np.ndarray]  # raw arrays written: float32, uint16 bf16 bits, or uint8
    dtype: str
    experts: str


def write_spec_checkpoint(
    path: str | Path,
    config: ModelConfig = SPEC_CONFIG,
    *,
    seed: int = 0,
    dtype: str = "bfloat16",
    experts: str = "bf16",
) -> SpecCheckpoint:
    """Write a random canonical checkpoint: ``dtype`` ``bfloat16``/``float32`` for dense
    tensors (norm scales stay float32), ``experts`` ``bf16``/``float32``/``mxfp4``."""
    values = random_tensors(config, np.random.default_rng(seed))
    weights: dict[str, np.ndarray] = {}
    stored: dict[str, np.ndarray] = {}
    items = []
    for name, value in values.items():
        expert = name.endswith(EXPERT_WEIGHTS)
        if expert and experts == "mxfp4":
            blocks, scales = oracle.mxfp4_encode(value)
            weights[name] = oracle.mxfp4_decode(blocks, scales)
            stored[name + ".blocks"], stored[name + ".scales"] = blocks, scales
            items += [(name + ".blocks", blocks), (name + ".scales", scales)]
            continue
        as_f32 = (
            name.endswith("norm.scale")
            or (expert and experts == "float32")
            or (not expert and dtype == "float32")
        )
        if as_f32:
            weights[name] = value.astype(np.float64)
            stored[name] = value
            items.append((name, value))
        else:
            rounded = bf16_round(value)
            bits = rounded.view(np.uint32) >> 16
            weights[name] = rounded.astype(np.float64)
            stored[name] = bits.astype(np.uint16)
            items.append((name, BF16(stored[name])))
    write_checkpoint(path, config, items)
    return SpecCheckpoint(Path(path), config, weights, stored, dtype, experts)
