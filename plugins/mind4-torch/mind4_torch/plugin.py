"""mind4-torch's hook implementations (entry point ``mind4: torch``).

This module must stay light: it imports no torch. Records name their factories
as ``"module:attribute"`` strings that the core resolves only when used.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

from mind4_core import hookimpl
from mind4_core.records import (
    AttentionRecord,
    BackendRecord,
    CliCommandRecord,
    MoERoutingRecord,
    SamplerRecord,
)

MIND4_PLUGIN_API = 1

DEVICES = frozenset({"cpu", "cuda", "mps"})
DTYPES = frozenset({"float32", "bfloat16", "float16"})
MIN_TORCH = (2, 1)


def availability() -> str | None:
    """``None`` when PyTorch (>= 2.1) is installed, else what to do (imports no torch)."""
    if importlib.util.find_spec("torch") is None:
        return (
            "PyTorch is not installed; install it with `pip install 'torch>=2.1'` (see pytorch.org)"
        )
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None  # a source build without metadata: trust it
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    if tuple(parts) < MIN_TORCH:
        return f"PyTorch {version} is too old for mind4-torch; upgrade to torch>=2.1"
    return None


@hookimpl
def mind4_attention():
    return [
        AttentionRecord(
            name="torch",
            factory="mind4_torch.attention:TorchAttention",
            devices=DEVICES,
            dtypes=DTYPES,
            features={"sinks", "sliding_window", "offset", "per_row_offset", "gqa"},
            description="causal GQA attention with sinks and window, float32 softmax (PyTorch)",
        )
    ]


@hookimpl
def mind4_moe_routing():
    return [
        MoERoutingRecord(
            name="torch",
            factory="mind4_torch.moe:TorchMoE",
            devices=DEVICES,
            dtypes=DTYPES,
            features={"experts", "mxfp4"},
            description="top-k routing + grouped expert compute, MXFP4 experts dequantised per expert",
        )
    ]


@hookimpl
def mind4_samplers():
    return [
        SamplerRecord(
            name="torch",
            factory="mind4_torch.sampler:TorchSampler",
            devices=DEVICES,
            dtypes=DTYPES,
            features={"temperature", "top_k", "top_p", "probabilities"},
            description="seeded temperature / top-k / top-p sampling with torch.Generator",
        )
    ]


@hookimpl
def mind4_backends():
    from .parallel_plugin import TP_BACKEND  # tensor parallelism under torchrun (imports no torch)

    return [
        BackendRecord(
            name="torch",
            factory="mind4_torch.runtime:factory",
            priority=10,
            devices=DEVICES,
            dtypes=DTYPES,
            features={"kv_cache", "batched_offsets", "mxfp4", "training"},
            components={"attention": "torch", "moe_routing": "torch", "sampler": "torch"},
            default_dtype={"cpu": "float32", "cuda": "bfloat16", "mps": "float16"},
            tolerances={"float32": 1e-5, "bfloat16": 3e-2, "float16": 5e-3},
            availability="mind4_torch.plugin:availability",
            description="the reference PyTorch backend: KV cache, batching, CPU/CUDA/MPS, training",
        ),
        TP_BACKEND,
    ]


@hookimpl
def mind4_cli_commands():
    return [
        CliCommandRecord(
            name="train",
            factory="mind4_torch.train.cli:train_command",
            short_help="Train a model from a YAML config (config/train.yaml); --resume continues.",
        )
    ]
