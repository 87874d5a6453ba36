"""On-GPU sampling: temperature, top-k, top-p, seeded; one token per row.

Semantics are the :class:`mind4_core.protocols.Sampler` docstring (and the
oracle's :func:`sampling_probabilities`): temperature 0 is argmax with the
lowest index on ties; otherwise ``p = softmax(logits / T)``, top-k keeps the k
most probable tokens (lower index first on ties) and renormalises, then top-p
keeps, in descending order, each token whose preceding cumulative mass is
``< top_p``, and renormalises.

How: when top-k or top-p is on, a stable descending sort (``torch.sort``)
orders the candidates; then one program per row (:func:`_sample_kernel`)
walks the candidates in that order in chunks (several rows per program
when the vocabulary is small):

1. ``m`` = the largest logit, ``Z = Σ exp((v - m)/T)`` over the candidates;
2. with top-p: the kept prefix is every candidate whose preceding mass is
   ``< top_p · Z``; ``Zp`` is its mass;
3. draws ``u ~ U[0, 1)`` (Philox, from a per-call seed) and returns the first
   kept candidate whose cumulative mass exceeds ``u · Zp``.

Plain temperature sampling needs no sort: inverse-CDF sampling in vocabulary
order draws from the same distribution. The result stays on the GPU until the
caller asks for it, so a decode loop can feed it back without a host copy.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import numpy as np
import torch
import triton
import triton.language as tl

from mind4_core.config import SamplingParams

#: 'no position yet' in the running minimum over positions
NONE = tl.constexpr(2147483647)


@triton.jit
def _sample_kernel(
    Vals,
    Idx,
    Out,
    B,
    N,
    stride_v,
    stride_i,
    inv_temp,
    top_p,
    seed,
    GREEDY: tl.constexpr,
    TOP_P: tl.constexpr,
    HAS_IDX: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """``BLOCK_R`` rows per program; each row's running values are vectors ``(BLOCK_R,)``."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < B
    vals = Vals + rows.to(tl.int64)[:, None] * stride_v  # (BLOCK_R, 1) row pointers
    lane = tl.arange(0, BLOCK)[None, :]

    # 1. the largest logit of each row
    m = tl.full((BLOCK_R,), float("-inf"), tl.float32)
    for s in range(0, N, BLOCK):
        ok = row_ok[:, None] & (s + lane < N)
        v = tl.load(vals + s + lane, mask=ok, other=float("-inf")).to(tl.float32)
        m = tl.maximum(m, tl.max(v, axis=1))
    m = tl.where(row_ok, m, 0.0)
    if GREEDY:  # the first position holding the maximum
        chosen = tl.full((BLOCK_R,), NONE, tl.int32)
        for s in range(0, N, BLOCK):
            ok = row_ok[:, None] & (s + lane < N)
            v = tl.load(vals + s + lane, mask=ok, other=float("-inf")).to(tl.float32)
            at = tl.where((v == m[:, None]) & ok, s + lane, NONE)
            chosen = tl.minimum(chosen, tl.min(at, axis=1))
    else:
        z = tl.zeros((BLOCK_R,), tl.float32)  # softmax normaliser
        for s in range(0, N, BLOCK):
            ok = row_ok[:, None] & (s + lane < N)
            v = tl.load(vals + s + lane, mask=ok, other=float("-inf")).to(tl.float32)
            z += tl.sum(tl.exp((v - m[:, None]) * inv_temp), axis=1)

        # 2. top-p: the kept prefix (candidates are in descending order) and its mass
        kept_n = tl.zeros((BLOCK_R,), tl.int32) + N
        kept_z = z
        if TOP_P:
            cutoff = top_p * z
            before = tl.zeros((BLOCK_R,), tl.float32)  # mass of the candidates walked so far
            kept_z = tl.zeros((BLOCK_R,), tl.float32)
            kept_n = tl.zeros((BLOCK_R,), tl.int32)
            for s in range(0, N, BLOCK):
                ok = row_ok[:, None] & (s + lane < N)
                v = tl.load(vals + s + lane, mask=ok, other=float("-inf")).to(tl.float32)
                p = tl.exp((v - m[:, None]) * inv_temp)
                keep = ok & ((before[:, None] + tl.cumsum(p, axis=1) - p) < cutoff[:, None])
                kept_z += tl.sum(tl.where(keep, p, 0.0), axis=1)
                kept_n += tl.sum(keep.to(tl.int32), axis=1)
                before += tl.sum(p, axis=1)

        # 3. inverse CDF: the first kept candidate whose cumulative mass exceeds u * kept_z
        target = tl.rand(seed, rows) * kept_z
        before = tl.zeros((BLOCK_R,), tl.float32)
        chosen = tl.full((BLOCK_R,), NONE, tl.int32)
        for s in range(0, N, BLOCK):
            ok = row_ok[:, None] & (s + lane < N)
            v = tl.load(vals + s + lane, mask=ok, other=float("-inf")).to(tl.float32)
            p = tl.exp((v - m[:, None]) * inv_temp)
            hit = ((before[:, None] + tl.cumsum(p, axis=1)) > target[:, None]) & (
                s + lane < kept_n[:, None]
            )
            chosen = tl.minimum(chosen, tl.min(tl.where(hit, s + lane, NONE), axis=1))
            before += tl.sum(p, axis=1)
        chosen = tl.minimum(chosen, kept_n - 1)  # u * Z rounding past the last kept one

    chosen = tl.where(row_ok, chosen, 0)
    if HAS_IDX:
        token = tl.load(Idx + rows.to(tl.int64) * stride_i + chosen, mask=row_ok, other=0)
    else:
        token = chosen
    tl.store(Out + rows, token.to(tl.int64), mask=row_ok)


@attrs.define
class SamplerState:
    """Seeded random state: each :meth:`TritonSampler.sample` call uses a fresh
    Philox seed derived from ``seed`` and the number of calls so far."""

    seed: int
    calls: int = 0

    def next_seed(self) -> int:
        self.calls += 1
        mixed = (self.seed * 0x9E3779B1 + self.calls * 0x85EBCA77) & 0xFFFFFFFF
        return (mixed ^ (mixed >> 15)) & 0x7FFFFFFF  # a non-negative int32 Philox seed


def sample_tokens(
    logits: torch.Tensor, params: SamplingParams, state: SamplerState
) -> torch.Tensor:
    """``logits (B, V)`` -> ``int64 (B,)`` token ids on the logits' device."""
    B, V = logits.shape
    out = torch.empty(B, device=logits.device, dtype=torch.int64)
    greedy = params.temperature == 0
    use_top_k = not greedy and 0 < params.top_k < V
    use_top_p = not greedy and params.top_p < 1.0
    vals, idx, n = logits, None, V
    if use_top_k or use_top_p:
        vals, idx = torch.sort(logits, dim=-1, descending=True, stable=True)
        if use_top_k:
            n = params.top_k
    BLOCK = min(4096, triton.next_power_of_2(n))
    BLOCK_R = max(1, min(triton.next_power_of_2(B), 8192 // BLOCK, 64))  # small vocabularies
    # fmt: off
    _sample_kernel[(triton.cdiv(B, BLOCK_R),)](
        vals, idx if idx is not None else vals, out, B, n,
        vals.stride(0), idx.stride(0) if idx is not None else 0,
        0.0 if greedy else 1.0 / params.temperature, float(params.top_p),
        0 if greedy else state.next_seed(),
        GREEDY=greedy, TOP_P=use_top_p, HAS_IDX=idx is not None, BLOCK_R=BLOCK_R, BLOCK=BLOCK,
        num_warps=8 if BLOCK >= 2048 else 4,
    )
    # fmt: on
    return out


def sampling_probabilities(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The ``(B, V)`` float32 distribution :func:`sample_tokens` draws from."""
    logits = logits.float()
    B, V = logits.shape
    if params.temperature == 0:
        out = torch.zeros_like(logits)
        out[torch.arange(B), logits.argmax(dim=-1)] = 1.0
        return out
    p = torch.softmax(logits / params.temperature, dim=-1)
    sorted_p, order = torch.sort(p, dim=-1, descending=True, stable=True)
    keep = torch.ones_like(sorted_p, dtype=torch.bool)
    if params.top_k > 0:
        keep[:, params.top_k :] = False
    if params.top_p < 1.0:
        kept = torch.where(keep, sorted_p, 0.0)
        kept = kept / kept.sum(-1, keepdim=True)
        keep &= (torch.cumsum(kept, -1) - kept) < params.top_p
    sorted_p = torch.where(keep, sorted_p, 0.0)
    sorted_p = sorted_p / sorted_p.sum(-1, keepdim=True)
    return torch.zeros_like(p).scatter_(1, order, sorted_p)


class TritonSampler:
    """The :class:`mind4_core.protocols.Sampler` of the Triton backend."""

    def __init__(self, device: str = "cuda", dtype: str | None = None):
        self.device = device
        self.dtype = dtype

    def generator(self, seed: int | None) -> SamplerState:
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        return SamplerState(int(seed) & 0xFFFFFFFF)

    def sample_device(
        self, logits: torch.Tensor, params: SamplingParams, generator: Any
    ) -> torch.Tensor:
        """Like :meth:`sample` but the tokens stay on the device (``int64 (B,)``)."""
        if not isinstance(generator, SamplerState):
            generator = self.generator(None)
        return sample_tokens(torch.atleast_2d(logits), params, generator)

    def sample(self, logits: torch.Tensor, params: SamplingParams, generator: Any) -> np.ndarray:
        return self.sample_device(logits, params, generator).cpu().numpy()

    def probabilities(self, logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
        return sampling_probabilities(torch.atleast_2d(logits), params)
