"""RMSNorm (all fused modes) and the fused RoPE + QKV split + cache write."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mind4_core.config import ModelConfig
from mind4_specs import oracle
from mind4_triton.kernels import rmsnorm as rn
from mind4_triton.kernels.rope import rope_qkv, rope_table

from helpers import DTYPES, TOL, f64, rel_err


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H", [64, 100])
def test_rmsnorm_modes(dtype, H, device):
    g = torch.Generator().manual_seed(H)
    N, k, eps = 5, 3, 1e-5
    x0 = torch.randn(N, H, generator=g).to(device)
    delta = torch.randn(N, H, generator=g).to(device, dtype)
    rows = torch.randn(N * k, H, generator=g).to(device)
    scale = (1 + 0.1 * torch.randn(H, generator=g)).to(device)
    out = torch.empty(N, H, device=device, dtype=dtype)

    y = rn.rmsnorm(x0.to(dtype), scale, eps)
    assert rel_err(y, oracle.rmsnorm(f64(x0.to(dtype)), f64(scale), eps)) < TOL[dtype]

    x = x0.clone()
    rn.add_rmsnorm(x, delta, scale, eps, out)
    ref_x = f64(x0) + f64(delta)
    assert rel_err(x, ref_x) < 1e-6
    assert rel_err(out, oracle.rmsnorm(ref_x, f64(scale), eps)) < TOL[dtype]

    x = x0.clone()
    rn.add_rows_rmsnorm(x, rows, k, scale, eps, out)
    ref_x = f64(x0) + f64(rows).reshape(N, k, H).sum(1)
    assert rel_err(x, ref_x) < 1e-6
    assert rel_err(out, oracle.rmsnorm(ref_x, f64(scale), eps)) < TOL[dtype]

    emb = torch.randn(11, H, generator=g).to(device, dtype)
    tokens = torch.tensor([3, 0, 10, 3, 7], device=device)
    x = torch.full((N, H), float("nan"), device=device)
    rn.embed_rmsnorm(tokens, emb, x, scale, eps, out)
    ref_x = f64(emb)[f64(tokens).astype(int)]
    assert rel_err(x, ref_x) < 1e-6
    assert rel_err(out, oracle.rmsnorm(ref_x, f64(scale), eps)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("yarn", [False, True])
def test_rope_qkv_split_and_cache_write(dtype, yarn, device):
    cfg = ModelConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=32,
        vocab_size=64,
        num_experts=4,
        experts_per_token=2,
        initial_context_length=64,
        rope_theta=10000.0,
        rope_scaling_factor=8.0 if yarn else 1.0,
    )
    Hq, Hkv, D, B, T, S = 6, 2, 16, 2, 3, 20
    g = torch.Generator().manual_seed(1 + yarn)
    qkv = torch.randn(B, T, (Hq + 2 * Hkv) * D, generator=g).to(device, dtype)
    cos, sin = rope_table(cfg, S, device)
    offsets = torch.tensor([0, 13], dtype=torch.int32, device=device)
    # the runtime's cache layout (B, Hkv, S, D) seen as (B, S, Hkv, D)
    kbuf = torch.full((B, Hkv, S, D), 7.0, device=device, dtype=dtype)
    vbuf = torch.full((B, Hkv, S, D), 7.0, device=device, dtype=dtype)
    k_cache, v_cache = kbuf.transpose(1, 2), vbuf.transpose(1, 2)
    q = rope_qkv(qkv, cos, sin, offsets, k_cache, v_cache, Hq, Hkv)

    ref = f64(qkv)
    positions = np.array([[0, 1, 2], [13, 14, 15]])
    c, s = oracle.rope_tables(
        positions,
        D,
        cfg.rope_theta,
        cfg.rope_scaling_factor,
        cfg.rope_ntk_alpha,
        cfg.rope_ntk_beta,
        cfg.initial_context_length,
    )
    q_ref = oracle.apply_rope(ref[..., : Hq * D].reshape(B, T, Hq, D), c, s)
    k_ref = oracle.apply_rope(ref[..., Hq * D : (Hq + Hkv) * D].reshape(B, T, Hkv, D), c, s)
    v_ref = ref[..., (Hq + Hkv) * D :].reshape(B, T, Hkv, D)
    assert rel_err(q, q_ref) < TOL[dtype]
    for b in range(B):
        p = positions[b]
        assert rel_err(k_cache[b, p], k_ref[b]) < TOL[dtype]
        assert rel_err(v_cache[b, p], v_ref[b]) < 1e-7
    # nothing else in the caches was touched
    written = torch.zeros(B, S, dtype=torch.bool)
    for b in range(B):
        written[b, positions[b]] = True
    assert (k_cache.cpu()[~written] == 7.0).all() and (v_cache.cpu()[~written] == 7.0).all()
