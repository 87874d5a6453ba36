"""Fused MoE kernels: routing, grouping, MXFP4 decode, expert matmuls vs the oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mind4_specs import oracle
from mind4_triton.kernels import moe

from helpers import DTYPES, TOL, f64, rel_err


def test_route_topk_softmax_and_ties(device):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 12, generator=g)
    logits[0] = 1.0  # all tied: lowest indices first
    logits[1, [2, 9]] = 5.0  # a tie at the top
    idx, w = moe.route(logits.to(device), 3)
    ref_idx, ref_w = oracle.route(f64(logits), 3)
    assert idx.dtype == torch.int32 and (idx.cpu().numpy() == ref_idx).all()
    assert rel_err(w, ref_w) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N", [20, 1])  # 1: the GEMV + top-k path of decode
def test_gate_route_fused(dtype, N, device):
    g = torch.Generator().manual_seed(1)
    H, E, k = 48, 6, 2
    x = torch.randn(N, H, generator=g).to(device, dtype)
    wg = torch.randn(E, H, generator=g).to(device, dtype)
    bg = torch.randn(E, generator=g).to(device, dtype)
    idx, w = moe.gate_route(x, wg, bg, k)
    logits = oracle.linear(f64(x), f64(wg), f64(bg))
    ref_idx, ref_w = oracle.route(logits, k)
    assert idx.shape == (N, k) and w.shape == (N, k)
    assert (idx.cpu().numpy() == ref_idx).mean() > 0.95  # near-ties may flip in low precision
    same = (idx.cpu().numpy() == ref_idx).all(axis=1)
    assert rel_err(w[same], ref_w[same]) < TOL[dtype]


@pytest.mark.parametrize("N,k,E,BM", [(23, 3, 5, 4), (300, 4, 7, 16)])  # 1200 pairs: wide chunks
def test_align_groups_pairs_by_expert(N, k, E, BM, device):
    g = torch.Generator().manual_seed(2)
    indices = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(N)]).to(torch.int32)
    a = moe.align(indices.to(device), E, BM)
    sorted_pairs = a.sorted_pairs.cpu().numpy()
    block_expert = a.block_expert.cpu().numpy()
    num_blocks = int(a.num_blocks.item())
    flat = indices.numpy().reshape(-1)
    seen = []
    for blk in range(num_blocks):
        rows = sorted_pairs[blk * BM : (blk + 1) * BM]
        real = rows[rows < N * k]
        assert (flat[real] == block_expert[blk]).all()
        assert list(real) == sorted(real)  # stable: pair order within an expert
        seen += list(real)
    assert sorted(seen) == list(range(N * k))  # every pair exactly once
    assert (sorted_pairs[num_blocks * BM :] == N * k).all()


@pytest.mark.parametrize(
    "decoding,scale_bytes",
    [
        ({}, [127, 120, 135, 2]),
        ({"f32_codes": True}, [127, 120, 135, 2]),
        ({"words": True}, [127, 120, 135, 2]),  # two multiplies (a scale above 2)
        ({"words": True}, [127, 120, 128, 1]),  # small scales: one folded multiply
    ],
)
def test_mxfp4_decode_every_code_and_scale(decoding, scale_bytes, device):
    codes = np.arange(256, dtype=np.uint8)  # every (low, high) nibble pair
    blocks = np.tile(codes.reshape(16, 16), (4, 1)).reshape(4, 16, 1, 16)  # (E=4, rows, 1, 16)
    scales = np.array(scale_bytes, dtype=np.uint8)[:, None, None].repeat(16, 1)
    w = moe.MXFP4Weight.of(torch.from_numpy(blocks).to(device), torch.from_numpy(scales).to(device))
    assert w.small_scales == (max(scale_bytes) <= 128)
    out = moe.dequantize(w, **decoding).cpu().numpy()
    ref = oracle.mxfp4_decode(blocks, scales)
    np.testing.assert_array_equal(out, ref.astype(np.float32))


def expert_weights(E, H, I, mxfp4, dtype, device, seed):
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((E, 2 * I, H)) * 0.3
    w2 = rng.standard_normal((E, H, I)) * 0.3
    b1 = torch.from_numpy(rng.standard_normal((E, 2 * I))).to(device, dtype)
    b2 = torch.from_numpy(rng.standard_normal((E, H))).to(device, dtype)
    if mxfp4:
        (q1, s1), (q2, s2) = oracle.mxfp4_encode(w1), oracle.mxfp4_encode(w2)
        w1_ref, w2_ref = oracle.mxfp4_decode(q1, s1), oracle.mxfp4_decode(q2, s2)
        t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        W1, W2 = moe.MXFP4Weight.of(t(q1), t(s1)), moe.MXFP4Weight.of(t(q2), t(s2))
    else:
        W1, W2 = (torch.from_numpy(a).to(device, dtype) for a in (w1, w2))
        w1_ref, w2_ref = f64(W1), f64(W2)
    return W1, b1, W2, b2, w1_ref, w2_ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mxfp4", [False, True])
@pytest.mark.parametrize(
    "N,cfg",
    [
        (1, moe.ExpertConfig(16, 16, 32, 16, 32)),  # decode: one token, most experts idle
        (19, moe.ExpertConfig(16, 32, 64, 32, 64)),  # prefill-like: several blocks per expert
        (1, moe.ExpertConfig(16, 16, 32, 16, 32, fp16_groups=True)),  # MXFP4 -> fp16 bits path
        (19, moe.ExpertConfig(16, 32, 32, 32, 32, fp16_groups=True)),
        (1, moe.ExpertConfig(1, 16, 64, 32, 64, gemv=True)),  # batch-1 GEMV, partial K tile
        (3, moe.ExpertConfig(1, 32, 32, 16, 32, gemv=True)),  # dense weights fall back
        (2, moe.ExpertConfig(1, 16, 64, 32, 64, gemv=True, f32_codes=True)),  # float32 codes
        (1, moe.ExpertConfig(1, 128, 32, 64, 32, gemv=True, f32_codes=True)),  # partial row tiles
        (2, moe.ExpertConfig(1, 16, 64, 32, 64, gemv=True, words=True)),  # GEMV from int32 words
        (1, moe.ExpertConfig(1, 128, 32, 64, 32, gemv=True, words=True)),
        (19, moe.ExpertConfig(16, 32, 64, 32, 64, f32_codes=True)),
        (19, moe.ExpertConfig(16, 32, 64, 32, 64, words=True)),  # int32 words, folded scale
        # tiles that divide H and I: the unmasked loads
        (19, moe.ExpertConfig(16, 32, 32, 32, 32, words=True)),
    ],
)
def test_experts_against_oracle(dtype, mxfp4, N, cfg, device):
    E, H, I, k, limit = 5, 96, 64, 2, 7.0  # H=96: the K loop's last tile is partial
    W1, b1, W2, b2, w1_ref, w2_ref = expert_weights(E, H, I, mxfp4, dtype, device, seed=N)
    g = torch.Generator().manual_seed(N)
    x = torch.randn(N, H, generator=g).to(device, dtype)
    indices = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(N)]).to(device)
    weights = torch.softmax(torch.randn(N, k, generator=g), -1).to(device)
    out = moe.experts(x, indices, weights, W1, b1, W2, b2, limit, cfg=cfg)
    ref = oracle.experts(
        f64(x), f64(indices).astype(int), f64(weights), w1_ref, f64(b1), w2_ref, f64(b2), limit
    )
    assert out.shape == (N, H) and out.dtype == dtype
    assert rel_err(out, ref) < TOL[dtype]


def test_swiglu_clamp_is_active(device):
    """Large activations: the clamp at ``limit`` must matter and match the oracle."""
    E, H, I, limit = 2, 32, 32, 0.5
    W1, b1, W2, b2, w1_ref, w2_ref = expert_weights(E, H, I, False, torch.float32, device, seed=3)
    x = 5 * torch.randn(4, H).to(device)
    indices = torch.tensor([[0], [1], [1], [0]], device=device)
    weights = torch.ones(4, 1, device=device)
    out = moe.experts(
        x, indices, weights, W1, b1, W2, b2, limit, cfg=moe.ExpertConfig(16, 16, 32, 16, 32)
    )
    ref = oracle.experts(
        f64(x), f64(indices).astype(int), f64(weights), w1_ref, f64(b1), w2_ref, f64(b2), limit
    )
    unclamped = oracle.experts(
        f64(x), f64(indices).astype(int), f64(weights), w1_ref, f64(b1), w2_ref, f64(b2), 1e9
    )
    assert rel_err(unclamped, ref) > 0.1
    assert rel_err(out, ref) < TOL[torch.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [False, True])
def test_gemv_against_float64(dtype, bias, device):
    """The batch-1 matrix-vector kernel, with partial row and column tiles."""
    from mind4_triton.kernels import gemv

    g = torch.Generator().manual_seed(11 + bias)
    x = torch.randn(1, 200, generator=g).to(device, dtype)
    w = torch.randn(37, 200, generator=g).to(device, dtype)
    b = torch.randn(37, generator=g).to(device, dtype) if bias else None
    out = gemv.gemv(x, w, b, gemv.GemvConfig(block_n=8, block_k=64))
    ref = f64(x) @ f64(w).T + (f64(b) if bias else 0.0)
    assert out.shape == (1, 37) and out.dtype == dtype
    assert rel_err(out, ref) < TOL[dtype]
    with pytest.raises(ValueError, match="gemv needs"):
        gemv.gemv(torch.cat([x, x]), w, b, gemv.GemvConfig(8, 64))
