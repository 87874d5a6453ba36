"""Flash attention kernel against the float64 oracle (tiny shapes, any device)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mind4_specs import oracle
from mind4_triton.kernels.attention import attention

from helpers import DTYPES, TOL, f64, rel_err


def make(B, T, S, Hq, Hkv, D, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, Hq, D, generator=g).to(device, dtype)
    k = torch.randn(B, S, Hkv, D, generator=g).to(device, dtype)
    v = torch.randn(B, S, Hkv, D, generator=g).to(device, dtype)
    sinks = torch.randn(Hq, generator=g).to(device, torch.float32)
    return q, k, v, sinks


def check(q, k, v, sinks, window, offset, **kw):
    D = q.shape[-1]
    out = attention(q, k, v, sinks, sm_scale=1 / math.sqrt(D), window=window, offset=offset, **kw)
    ref = oracle.attention(
        f64(q),
        f64(k),
        f64(v),
        f64(sinks),
        sm_scale=1 / math.sqrt(D),
        window=window,
        offset=np.asarray(offset),
    )
    assert out.shape == q.shape and out.dtype == q.dtype
    assert rel_err(out, ref) < TOL[q.dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "B,T,Hq,Hkv,D,window",
    [
        (1, 12, 4, 2, 16, None),  # GQA, full causal
        (2, 9, 4, 1, 32, 4),  # MQA, sliding window shorter than T
        (1, 20, 2, 2, 24, 7),  # MHA, head dim not a power of two
    ],
)
def test_prefill_from_zero(dtype, B, T, Hq, Hkv, D, window, device):
    q, k, v, sinks = make(B, T, T, Hq, Hkv, D, dtype, device, seed=T * 7 + D)
    check(q, k, v, sinks, window, 0, block_n=16)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunk_at_offset_in_larger_cache(dtype, device):
    """A chunk of 5 queries at offset 11 in a 40-slot cache (slots past the
    queries hold garbage that must stay invisible)."""
    q, k, v, sinks = make(1, 5, 40, 4, 2, 16, dtype, device, seed=3)
    check(q, k, v, sinks, None, 11, block_n=16)
    check(q, k, v, sinks, 6, 11, block_n=16)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [None, 5])
def test_decode_per_row_offsets_split(dtype, window, device):
    """One token per row at different offsets, keys split across programs."""
    q, k, v, sinks = make(3, 1, 48, 8, 2, 16, dtype, device, seed=11)
    offset = [0, 17, 47]
    for splits in (1, 3):
        check(q, k, v, sinks, window, offset, num_splits=splits, block_n=16)


def test_offset_as_device_tensor(device):
    q, k, v, sinks = make(2, 3, 16, 2, 1, 16, torch.float32, device, seed=5)
    offset = torch.tensor([4, 13], dtype=torch.int32, device=device)
    out = attention(q, k, v, sinks, sm_scale=0.25, window=None, offset=offset, block_n=16)
    ref = oracle.attention(
        f64(q), f64(k), f64(v), f64(sinks), sm_scale=0.25, window=None, offset=np.array([4, 13])
    )
    assert rel_err(out, ref) < TOL[torch.float32]


def test_strided_cache_layout(device):
    """K/V given as a (B, S, Hkv, D) view of a (B, Hkv, S, D) buffer, the runtime's layout."""
    q, _, _, sinks = make(1, 4, 1, 4, 2, 16, torch.float16, device, seed=9)
    kbuf = torch.randn(1, 2, 24, 16).to(device, torch.float16)
    vbuf = torch.randn(1, 2, 24, 16).to(device, torch.float16)
    k, v = kbuf.transpose(1, 2), vbuf.transpose(1, 2)
    check(q, k, v, sinks, None, 20, block_n=16)


def test_large_sink_takes_the_mass(device):
    """A sink far above every score absorbs the softmax: the output goes to ~0."""
    q, k, v, _ = make(1, 3, 3, 2, 2, 16, torch.float32, device, seed=2)
    sinks = torch.full((2,), 60.0, device=device)
    out = attention(q, k, v, sinks, sm_scale=0.25, window=None, offset=0)
    assert out.abs().max().item() < 1e-12
