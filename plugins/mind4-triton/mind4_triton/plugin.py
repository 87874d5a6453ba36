"""mind4-triton's hook implementations (entry point ``mind4: triton``).

Imports neither torch nor triton: records name their factories lazily. The
components and the backend run on CUDA GPUs; with ``TRITON_INTERPRET=1``
(Triton's interpreter) they also declare the CPU, so the conformance specs
run in CI at small shapes.
"""

from __future__ import annotations

import importlib.util
import os

from mind4_core import hookimpl
from mind4_core.records import AttentionRecord, BackendRecord, MoERoutingRecord, SamplerRecord

MIND4_PLUGIN_API = 1

DTYPES = frozenset({"float32", "bfloat16", "float16"})
#: Hopper/Ampere or newer: bf16 tensor cores
MIN_CAPABILITY = (8, 0)
OTHER_BACKENDS = "use `--backend torch` (CPU, CUDA or MPS) instead"


def interpreted() -> bool:
    """Whether Triton runs its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def devices() -> frozenset[str]:
    return frozenset({"cuda", "cpu"}) if interpreted() else frozenset({"cuda"})


def dtypes() -> frozenset[str]:
    """Triton's interpreter computes bfloat16 ``tl.dot`` wrongly: not declared there."""
    return DTYPES - {"bfloat16"} if interpreted() else DTYPES


def availability() -> str | None:
    """``None`` when the Triton backend can run here, else what is missing and what
    to use instead (never raises: the CLI prints the sentence)."""
    missing = [m for m in ("torch", "triton") if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed "
            f"(pip install {' '.join(missing)}); {OTHER_BACKENDS}"
        )
    if interpreted():
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            return (
                f"no CUDA GPU is visible (torch {torch.__version__}, {build}); the Triton backend "
                f"needs an NVIDIA GPU; {OTHER_BACKENDS}"
            )
        capability = torch.cuda.get_device_capability()
        if capability < MIN_CAPABILITY:
            name = torch.cuda.get_device_name()
            return (
                f"GPU {name} has compute capability {capability[0]}.{capability[1]}; the Triton "
                f"backend needs {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer (Ampere, Hopper); "
                f"{OTHER_BACKENDS}"
            )
    except Exception as exc:  # noqa: BLE001 - a broken driver is a reason, not a crash
        return f"cannot query the CUDA GPU ({type(exc).__name__}: {exc}); {OTHER_BACKENDS}"
    return None


@hookimpl
def mind4_attention():
    return [
        AttentionRecord(
            name="triton",
            factory="mind4_triton.components:TritonAttention",
            devices=devices(),
            dtypes=dtypes(),
            features={"sinks", "sliding_window", "offset", "per_row_offset", "gqa", "split_k"},
            description="flash attention kernel: GQA without repeated K/V, sinks, window, split-K decode",
        )
    ]


@hookimpl
def mind4_moe_routing():
    return [
        MoERoutingRecord(
            name="triton",
            factory="mind4_triton.components:TritonMoE",
            devices=devices(),
            dtypes=dtypes(),
            features={"experts", "mxfp4"},
            description="top-k routing kernel + grouped expert kernels reading MXFP4 directly, fused SwiGLU",
        )
    ]


@hookimpl
def mind4_samplers():
    return [
        SamplerRecord(
            name="triton",
            factory="mind4_triton.components:TritonSampler",
            devices=devices(),
            dtypes=dtypes(),
            features={"temperature", "top_k", "top_p", "probabilities"},
            description="seeded temperature / top-k / top-p sampling kernel; tokens stay on the GPU",
        )
    ]


@hookimpl
def mind4_backends():
    return [
        BackendRecord(
            name="triton",
            factory="mind4_triton.runtime:factory",
            priority=5,
            devices=devices(),
            dtypes=dtypes(),
            features={"kv_cache", "batched_offsets", "mxfp4", "cuda_graphs"},
            components={"attention": "triton", "moe_routing": "triton", "sampler": "triton"},
            default_dtype={"cuda": "bfloat16", "cpu": "float32"},
            tolerances={"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2},
            availability="mind4_triton.plugin:availability",
            description="fused Triton kernels on CUDA GPUs: MXFP4 experts kept packed, CUDA-graph decode",
        )
    ]
