"""The core's NumPy sampler: the Sampler protocol over host arrays.

Any backend whose logits are NumPy arrays (``array_type = "numpy"``) can use it,
and the engine falls back to it when a backend brings no sampler of its own.
The semantics are those of :class:`mind4_core.protocols.Sampler`.
"""

from __future__ import annotations

import numpy as np

from .config import SamplingParams


def probabilities(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """The ``(B, V)`` distribution that :func:`sample` draws from."""
    logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    if params.greedy:
        out = np.zeros_like(logits)
        out[np.arange(len(logits)), logits.argmax(axis=-1)] = 1.0
        return out
    z = logits / params.temperature
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    order = np.argsort(-p, axis=-1, kind="stable")  # descending, lowest index first on ties
    sorted_p = np.take_along_axis(p, order, axis=-1)
    keep = np.ones_like(sorted_p, dtype=bool)
    if params.top_k > 0:
        keep[:, params.top_k :] = False
    if params.top_p < 1.0:
        kept = np.where(keep, sorted_p, 0.0)
        kept /= kept.sum(axis=-1, keepdims=True)
        before = np.cumsum(kept, axis=-1) - kept  # mass of the tokens ranked above
        keep &= before < params.top_p
    sorted_p = np.where(keep, sorted_p, 0.0)
    sorted_p /= sorted_p.sum(axis=-1, keepdims=True)
    out = np.empty_like(p)
    np.put_along_axis(out, order, sorted_p, axis=-1)
    return out


class NumpySampler:
    """Seeded sampling with :class:`numpy.random.Generator`."""

    def __init__(self, device: str = "cpu", dtype: str | None = None):
        self.device = device

    def generator(self, seed: int | None) -> np.random.Generator:
        return np.random.default_rng(seed)

    def probabilities(self, logits: np.ndarray, params: SamplingParams) -> np.ndarray:
        return probabilities(logits, params)

    def sample(
        self, logits: np.ndarray, params: SamplingParams, generator: np.random.Generator
    ) -> np.ndarray:
        logits = np.atleast_2d(np.asarray(logits))
        if params.greedy:
            return logits.argmax(axis=-1).astype(np.int64)
        p = probabilities(logits, params)
        u = generator.random(len(p))[:, None]
        cdf = np.cumsum(p, axis=-1)
        tokens = (cdf < u * cdf[:, -1:]).sum(axis=-1)
        return np.minimum(tokens, p.shape[-1] - 1).astype(np.int64)
