"""Named model shapes and random initialisation of checkpoints.

``tiny`` is for tests and first runs; ``small`` is the shared CPU benchmark
shape (64M parameters); ``gpt-oss-20b`` and ``gpt-oss-120b`` are the exact
shapes of the released models. :func:`init_checkpoint` writes a random model
tensor by tensor, so even the 120b shape needs one tensor's memory at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np

from .checkpoint import BF16, Expected, expected_tensors, to_bf16_bits, write_checkpoint
from .config import ModelConfig
from .errors import ConfigError
from .mxfp4 import BLOCK
from .safetensors_io import TensorSpec

#: gpt-oss-20b as released; gpt-oss-120b differs only in depth and expert count
_GPT_OSS_20B = ModelConfig(
    hidden_size=2880,
    num_hidden_layers=24,
    num_attention_heads=64,
    num_key_value_heads=8,
    head_dim=64,
    intermediate_size=2880,
    vocab_size=201088,
    num_experts=32,
    experts_per_token=4,
    initial_context_length=4096,
    max_context_length=131072,
    sliding_window=128,
    rope_theta=150000.0,
    rope_scaling_factor=32.0,
    rope_ntk_alpha=1.0,
    rope_ntk_beta=32.0,
    swiglu_limit=7.0,
)

PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=128,
        vocab_size=8192,
        num_experts=4,
        experts_per_token=2,
        initial_context_length=1024,
        max_context_length=1024,
        sliding_window=64,
        rope_theta=10000.0,
        rope_scaling_factor=1.0,
    ),
    "small": ModelConfig(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=512,
        vocab_size=8192,
        num_experts=8,
        experts_per_token=2,
        initial_context_length=4096,
        max_context_length=4096,
        sliding_window=128,
        rope_theta=150000.0,
        rope_scaling_factor=1.0,
    ),
    "gpt-oss-20b": _GPT_OSS_20B,
    "gpt-oss-120b": attrs.evolve(_GPT_OSS_20B, num_hidden_layers=36, num_experts=128),
}

#: the encoding each preset's vocabulary is sized for
PRESET_TOKENIZERS = {
    "tiny": "mind4-8k",
    "small": "mind4-8k",
    "gpt-oss-20b": "o200k_harmony",
    "gpt-oss-120b": "o200k_harmony",
}

EXPERT_FORMATS = ("bf16", "float32", "mxfp4")
DTYPES = ("bfloat16", "float32")


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}") from None


def parameter_count(cfg: ModelConfig, *, active: bool = False) -> int:
    """Parameters in the model, or those a token computes with (``active``: the top-k
    experts only, and not the embedding table, which is a lookup — the convention of
    the gpt-oss model card, 3.6B active for gpt-oss-20b)."""
    total = 0
    for exp in expected_tensors(cfg):
        n = int(np.prod(exp.shape))
        if active and exp.name == "embedding.weight":
            continue
        if active and ".mlp.mlp" in exp.name:
            n = n // cfg.num_experts * cfg.experts_per_token
        total += n
    return total


def _rng(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """float32 N(0, std²) drawn directly in float32 (no float64 temporary of the whole tensor)."""
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= np.float32(std)
    return out


def _init_value(exp: Expected, cfg: ModelConfig, rng: np.random.Generator) -> np.ndarray:
    """float32 initial value of one tensor (norm scales near 1, weights ~ N(0, 0.02))."""
    if exp.name.endswith("norm.scale"):
        return _normal(rng, exp.shape, 0.1) + np.float32(1.0)
    if exp.name.endswith("sinks"):
        return _normal(rng, exp.shape, 1.0)
    if exp.name.endswith("out.weight") or exp.name.endswith("mlp2_weight"):
        return _normal(rng, exp.shape, 0.02 / np.sqrt(2 * cfg.num_hidden_layers))
    return _normal(rng, exp.shape, 0.02)


def _random_mxfp4(
    shape: tuple[int, ...], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random MXFP4 codes with scale 2^-8 (values up to ±0.023, std ~0.01): fast at any size."""
    *lead, rows, cols = shape
    blocks = rng.integers(0, 256, size=(*lead, rows, cols // BLOCK, BLOCK // 2), dtype=np.uint8)
    scales = np.full((*lead, rows, cols // BLOCK), 127 - 8, dtype=np.uint8)
    return blocks, scales


def init_checkpoint(
    preset: str | ModelConfig,
    out_dir: str | Path,
    *,
    seed: int = 0,
    experts: str = "bf16",
    dtype: str = "bfloat16",
    tokenizer: str | None = None,
) -> Path:
    """Write a randomly initialised checkpoint; returns its directory.

    ``dtype`` is the storage of dense weights (norm scales stay float32);
    ``experts`` is ``bf16``, ``float32`` or ``mxfp4`` for the expert matrices.
    The same seed gives the same tensors whatever the storage formats.
    """
    if experts not in EXPERT_FORMATS:
        raise ConfigError(
            f"invalid experts format {experts!r}; allowed: {', '.join(EXPERT_FORMATS)}"
        )
    if dtype not in DTYPES:
        raise ConfigError(f"invalid dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    if isinstance(preset, str):
        tokenizer = tokenizer or PRESET_TOKENIZERS.get(preset)
        cfg = get_preset(preset)
    else:
        cfg = preset
    if experts == "mxfp4" and (cfg.hidden_size % BLOCK or cfg.intermediate_size % BLOCK):
        raise ConfigError(
            f"MXFP4 experts need hidden_size and intermediate_size divisible by {BLOCK}, got "
            f"{cfg.hidden_size} and {cfg.intermediate_size}"
        )

    specs: list[TensorSpec] = []
    for exp in expected_tensors(cfg):
        if exp.mxfp4_ok and experts == "mxfp4":
            *lead, rows, cols = exp.shape
            specs.append(
                TensorSpec(f"{exp.name}.blocks", "U8", (*lead, rows, cols // BLOCK, BLOCK // 2))
            )
            specs.append(TensorSpec(f"{exp.name}.scales", "U8", (*lead, rows, cols // BLOCK)))
        elif exp.name.endswith("norm.scale") or (exp.mxfp4_ok and experts == "float32"):
            specs.append(TensorSpec(exp.name, "F32", exp.shape))
        else:
            specs.append(TensorSpec(exp.name, "BF16" if dtype == "bfloat16" else "F32", exp.shape))

    def tensors() -> Iterator[tuple[str, object]]:
        by_name = {s.name: s for s in specs}
        for exp in expected_tensors(cfg):
            rng = _rng(seed, exp.name)
            if exp.mxfp4_ok and experts == "mxfp4":
                blocks, scales = _random_mxfp4(exp.shape, rng)
                yield f"{exp.name}.blocks", blocks
                yield f"{exp.name}.scales", scales
                continue
            value = _init_value(exp, cfg, rng)
            if by_name[exp.name].dtype == "BF16":
                yield exp.name, BF16(to_bf16_bits(value))
            else:
                yield exp.name, value

    return write_checkpoint(out_dir, cfg, tensors(), specs=specs, tokenizer=tokenizer)
