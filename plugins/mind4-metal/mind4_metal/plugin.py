"""mind4-metal's hook implementations (entry point ``mind4: metal``).

Light by design: it imports neither torch nor the compiled module; records name
their factories as ``"module:attribute"`` strings resolved only when used.
"""

from __future__ import annotations

import importlib.util

from mind4_core import hookimpl
from mind4_core.records import BackendRecord, SamplerRecord

MIND4_PLUGIN_API = 1


def availability() -> str | None:
    """``None`` when the compiled module is present, else what to do."""
    try:
        found = importlib.util.find_spec("mind4_metal._native") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (
        "the mind4-metal native module is not built; install the plugin with "
        "`pip install plugins/mind4-metal` (CMake >= 3.20 and a C11 compiler), or run "
        "`python plugins/mind4-metal/build_ffi.py --inplace` in a checkout"
    )


@hookimpl
def mind4_samplers():
    return [
        SamplerRecord(
            name="metal",
            factory="mind4_metal.sampler:MetalSampler",
            array_type="numpy",
            devices={"cpu"},
            dtypes={"float32", "bfloat16"},
            features={"temperature", "top_k", "top_p", "probabilities"},
            description="temperature / top-k / top-p in C (metal_native), seeded xoshiro256**",
        )
    ]


@hookimpl
def mind4_backends():
    return [
        BackendRecord(
            name="metal",
            factory="mind4_metal.runtime:factory",
            array_type="numpy",
            priority=5,
            devices={"cpu"},
            dtypes={"float32", "bfloat16"},
            features={"kv_cache", "batched_offsets", "mxfp4"},
            components={"sampler": "metal"},
            default_dtype={"cpu": "float32"},
            tolerances={"float32": 1e-5, "bfloat16": 3e-2},
            availability="mind4_metal.plugin:availability",
            description=(
                "metal_native, a C11 engine with its own kernels (threads + AVX2 on x86); float32 "
                "compute over float32/bfloat16/MXFP4 weights loaded and validated in C. Metal "
                "kernels exist only on Apple builds."
            ),
        )
    ]
