"""The ``metal`` sampler component: temperature / top-k / top-p in C over NumPy
logits (:class:`mind4_core.protocols.Sampler`), seeded xoshiro256** streams."""

from __future__ import annotations

import os

import numpy as np

from mind4_core.config import SamplingParams
from mind4_core.errors import SamplingError

from ._lib import check, ffi, lib


class MetalGenerator:
    """A C sampler handle holding the random stream."""

    def __init__(self, seed: int | None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise SamplingError(
                f"invalid sampling field 'seed': got {seed!r}; expected an integer or null"
            )
        out = ffi.new("mind4_sampler**")
        check(lib.mind4_sampler_create(out), "creating a sampler")
        self.handle = ffi.gc(out[0], lib.mind4_sampler_release)
        value = (
            int.from_bytes(os.urandom(8), "little")
            if seed is None
            else int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        )
        check(lib.mind4_sampler_set_seed(self.handle, value), "seeding the sampler")

    def set_params(self, params: SamplingParams) -> None:
        check(
            lib.mind4_sampler_set_params(
                self.handle, float(params.temperature), int(params.top_k), float(params.top_p)
            ),
            "sampling parameters",
            sampling=True,
        )


def _logits(logits) -> np.ndarray:
    array = np.asarray(logits)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[-1] == 0:
        raise SamplingError(f"sampler: logits must have shape (B, V), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise SamplingError(f"sampler: logits must be floating point, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


class MetalSampler:
    """``generator(seed)``, ``sample(logits (B, V), params, generator)`` -> int64 (B,),
    ``probabilities(logits, params)`` -> (B, V) float32."""

    def __init__(self, device=None, dtype=None):
        self.device = "cpu"
        self.dtype = dtype or "float32"  # the dtype the engine resolved for this load

    def generator(self, seed: int | None) -> MetalGenerator:
        return MetalGenerator(seed)

    def sample(
        self, logits, params: SamplingParams, generator: MetalGenerator | None
    ) -> np.ndarray:
        array = _logits(logits)
        generator = generator if generator is not None else MetalGenerator(params.seed)
        generator.set_params(params)
        out = np.empty(array.shape[0], dtype=np.int64)
        token = ffi.new("uint32_t*")
        for b in range(array.shape[0]):
            check(
                lib.mind4_sampler_sample(
                    generator.handle, ffi.from_buffer("float[]", array[b]), array.shape[1], token
                ),
                f"sampling row {b}",
                sampling=True,
            )
            out[b] = token[0]
        return out

    def probabilities(self, logits, params: SamplingParams) -> np.ndarray:
        array = _logits(logits)
        generator = MetalGenerator(0)
        generator.set_params(params)
        out = np.empty(array.shape, dtype=np.float32)
        for b in range(array.shape[0]):
            check(
                lib.mind4_sampler_probabilities(
                    generator.handle,
                    ffi.from_buffer("float[]", array[b]),
                    array.shape[1],
                    ffi.from_buffer("float[]", out[b]),
                ),
                f"probabilities of row {b}",
                sampling=True,
            )
        return out
